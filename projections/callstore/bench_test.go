package callstore_test

import (
	"context"
	"flag"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
)

var treeCalls = flag.Int("tree.calls", 100_000, "calls in the read model BenchmarkTree reads from")

// BenchmarkTree measures the read path of GetCall without the transport:
// one two-leg tree out of -tree.calls calls (100,000 by default; at
// 1,000,000 the read model no longer fits in the memtable and reads go to
// the tables through the block cache).
func BenchmarkTree(b *testing.B) {
	s, err := callstore.Open(b.TempDir(), callstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	l := &log{}
	n := *treeCalls
	batch := make([]eventstore.RecordedEvent, 0, 1000)
	for i := range n {
		parent := ""
		if i%2 == 1 {
			parent = sid(i - 1)
		}
		batch = append(batch, l.status(b, sid(i), parent, completed, t0.Add(time.Duration(i)*time.Second)))
		if len(batch) == cap(batch) {
			if err := s.Apply(context.Background(), eventstore.Batch{Events: batch, Checkpoint: batch[len(batch)-1].Position}); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if tr, err := s.Tree(context.Background(), sid(i%n)); err != nil || len(tr.Legs) != 2 {
			b.Fatalf("%v %d", err, len(tr.Legs))
		}
		i += 7919
	}
}

// BenchmarkApplyLive measures the live projection's Apply: calls of four
// status events each, sixteen in flight at once, in batches of four events
// (a small group commit), with the hot records on and, for comparison in
// the same run, turning over at every write (every fold reads the read
// model). One op is one batch.
func BenchmarkApplyLive(b *testing.B) {
	statuses := []callledgerv1.CallStatus{
		callledgerv1.CallStatus_CALL_STATUS_QUEUED, callledgerv1.CallStatus_CALL_STATUS_RINGING,
		callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, completed,
	}
	for _, tc := range []struct {
		name string
		opts callstore.Options
	}{{"hot", callstore.Options{}}, {"cold", callstore.WithHotBytes(callstore.Options{}, 1)}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := callstore.Open(b.TempDir(), tc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			l := &log{}
			// Events are made ahead, sixteen calls at a time, outside the timer.
			var pending []eventstore.RecordedEvent
			next := 0
			refill := func() {
				for k := range len(statuses) {
					for c := range 16 {
						i := next + c
						parent := ""
						if i%2 == 1 {
							parent = sid(i - 1)
						}
						pending = append(pending, l.status(b, sid(i), parent, statuses[k], t0.Add(time.Duration(i)*time.Second)))
					}
				}
				next += 16
			}
			b.ReportAllocs()
			for b.Loop() {
				if len(pending) == 0 {
					b.StopTimer()
					refill()
					b.StartTimer()
				}
				batch := pending[:4]
				pending = pending[4:]
				if err := s.Apply(context.Background(), eventstore.Batch{Events: batch, Checkpoint: batch[3].Position}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(4*b.N), "ns/event")
		})
	}
}
