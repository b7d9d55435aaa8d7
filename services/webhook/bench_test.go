package webhook_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callledger/callledger/eventstore/instrument"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/keystore/keystoretest"
	"github.com/callledger/callledger/metrics"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/traffic"
	"github.com/callledger/callledger/twilio"
)

// BenchmarkIngest measures the whole webhook path in-process — verify,
// derive, encode, group-committed fsync'd append — without the network, so
// it shows the server's own cost per webhook. Every request is unique. The
// sub-benchmarks run it without and with the Prometheus metrics, so one
// run gives their overhead.
func BenchmarkIngest(b *testing.B) {
	b.Run("metrics=off", func(b *testing.B) { benchIngest(b, false, sealNone) })
	b.Run("metrics=on", func(b *testing.B) { benchIngest(b, true, sealNone) })
	// Sealing personal data (docs/PRIVACY.md) against metrics=off, in the
	// same run: docs/BENCHMARKS.md §8.
	// As the server seals: a group's new keys synced once, before it.
	b.Run("metrics=off/sealed", func(b *testing.B) { benchIngest(b, false, sealDeferred) })
	// Each call's first webhook syncing its key before its append, as
	// sealing did first: docs/BENCHMARKS.md §10.
	b.Run("metrics=off/sealed-sync-each", func(b *testing.B) { benchIngest(b, false, sealSyncEach) })
}

type sealing int

const (
	sealNone sealing = iota
	sealDeferred
	sealSyncEach
)

func benchIngest(b *testing.B, withMetrics bool, sealed sealing) {
	cfg := webhook.Config{}
	var storeOpts pebblestore.Options
	switch sealed {
	case sealDeferred:
		keys := keystoretest.Open(b)
		cfg.Sealer = seal.NewEvents(keys, seal.DeferSync())
		storeOpts.BeforeSync = func() error { return keys.Sync(context.Background()) }
	case sealSyncEach:
		cfg.Sealer = seal.NewEvents(keystoretest.Open(b))
	}
	var sm *metrics.Store
	if withMetrics {
		reg := prometheus.NewRegistry()
		wm, err := metrics.NewWebhook(reg)
		if err != nil {
			b.Fatal(err)
		}
		if sm, err = metrics.NewStore(reg); err != nil {
			b.Fatal(err)
		}
		gc, err := metrics.NewGroupCommit(reg)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Observer = wm
		storeOpts.OnCommit = func(ci pebblestore.CommitInfo) { gc.Commit(ci.Appends, ci.Events, ci.Duration) }
	}
	store, err := pebblestore.Open(b.TempDir(), storeOpts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	cfg.Store = store
	if sm != nil {
		cfg.Store = instrument.Metrics(store, sm)
	}
	v, err := twilio.NewVerifier("https://hooks.example.com", "tok")
	if err != nil {
		b.Fatal(err)
	}
	cfg.Verifier = v
	h, err := webhook.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	reqs := traffic.Generate(traffic.Config{
		Calls: b.N/5 + 100, Seed: 1, PublicURL: "https://hooks.example.com", Token: "tok", RetryRate: -1,
		Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	})
	var next atomic.Int64
	b.SetParallelism(128) // many requests in flight, as many Twilio connections would be
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := reqs[int(next.Add(1)-1)%len(reqs)]
			req := httptest.NewRequest(r.Method, r.URI(), bytes.NewReader(r.Body))
			req.Header = r.Header
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code/100 != 2 {
				b.Errorf("answer %d", w.Code)
			}
		}
	})
	// CPU per webhook, the process's, moves less with fsync latency and
	// the machine's other load than time per webhook does.
	b.ReportMetric(float64(processCPU(b)-cpu0)/1e3/float64(b.N), "cpu-us/webhook")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "webhooks/s")
	st := store.Stats()
	b.ReportMetric(float64(st.Events)/float64(max(st.Commits, 1)), "events/fsync")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
