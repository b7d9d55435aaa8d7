package keystore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkKeyKnown is the write path's cost for an event of a call whose
// key and parties are known: a cache hit.
func BenchmarkKeyKnown(b *testing.B) {
	s := open(b, b.TempDir(), testKEK(b))
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Key(ctx, callA, "+15555550100", "+15555550199"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Key(ctx, callA, "+15555550100", "+15555550199"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyNew is the first event of a call: a new key and two index
// entries, one synced batch. Parallel, as webhooks are: Pebble syncs
// concurrent batches together.
func BenchmarkKeyNew(b *testing.B) {
	s := open(b, b.TempDir(), testKEK(b))
	defer s.Close()
	ctx := context.Background()
	var n atomicCounter
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.next()
			if _, err := s.Key(ctx, fmt.Sprintf("CA%032x", i), fmt.Sprintf("+1555%07d", i), "+15555550199"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetCold is opening an event of a call whose key is not cached
// (a rebuild meets each call once): a read and an unwrap.
func BenchmarkGetCold(b *testing.B) {
	dir := b.TempDir()
	kek := testKEK(b)
	s := open(b, dir, kek)
	ctx := context.Background()
	const n = 20000
	ids := make([]uint64, n)
	for i := range n {
		k, err := s.Key(ctx, fmt.Sprintf("CA%032x", i), fmt.Sprintf("+1555%07d", i))
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = k.ID()
	}
	s.Close()
	s, err := Open(dir, kek, Options{CacheSize: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, fmt.Sprintf("CA%032x", i%n), ids[i%n]); err != nil {
			b.Fatal(err)
		}
		i += 7919 // a stride, so the cache never helps
	}
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.n.Add(1) }

// BenchmarkGetPreloaded is what a rebuild pays the first time it meets a
// call leg: every key preloaded (Preload), none cached yet, each key got
// once, in an order unrelated to the store's.
func BenchmarkGetPreloaded(b *testing.B) {
	dir := b.TempDir()
	kek := testKEK(b)
	s := open(b, dir, kek)
	ctx := context.Background()
	const n = 50000
	subjects := make([]string, n)
	ids := make([]uint64, n)
	for i := range n {
		subjects[i] = fmt.Sprintf("CA%032x", (i*7919)%n)
		k, err := s.Key(ctx, subjects[i], fmt.Sprintf("+1555%07d", i))
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = k.ID()
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%n == 0 {
			// A store reopened and preloaded afresh: nothing cached.
			b.StopTimer()
			s.Close()
			s = open(b, dir, kek)
			if _, err := s.Preload(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if _, err := s.Get(ctx, subjects[i%n], ids[i%n]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	s.Close()
}
