package kurrentdb_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
)

// BenchmarkAppend measures the adapter's append on the stand-in over
// loopback gRPC: the client, the read that precedes every append and the
// write; not a real server's disk or replication. Streams are call-sized
// (a new stream, then a few events each). It reports latency percentiles.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name      string
		parallel  int
		duplicate bool
	}{
		{"new-event/serial", 1, false},
		{"new-event/parallel-16", 16, false},
		{"duplicate/serial", 1, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv, err := kurrentdbtest.Start(kurrentdbtest.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			s := open(b, srv.ConnString(), kurrentdb.Options{Logger: slog.New(slog.DiscardHandler)})
			defer s.Close()
			ctx := context.Background()
			dup := eventstore.EventData{ID: uuid.New(), Type: "CallStatusReported", Data: make([]byte, 1500)}
			if _, err := s.Append(ctx, "call-dup", eventstore.Any(), dup); err != nil {
				b.Fatal(err)
			}
			var (
				mu  sync.Mutex
				lat = make([]time.Duration, 0, b.N)
			)
			// Each worker writes its own streams, five events each.
			one := func(worker, i int) {
				stream := fmt.Sprintf("call-w%d-%d", worker, i/5)
				ev := eventstore.EventData{ID: uuid.New(), Type: "CallStatusReported", Data: make([]byte, 1500)}
				if bc.duplicate {
					stream, ev = "call-dup", dup
				}
				start := time.Now()
				if _, err := s.Append(ctx, stream, eventstore.Any(), ev); err != nil {
					b.Error(err)
				}
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N / bc.parallel
			for w := range bc.parallel {
				n := per
				if w == 0 {
					n += b.N % bc.parallel
				}
				wg.Go(func() {
					for i := range n {
						one(w, i)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
