// Regression tests of two read-model defects found through this service:
// reads racing Close, and watches not told of calls leaving their filter.

package query_test

import (
	"context"
	"errors"
	"testing"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstore"
)

// TestSnapshotAfterStoreCloseIsAnError: Store.Close does not wait for (or
// fence off) reads in flight. A watcher whose snapshot is being read when
// the store closes panics with "pebble: closed" (Tree and List race the
// same way). Through gRPC: a WatchCalls client slow to read a large
// snapshot, and a shutdown that closes the store before every handler
// returned, crash the process.
func TestSnapshotAfterStoreCloseIsAnError(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.waitApplied(t, e.append(t, statusEvent(sid(1), "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base)))
	w, err := e.calls.Watch(context.Background(), callstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := e.calls.Close(); err != nil {
		t.Fatalf("Close with a watcher open: %v", err)
	}
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("reading a watcher's snapshot after Close panicked: %v; want ErrClosed", p)
		}
	}()
	err = w.Snapshot(context.Background(), func(*callledgerv1.Call) error { return nil })
	if !errors.Is(err, callstore.ErrClosed) {
		t.Fatalf("Snapshot after Close: %v, want ErrClosed", err)
	}
}

// TestWatchHearsCallsLeavingAStatusFilter: a watch filtered by
// statuses is never told that a call left the filter (ringing → in
// progress), so a client's view keeps it as ringing for ever. Only
// active_only has that case covered (Watcher.endedActive).
func TestWatchHearsCallsLeavingAStatusFilter(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b := sid(1), sid(2)
	e.waitApplied(t, e.append(t, statusEvent(a, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base)))
	st := watch(t, e.client, &callledgerv1.CallFilter{Statuses: []callledgerv1.CallStatus{callledgerv1.CallStatus_CALL_STATUS_RINGING}})
	if m := recv(t, st); m.GetCall().GetCallSid() != a {
		t.Fatalf("snapshot %v, want %s", m, a)
	}
	if m := recv(t, st); !m.GetCaughtUp() {
		t.Fatalf("%v, want caught_up", m)
	}
	e.append(t, statusEvent(a, "", callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, base.Add(1)))
	e.append(t, statusEvent(b, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(2)))
	if m := recv(t, st); m.GetCall().GetCallSid() != a {
		t.Errorf("first change is %s (%v); want %s leaving the filter (in progress)", m.GetCall().GetCallSid(), m.GetCall().GetStatus(), a)
	}
}
