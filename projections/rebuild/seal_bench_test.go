package rebuild_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/keystore/keystoretest"
	"github.com/callledger/callledger/projections/rebuild"
	"github.com/callledger/callledger/seal"
)

// BenchmarkRebuildSealed rebuilds the same ledger stored in the clear and
// with its personal data sealed (docs/PRIVACY.md), alternately, so that a
// machine whose load drifts weighs on both alike (docs/BENCHMARKS.md §8).
// The sealed rebuild opens every event's facts with a key store opened
// afresh: every call leg's key is read cold, as after a restart. It
// reports both rates and sealed/plain, the ratio of their times.
// CALLLEDGER_BENCH_EVENTS sets the ledger's size (default 200,000).
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
	kek := keystoretest.KEK(b)
	dir := b.TempDir()
	keysDir := filepath.Join(dir, "keys")
	load := func(name string, sealed bool) *pebblestore.Store {
		store, err := pebblestore.Open(filepath.Join(dir, name), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { store.Close() })
		cfg := ledgerload.Config{Events: events, Seed: 1, Workers: 32}
		if sealed {
			keys, err := keystore.Open(keysDir, kek, keystore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer keys.Close()
			cfg.Sealer = seal.NewEvents(keys)
		}
		st, err := ledgerload.Load(ctx, store, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%s: loaded %d events in %s", name, st.Events, st.Elapsed)
		return store
	}
	plain, sealed := load("plain", false), load("sealed", true)

	var tPlain, tSealed, cPlain, cSealed time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start, cpu := time.Now(), processCPU(b)
		// Labelled, so that a -cpuprofile tells the two rebuilds apart
		// (go tool pprof -tagfocus=rebuild=sealed).
		var err error
		pprof.Do(ctx, pprof.Labels("rebuild", "plain"), func(ctx context.Context) {
			_, err = rebuild.Build(ctx, plain, filepath.Join(dir, "projection", "plain", strconv.Itoa(i)), rebuild.Options{})
		})
		if err != nil {
			b.Fatal(err)
		}
		tPlain += time.Since(start)
		cPlain += processCPU(b) - cpu

		b.StopTimer()
		keys, err := keystore.Open(keysDir, kek, keystore.Options{}) // no key cached
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, cpu = time.Now(), processCPU(b)
		pprof.Do(ctx, pprof.Labels("rebuild", "sealed"), func(ctx context.Context) {
			_, err = rebuild.Build(ctx, sealed, filepath.Join(dir, "projection", "sealed", strconv.Itoa(i)), rebuild.Options{Personal: seal.NewEvents(keys)})
		})
		if err != nil {
			b.Fatal(err)
		}
		tSealed += time.Since(start)
		cSealed += processCPU(b) - cpu
		b.StopTimer()
		keys.Close()
		b.StartTimer()
	}
	n := float64(events) * float64(b.N)
	b.ReportMetric(n/tPlain.Seconds(), "plain-events/s")
	b.ReportMetric(n/tSealed.Seconds(), "sealed-events/s")
	b.ReportMetric(tSealed.Seconds()/tPlain.Seconds(), "sealed/plain")
	// CPU moves less than time with the machine's other load: the ratio
	// of CPU per event is the steadier measure of what sealing costs.
	b.ReportMetric(cPlain.Seconds()*1e6/n, "plain-cpu-us/event")
	b.ReportMetric(cSealed.Seconds()*1e6/n, "sealed-cpu-us/event")
	b.ReportMetric(cSealed.Seconds()/cPlain.Seconds(), "sealed/plain-cpu")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
