// Package servertest runs the whole server, built by internal/server as
// `serve` builds it, inside a test: every package whose tests need a live
// server starts it the same way, with the same bounds and the same check
// that it stopped cleanly. Only _test.go files import it.
package servertest

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/callledger/callledger/internal/server"
)

// Bound is how long building the server, and its stopping, may take before
// the test fails: far above what they take, so that only a hang trips it.
const Bound = time.Minute

// Start builds the server cfg describes and runs it until the test ends,
// when an error from Run fails the test. Where cfg leaves them empty it
// fills in loopback ports for the webhook and gRPC listeners, a temporary
// data directory and a logger that discards; the rest of cfg is used as
// given (no Twilio auth token: development mode, as after `make run`).
//
// stop ends the server earlier and returns Run's error, which is then the
// test's to judge; it may be called more than once.
func Start(t testing.TB, cfg server.Config) (srv *server.Server, stop func() error) {
	t.Helper()
	cfg.DataDir = cmp.Or(cfg.DataDir, t.TempDir())
	cfg.HTTP.Addr = cmp.Or(cfg.HTTP.Addr, "127.0.0.1:0")
	cfg.GRPC.Addr = cmp.Or(cfg.GRPC.Addr, "127.0.0.1:0")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	defer cancel()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatalf("build the server: %v", err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()

	var once sync.Once
	var runErr error
	halt := func() error {
		once.Do(func() {
			stopRun()
			select {
			case runErr = <-done:
			case <-time.After(Bound):
				t.Errorf("Run did not return within %v of its context ending", Bound)
			}
		})
		return runErr
	}
	var mu sync.Mutex
	judged := false
	t.Cleanup(func() {
		err := halt()
		mu.Lock()
		defer mu.Unlock()
		if err != nil && !judged {
			t.Errorf("server: %v", err)
		}
	})
	return srv, func() error {
		mu.Lock()
		judged = true
		mu.Unlock()
		return halt()
	}
}
