package rebuild_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/projections/rebuild"
	"github.com/callledger/callledger/seal"
)

// BenchmarkRebuildSealed rebuilds the same ledger stored in the clear and
// with its personal data sealed (docs/PRIVACY.md), in one run, so that
// their events/s compare on a machine whatever its load
// (docs/BENCHMARKS.md §8). The sealed rebuild opens every event's facts
// with a key store opened afresh: every call leg's key is read cold, as
// after a restart. CALLLEDGER_BENCH_EVENTS sets the ledger's size
// (default 200,000).
func BenchmarkRebuildSealed(b *testing.B) {
	events := 200_000
	if v := os.Getenv("CALLLEDGER_BENCH_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		events = n
	}
	ctx := context.Background()
	raw := make([]byte, keystore.KEKSize)
	if _, err := rand.Read(raw); err != nil {
		b.Fatal(err)
	}
	kek, err := keystore.ParseKEK([]byte(base64.StdEncoding.EncodeToString(raw)))
	if err != nil {
		b.Fatal(err)
	}
	for _, sealed := range []bool{false, true} {
		b.Run(fmt.Sprintf("sealed=%t", sealed), func(b *testing.B) {
			dir := b.TempDir()
			store, err := pebblestore.Open(filepath.Join(dir, "ledger"), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			cfg := ledgerload.Config{Events: events, Seed: 1, Workers: 32}
			keysDir := filepath.Join(dir, "keys")
			var loadKeys *keystore.Embedded
			if sealed {
				if loadKeys, err = keystore.Open(keysDir, kek, keystore.Options{}); err != nil {
					b.Fatal(err)
				}
				cfg.Sealer = seal.NewEvents(loadKeys)
			}
			st, err := ledgerload.Load(ctx, store, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if loadKeys != nil {
				if err := loadKeys.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("loaded %d events in %s", st.Events, st.Elapsed)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				opts := rebuild.Options{}
				var keys *keystore.Embedded
				if sealed {
					// A fresh key store: no key cached.
					if keys, err = keystore.Open(keysDir, kek, keystore.Options{}); err != nil {
						b.Fatal(err)
					}
					opts.Personal = seal.NewEvents(keys)
				}
				out := filepath.Join(dir, "projection", strconv.Itoa(i))
				b.StartTimer()
				if _, err := rebuild.Build(ctx, store, out, opts); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if keys != nil {
					keys.Close()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(st.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
