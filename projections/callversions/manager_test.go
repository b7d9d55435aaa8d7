package callversions_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callversions"
)

var quiet = slog.New(slog.DiscardHandler)

func openLog(t *testing.T, events int) *pebblestore.Store {
	t.Helper()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := ledgerload.Load(context.Background(), store, ledgerload.Config{Events: events, Seed: 3, CallsPerChunk: 100}); err != nil {
		t.Fatal(err)
	}
	return store
}

func waitHead(t *testing.T, m *callversions.Manager, log eventstore.Store) {
	t.Helper()
	head, err := log.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitFor(context.Background(), head); err != nil {
		t.Fatal(err)
	}
}

// someSid returns a CallSid the read model knows.
func someSid(t *testing.T, m *callversions.Manager) string {
	t.Helper()
	page, err := m.List(context.Background(), callstore.Filter{}, 1, "")
	if err != nil || len(page.Calls) == 0 {
		t.Fatalf("list: %v (%d calls)", err, len(page.Calls))
	}
	return page.Calls[0].GetCallSid()
}

// TestVersionBumpAnswersQueriesThroughout starts on a read model of
// version 1, then opens the same data directory with code of version 2:
// the old version answers while the new one builds beside it and catches
// up with events appended meanwhile; every query succeeds, before, across
// and after the switch; then the old directory is gone.
func TestVersionBumpAnswersQueriesThroughout(t *testing.T) {
	ctx := context.Background()
	log := openLog(t, 3000)
	root := filepath.Join(t.TempDir(), "callstate")

	v1, err := callversions.Open(ctx, callversions.Config{Root: root, Log: log, Version: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	waitHead(t, v1, log)
	sid := someSid(t, v1)
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}

	var (
		queries   atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		v2        *callversions.Manager
		opened    = make(chan struct{}) // v2 is set
		beforeRan bool
	)
	query := func(want uint64) {
		if v := v2.Version(); v != want {
			t.Errorf("served by version %d, want %d", v, want)
		}
		if tr, err := v2.Tree(ctx, sid); err != nil || tr.Call.GetCallSid() != sid || len(tr.Legs) == 0 {
			t.Errorf("GetCall from version %d: %v", want, err)
		}
	}
	v2, err = callversions.Open(ctx, callversions.Config{
		Root: root, Log: log, Version: 2, Logger: quiet,
		// The new version has caught up: the old one still answers.
		BeforeSwitch: func() {
			<-opened // the build runs in the background of Open
			beforeRan = true
			for range 20 {
				query(1)
			}
		},
	})
	close(opened)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if v := v2.Version(); v != 1 {
		t.Fatalf("serving version %d right after the bump, want the old 1", v)
	}
	// Across the switch: every query answered, whichever version answers.
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := v2.Tree(ctx, sid); err != nil {
				t.Errorf("GetCall during the version bump: %v", err)
				return
			}
			if _, err := v2.List(ctx, callstore.Filter{}, 10, ""); err != nil {
				t.Errorf("ListCalls during the version bump: %v", err)
				return
			}
			queries.Add(1)
		}
	})
	// Events arriving while the new version builds must reach it too.
	if _, err := ledgerload.Load(ctx, log, ledgerload.Config{Events: 500, Seed: 4, CallsPerChunk: 100}); err != nil {
		t.Fatal(err)
	}
	<-v2.Upgraded()
	for range 20 {
		query(2)
	}
	close(stop)
	wg.Wait()
	if !beforeRan {
		t.Error("the switch did not go through BeforeSwitch")
	}
	t.Logf("%d queries answered across the switch", queries.Load())

	if v := v2.Version(); v != 2 {
		t.Fatalf("serving version %d after the switch, want 2", v)
	}
	waitHead(t, v2, log)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != v2.CurrentName() || v2.CurrentName() != "v2-1" {
		t.Errorf("directories after the switch: %v, want only %s", entries, v2.CurrentName())
	}

	// The switched read model equals one built live from nothing.
	fresh, err := callversions.Open(ctx, callversions.Config{Root: filepath.Join(t.TempDir(), "fresh"), Log: log, Version: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	waitHead(t, fresh, log)
	compare(t, fresh.Current(), v2.Current())
}
