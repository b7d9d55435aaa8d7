package rebuild_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
	"github.com/callledger/callledger/projections/rebuild"
)

// withoutRequest stores events without their verbatim request: a ledger
// whose fold reads no request bytes, as a layout keeping the request apart
// from the facts would give (docs/BENCHMARKS.md §13).
type withoutRequest struct{}

func (withoutRequest) Seal(_ context.Context, ev *callledgerv1.Event) (*callledgerv1.Event, error) {
	ev.Request = nil
	return ev, nil
}

// BenchmarkRebuildWithoutRequests rebuilds the same generated events
// stored whole and stored without their verbatim requests, alternately,
// and reports the CPU per event of each and their ratio: what the fold
// would gain if it read no request bytes. 200,000 events.
func BenchmarkRebuildWithoutRequests(b *testing.B) {
	const events = 200_000
	ctx := context.Background()
	dir := b.TempDir()
	load := func(name string, s ledgerload.Sealer) *pebblestore.Store {
		store, err := pebblestore.Open(filepath.Join(dir, name), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { store.Close() })
		if _, err := ledgerload.Load(ctx, store, ledgerload.Config{Events: events, Seed: 1, Workers: 32, Sealer: s}); err != nil {
			b.Fatal(err)
		}
		return store
	}
	whole, bare := load("whole", nil), load("bare", withoutRequest{})
	var cWhole, cBare time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range []struct {
			name  string
			store *pebblestore.Store
			cpu   *time.Duration
		}{{"whole", whole, &cWhole}, {"bare", bare, &cBare}} {
			c0 := processCPU(b)
			if _, err := rebuild.Build(ctx, r.store, filepath.Join(dir, "projection", r.name, strconv.Itoa(i)), rebuild.Options{}); err != nil {
				b.Fatal(err)
			}
			*r.cpu += processCPU(b) - c0
		}
	}
	n := float64(events) * float64(b.N)
	b.ReportMetric(cWhole.Seconds()*1e6/n, "whole-cpu-us/event")
	b.ReportMetric(cBare.Seconds()*1e6/n, "bare-cpu-us/event")
	b.ReportMetric(cBare.Seconds()/cWhole.Seconds(), "bare/whole-cpu")
}
