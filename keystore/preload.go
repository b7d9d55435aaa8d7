package keystore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Preload reads every data key record of the store in one sequential scan
// and keeps them, still wrapped, until release is called: Get then finds
// a key not cached in memory instead of a point read of the database. A
// rebuild meets every call leg's key once, in log order, which is no order
// of the store's: a point read each costs more than the fold of the leg's
// events (docs/BENCHMARKS.md §8). The wrapped records take about 150
// bytes a subject. Destroy drops them.
func (s *Embedded) Preload(ctx context.Context) (release func(), err error) {
	pre := map[string][]byte{}
	lower := []byte{prefixSubject}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if _, ok := dataKeySubject(k); !ok {
			continue
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("key store: %w", err)
		}
		pre[string(k[1:])] = bytes.Clone(v)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	s.preloaded.Store(&pre)
	// A rebuild meets a call leg's key again at its late callbacks
	// (recordings, the summary half an hour on), far from its first events:
	// meanwhile the cache holds every subject, up to preloadCacheSize.
	if n > s.cacheSize {
		s.cache.Resize(min(n, preloadCacheSize))
	}
	return func() {
		s.preloaded.CompareAndSwap(&pre, nil)
		s.cache.Resize(s.cacheSize)
	}, nil
}

// preloadCacheSize bounds the cache of unwrapped keys during a preload: a
// key with its AES-GCM state and cache entry is about 1.5 KiB, so about
// 100 MB at most, within a rebuild's memory budget (docs/BENCHMARKS.md §3).
const preloadCacheSize = 1 << 16

// preloadedRecord is the record of subject's key id that Preload read, or
// nil.
func (s *Embedded) preloadedRecord(subject string, id uint64) []byte {
	pre := s.preloaded.Load()
	if pre == nil {
		return nil
	}
	k := dataKeyKey(subject, id)
	return (*pre)[string(k[1:])]
}

// Checkpoint writes a consistent copy of the store into dir, which must
// not exist (Pebble's checkpoint: hard links where it can), for backups:
// a ledger restored without the key store that sealed it has lost its
// personal data. The copy is still wrapped by the store's KEK.
func (s *Embedded) Checkpoint(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("key store checkpoint: %w", err)
	}
	return nil
}
