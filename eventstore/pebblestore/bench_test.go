package pebblestore_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
)

// payload is the size of a typical webhook event (protobuf with the raw
// request).
var benchPayload = make([]byte, 600)

// BenchmarkAppendParallel measures durable appends of one event to distinct
// streams from many goroutines: the webhook's workload. Group commit turns
// them into few fsyncs; events/commit shows how few.
func BenchmarkAppendParallel(b *testing.B) {
	s := openClosed(b, b.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	var writer atomic.Uint64
	before := s.Stats()
	b.SetParallelism(32) // 32 × GOMAXPROCS writers, as concurrent webhooks are
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		w := writer.Add(1)
		for i := 0; pb.Next(); i++ {
			e := eventstore.EventData{ID: uuid.New(), Type: "CallStatusReported", Data: benchPayload}
			if _, err := s.Append(ctx, fmt.Sprintf("call-%d-%d", w, i), eventstore.NoStream(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	after := s.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	if commits := after.Commits - before.Commits; commits > 0 {
		b.ReportMetric(float64(after.Events-before.Events)/float64(commits), "events/commit")
	}
}

// prefill appends n small events, 10 per call stream, as fast as group
// commit allows.
func prefill(b *testing.B, s *pebblestore.Store, n int) {
	b.Helper()
	const perAppend = 10
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if int(i)*perAppend >= n {
					return
				}
				evs := make([]eventstore.EventData, perAppend)
				for j := range evs {
					evs[j] = eventstore.EventData{ID: uuid.New(), Type: "CallStatusReported", Data: benchPayload[:120]}
				}
				if _, err := s.Append(ctx, fmt.Sprintf("call-%08d", i), eventstore.NoStream(), evs...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkReadAll measures how fast a rebuild streams the log: one op is
// one event read, events/s the throughput, over a log of 200k events of
// 120 bytes.
func BenchmarkReadAll(b *testing.B) {
	const events = 200_000
	s := openClosed(b, b.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	prefill(b, s, events)
	ctx := context.Background()
	for _, page := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("page=%d", page), func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			from := eventstore.Start
			for read := 0; read < b.N; {
				evs, err := s.ReadAll(ctx, from, min(page, b.N-read))
				if err != nil {
					b.Fatal(err)
				}
				if len(evs) == 0 {
					from = eventstore.Start
					continue
				}
				read += len(evs)
				from = evs[len(evs)-1].Position
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
	b.Run("subscription", func(b *testing.B) {
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for read := 0; read < b.N; {
			sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
			if err != nil {
				b.Fatal(err)
			}
			for read < b.N {
				batch, err := sub.Next(ctx)
				if err != nil {
					b.Fatal(err)
				}
				read += len(batch.Events)
				if batch.CaughtUp {
					break
				}
			}
			sub.Close()
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
}
