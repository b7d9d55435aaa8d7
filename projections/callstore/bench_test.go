package callstore_test

import (
	"context"
	"flag"
	"testing"
	"time"

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
