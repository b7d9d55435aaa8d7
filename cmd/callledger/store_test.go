package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/traffic"
)

func startKurrentDB(t *testing.T) *kurrentdbtest.Server {
	t.Helper()
	kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatalf("start KurrentDB stand-in: %v", err)
	}
	t.Cleanup(kdb.Close)
	return kdb
}

// readyz returns the status code of GET /readyz.
func readyz(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeOnKurrentDB runs `serve` with CALLLEDGER_STORE naming a
// KurrentDB (the in-process stand-in): simulate's traffic is acknowledged,
// `events --store` reads it back from KurrentDB with every request stored
// once, nothing is written to an embedded store, and /readyz follows the
// store's reachability without a restart.
func TestServeOnKurrentDB(t *testing.T) {
	t.Parallel()
	kdb := startKurrentDB(t)
	dir := t.TempDir()
	srv := startServer(t, dir, []string{"CALLLEDGER_STORE=" + kdb.ConnString()})
	if code := readyz(t, srv.httpURL); code != http.StatusOK {
		t.Fatalf("/readyz on a reachable KurrentDB: %d, want 200", code)
	}
	out, err := cli(t, "simulate", "--target", srv.httpURL, "--data-dir", dir, "--calls", "20", "--concurrency", "4", "--seed", "5")
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}

	// Unreachable store: not ready; back: ready again, same process.
	kdb.Stop()
	if code := readyz(t, srv.httpURL); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with KurrentDB stopped: %d, want 503", code)
	}
	if err := kdb.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, srv.httpURL)

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ledger")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve on KurrentDB created an embedded store: stat ledger/: %v", err)
	}

	want := map[string]int{}
	for _, r := range traffic.Generate(traffic.Config{Calls: 20, Seed: 5, PublicURL: srv.httpURL, Token: "any", RetryRate: 0.05}) {
		if !r.Retry {
			want[r.CallSid]++
		}
	}
	for sid, n := range want {
		// The events are sealed: their key store is in the server's data
		// directory, also on KurrentDB.
		out, err := cli(t, "events", sid, "--store", kdb.ConnString(), "--data-dir", dir)
		if err != nil {
			t.Fatalf("events %s --store: %v", sid, err)
		}
		ids := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev struct {
				EventID string `json:"event_id"`
				Stream  string `json:"stream"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Stream != "call-"+sid {
				t.Fatalf("events %s printed %q: %v", sid, line, err)
			}
			ids[ev.EventID]++
		}
		if len(ids) != n {
			t.Errorf("call %s: %d distinct events in KurrentDB, want %d", sid, len(ids), n)
		}
		for id, c := range ids {
			if c != 1 {
				t.Errorf("call %s: event %s stored %d times", sid, id, c)
			}
		}
	}
}

// waitReady waits until /readyz answers 200; reaching the bound fails.
func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for readyz(t, base) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover within 30s of the store coming back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStoreFlagRefusesBadConnectionStrings: a --store that cannot work
// fails the start of serve with a message naming the problem (the store
// opener's own cases are internal/server's TestOpenStoreRefusesBadConnectionStrings).
func TestStoreFlagRefusesBadConnectionStrings(t *testing.T) {
	t.Parallel()
	_, err := cli(t, "serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--store", "kurrent://db:2113")
	if err == nil || !strings.Contains(err.Error(), "esdb:// and esdb+discover:// only") {
		t.Fatalf("serve --store kurrent://…: %v", err)
	}
}
