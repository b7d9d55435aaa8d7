package pebblestore_test

import (
	"log/slog"
	"testing"

	"github.com/callledger/callledger/eventstore/pebblestore"
)

// TestCacheSize: a server keeps the default block cache; a command that
// reads the log once asks for a small one, and gets it.
func TestCacheSize(t *testing.T) {
	for _, tc := range []struct {
		opt, want int64
	}{{0, 256 << 20}, {32 << 20, 32 << 20}} {
		s, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler), CacheSize: tc.opt})
		if err != nil {
			t.Fatal(err)
		}
		if got := pebblestore.BlockCacheSize(s); got != tc.want {
			t.Errorf("CacheSize %d: block cache %d, want %d", tc.opt, got, tc.want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
