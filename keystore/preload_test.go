package keystore

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestPreload: after a preload, a store whose cache is cold serves every
// key from the preloaded records (the same keys), an erased subject is
// never served from them, and after release Get reads the database again.
func TestPreload(t *testing.T) {
	ctx := context.Background()
	dir, kek := t.TempDir(), testKEK(t)
	s := open(t, dir, kek)
	want := map[string]DataKey{}
	for _, sub := range []string{callA, callB, callC} {
		k, err := s.Key(ctx, sub, "+15555550100")
		if err != nil {
			t.Fatal(err)
		}
		want[sub] = k
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, kek) // nothing cached
	defer s.Close()
	release, err := s.Preload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pre := s.preloaded.Load(); pre == nil || len(*pre) != 3 {
		t.Fatalf("preloaded %v, want 3 records", pre)
	}
	k, err := s.Get(ctx, callA, want[callA].ID())
	if err != nil {
		t.Fatal(err)
	}
	sealOpen(t, want[callA], k)
	if _, err := s.Get(ctx, callA, want[callA].ID()+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("a key the store never had: %v", err)
	}
	if _, err := s.Destroy(ctx, callB); err != nil {
		t.Fatal(err)
	}
	if s.preloaded.Load() != nil {
		t.Error("Destroy left the preloaded keys")
	}
	if _, err := s.Get(ctx, callB, want[callB].ID()); !errors.Is(err, ErrDestroyed) {
		t.Errorf("an erased subject after a preload: %v, want ErrDestroyed", err)
	}
	release()
	k, err = s.Get(ctx, callC, want[callC].ID())
	if err != nil {
		t.Fatal(err)
	}
	sealOpen(t, want[callC], k)
}

// TestPreloadGrowsCache: during a preload the cache holds every subject
// met (up to preloadCacheSize), not Options.CacheSize: a rebuild meets a
// call leg's key again far from its first events. Release shrinks it back.
func TestPreloadGrowsCache(t *testing.T) {
	ctx := context.Background()
	dir, kek := t.TempDir(), testKEK(t)
	s, err := Open(dir, kek, Options{CacheSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := map[string]uint64{}
	for i := range 100 {
		sub := fmt.Sprintf("CA%032x", i)
		k, err := s.Key(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		keys[sub] = k.ID()
	}
	s.cache.Purge()
	release, err := s.Preload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for sub, id := range keys {
		if _, err := s.Get(ctx, sub, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.cache.Len(); n != len(keys) {
		t.Errorf("during the preload the cache holds %d subjects, want all %d", n, len(keys))
	}
	release()
	if n := s.cache.Len(); n != 16 {
		t.Errorf("after release the cache holds %d subjects, want Options.CacheSize (16)", n)
	}
}
