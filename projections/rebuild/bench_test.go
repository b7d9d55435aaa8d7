package rebuild_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
	"github.com/callledger/callledger/projections/rebuild"
)

// BenchmarkRebuild rebuilds the read model of a 500,000-event ledger of
// realistic call flows from zero: read, decode, fold and bulk write. The
// 1M–10M figures come from `make bench-rebuild`; this one is for pprof.
func BenchmarkRebuild(b *testing.B) {
	const events = 500_000
	ctx := context.Background()
	dir := b.TempDir()
	store, err := pebblestore.Open(filepath.Join(dir, "ledger"), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	st, err := ledgerload.Load(ctx, store, ledgerload.Config{Events: events, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d events in %s", st.Events, st.Elapsed)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		out := filepath.Join(dir, "projection", string(rune('a'+i%26)), string(rune('0'+i/26)))
		if _, err := rebuild.Build(ctx, store, out, rebuild.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
