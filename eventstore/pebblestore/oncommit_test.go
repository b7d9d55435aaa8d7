package pebblestore_test

import (
	"context"
	"sync"
	"testing"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
)

// TestOnCommit checks that the commit observer sees every durable group,
// with its appends and the events it wrote, and nothing for duplicates.
func TestOnCommit(t *testing.T) {
	var (
		mu    sync.Mutex
		infos []pebblestore.CommitInfo
	)
	s := openClosed(t, t.TempDir(), pebblestore.Options{OnCommit: func(ci pebblestore.CommitInfo) {
		mu.Lock()
		infos = append(infos, ci)
		mu.Unlock()
	}})
	ctx := context.Background()
	a, b := ev("a"), ev("b")
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), a, b); err != nil {
		t.Fatal(err)
	}
	// A pure duplicate writes nothing, so no commit is observed.
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "call-2", eventstore.Any(), ev("c")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var appends, events int
	for _, ci := range infos {
		if ci.Appends < 1 || ci.Events < 1 || ci.Duration < 0 {
			t.Errorf("implausible commit %+v", ci)
		}
		appends += ci.Appends
		events += ci.Events
	}
	st := s.Stats()
	if len(infos) != int(st.Commits) || events != int(st.Events) || events != 3 {
		t.Errorf("observed %d commits with %d events, stats %+v; want 3 events", len(infos), events, st)
	}
	if appends != 2 {
		t.Errorf("observed %d appends in writing groups, want 2", appends)
	}
}
