package kurrentdb_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/eventstore/storetest"
)

// TestConformance runs the port's suite on the stand-in: each backing is a
// fresh server, and reopening is a new client on the same server.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		srv := startServer(t, kurrentdbtest.Options{})
		return func(t *testing.T) eventstore.Store {
			return open(t, srv.ConnString(), kurrentdb.Options{})
		}
	})
}

// TestConformanceSharedServer runs the suite with every backing in a
// namespace of one shared server, as against a real server: each backing
// sees its own streams only, while the log interleaves them all.
func TestConformanceSharedServer(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	runNamespaced(t, srv.ConnString(), "shared")
}

// TestConformanceLegacyServer runs the suite on a stand-in that behaves
// like an old server: no ServerFeatures, idempotent appends answered
// without a position.
func TestConformanceLegacyServer(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		srv := startServer(t, kurrentdbtest.Options{NoServerFeatures: true, LegacyIdempotentReply: true})
		return func(t *testing.T) eventstore.Store {
			return open(t, srv.ConnString(), kurrentdb.Options{})
		}
	})
}

// TestConformanceRealServer runs the suite against the KurrentDB server
// whose connection string CALLLEDGER_TEST_KURRENTDB holds, each backing in
// a namespace of its own (a real server cannot be made fresh per test).
func TestConformanceRealServer(t *testing.T) {
	conn := os.Getenv("CALLLEDGER_TEST_KURRENTDB")
	if conn == "" {
		t.Skip("CALLLEDGER_TEST_KURRENTDB is not set: no real KurrentDB to run the conformance suite against " +
			"(set it to a connection string such as esdb://localhost:2113?tls=false)")
	}
	runNamespaced(t, conn, "t"+uuid.NewString()[:8])
}

func runNamespaced(t *testing.T, conn, run string) {
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		ns := fmt.Sprintf("%s-%d-", run, n.Add(1))
		return func(t *testing.T) eventstore.Store {
			var opts kurrentdb.Options
			kurrentdb.SetNamespace(&opts, ns)
			return open(t, conn, opts)
		}
	})
}

func startServer(t testing.TB, opts kurrentdbtest.Options) *kurrentdbtest.Server {
	t.Helper()
	srv, err := kurrentdbtest.Start(opts)
	if err != nil {
		t.Fatalf("start stand-in: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// open opens a store; the caller (or the suite) closes it.
func open(t testing.TB, conn string, opts kurrentdb.Options) *kurrentdb.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), storetest.Deadline)
	defer cancel()
	s, err := kurrentdb.Open(ctx, conn, opts)
	if err != nil {
		t.Fatalf("open %s: %v", conn, err)
	}
	return s
}

// openClosed opens a store that the test's cleanup closes.
func openClosed(t testing.TB, conn string, opts kurrentdb.Options) *kurrentdb.Store {
	t.Helper()
	s := open(t, conn, opts)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// testLogger shows warnings and errors in the test's output, and drops
// whatever is logged after the test's cleanups began (a background
// goroutine finishing late must not write to a finished test).
func testLogger(t testing.TB) *slog.Logger {
	w := &guardedWriter{t: t}
	t.Cleanup(w.stop) // registered first: runs after the stores' cleanups
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type guardedWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *guardedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return len(p), nil
	}
	return w.t.Output().Write(p)
}

func (w *guardedWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
