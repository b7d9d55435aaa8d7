package pebblestore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// callPayload builds an event payload shaped like a webhook's: about 1 KB
// of form-encoded text with per-call identifiers, and 100 B of metadata.
func callPayload(call, seq int) (data, meta []byte) {
	var b bytes.Buffer
	sid := fmt.Sprintf("CA%032x", uint64(call)*0x9E3779B97F4A7C15)
	fmt.Fprintf(&b, "POST /twilio/status HTTP/1.1\r\nHost: hooks.example.com\r\nX-Twilio-Signature: %x\r\n\r\n", uint64(call*31+seq)*0xBF58476D1CE4E5B9)
	fmt.Fprintf(&b, "AccountSid=AC%032x&ApiVersion=2010-04-01&CallSid=%s&CallStatus=%s&Called=%%2B1555%07d&Caller=%%2B1444%07d&Direction=outbound-api&SequenceNumber=%d&Timestamp=Sun%%2C+01+Mar+2026+00%%3A%02d%%3A%02d+%%2B0000",
		0xabcdef, sid, [...]string{"initiated", "ringing", "in-progress", "completed", "completed"}[seq%5], call%10_000_000, (call*7)%10_000_000, seq, seq, call%60)
	for b.Len() < 1000 {
		fmt.Fprintf(&b, "&Param%d=%x", b.Len(), uint64(call+b.Len())*0x94D049BB133111EB)
	}
	return b.Bytes(), []byte(fmt.Sprintf(`{"received":"2026-03-01T00:%02d:%02dZ","remote":"10.0.%d.%d:443","request_id":"RQ%032x"}`, seq, call%60, call%256, seq, call))
}

// BenchmarkAppendCalls measures the webhook workload on the store alone:
// one op is one durable append of one ~1.1 KB event to a call stream, 16
// calls of 5 events in flight at a time in the arrival order, 256 writers.
// Besides throughput it reports the CPU time and the bytes written to disk
// per event, and Pebble's write amplification.
func BenchmarkAppendCalls(b *testing.B) {
	s := openClosed(b, b.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	type item struct {
		stream     string
		data, meta []byte
	}
	items := make([]item, b.N)
	for k := range items {
		call := (k/80)*16 + k%16
		seq := (k % 80) / 16
		d, m := callPayload(call, seq)
		items[k] = item{stream: fmt.Sprintf("call-CA%032x", uint64(call)*0x9E3779B97F4A7C15), data: d, meta: m}
	}
	var next atomic.Int64
	before := s.Stats()
	cpu0, io0 := processCPU(), processWriteBytes()
	b.SetParallelism(128)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			it := &items[next.Add(1)-1]
			e := eventstore.EventData{ID: uuid.New(), Type: "CallStatusReported", Data: it.data, Metadata: it.meta}
			if _, err := s.Append(ctx, it.stream, eventstore.Any(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu1, io1 := processCPU(), processWriteBytes()
	after := s.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	if commits := after.Commits - before.Commits; commits > 0 {
		b.ReportMetric(float64(after.Events-before.Events)/float64(commits), "events/commit")
	}
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	if io0 >= 0 && io1 >= 0 {
		b.ReportMetric(float64(io1-io0)/float64(b.N), "disk-B/event")
	}
	b.ReportMetric(pebblestore.WriteAmp(s), "w-amp")
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processWriteBytes is what the process has written to storage (Linux
// only; -1 elsewhere).
func processWriteBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
