package query_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpctest"
)

// recv receives one message, failing the test on an error.
func recv(t *testing.T, st grpc.ServerStreamingClient[callledgerv1.WatchCallsResponse]) *callledgerv1.WatchCallsResponse {
	t.Helper()
	m, err := st.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return m
}

// watch opens a WatchCalls stream that ends with the test.
func watch(t *testing.T, client callledgerv1.CallQueryServiceClient, f *callledgerv1.CallFilter) grpc.ServerStreamingClient[callledgerv1.WatchCallsResponse] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	t.Cleanup(cancel)
	st, err := client.WatchCalls(ctx, &callledgerv1.WatchCallsRequest{Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestWatchCallsSnapshotThenChanges: the matching calls as of one
// position, a caught_up marker, then each change that concerns the filter,
// with its position.
func TestWatchCallsSnapshotThenChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a, b, c, done, late := sid(1), sid(2), sid(3), sid(4), sid(5)
	for i, s := range []string{a, b, c} {
		e.append(t, statusEvent(s, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(time.Duration(i)*time.Second)))
	}
	head := e.append(t, statusEvent(done, "", callledgerv1.CallStatus_CALL_STATUS_COMPLETED, base.Add(time.Hour)))
	e.waitApplied(t, head)

	st := watch(t, e.client, &callledgerv1.CallFilter{ActiveOnly: true})
	var snap []string
	var snapPos uint64
	for {
		m := recv(t, st)
		if m.GetCaughtUp() {
			if m.GetCall() != nil || m.GetSnapshot() || m.GetPosition() != snapPos {
				t.Errorf("caught_up message: call %v snapshot %v position %d, want no call at the snapshot's position %d", m.GetCall(), m.GetSnapshot(), m.GetPosition(), snapPos)
			}
			break
		}
		if !m.GetSnapshot() || m.GetCall() == nil {
			t.Fatalf("before caught_up: %v, want snapshot calls", m)
		}
		if snapPos == 0 {
			snapPos = m.GetPosition()
		}
		if m.GetPosition() != snapPos || m.GetPosition() < uint64(head) {
			t.Errorf("snapshot call %s at position %d, want every one at the same position, at least %d", m.GetCall().GetCallSid(), m.GetPosition(), head)
		}
		snap = append(snap, m.GetCall().GetCallSid())
	}
	if want := []string{c, b, a}; !slices.Equal(snap, want) {
		t.Errorf("snapshot %v, want the active calls newest first %v", snap, want)
	}

	// A change that does not concern the filter is not sent: the next
	// message is the one after it.
	e.append(t, statusEvent(done, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(2*time.Hour)))
	for _, step := range []struct {
		sid string
		st  callledgerv1.CallStatus
	}{
		{a, callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS},
		// The end of an active call is sent, though it no longer matches.
		{b, callledgerv1.CallStatus_CALL_STATUS_COMPLETED},
		{late, callledgerv1.CallStatus_CALL_STATUS_QUEUED},
	} {
		pos := e.append(t, statusEvent(step.sid, "", step.st, base.Add(3*time.Hour)))
		m := recv(t, st)
		if m.GetSnapshot() || m.GetCaughtUp() || m.GetPosition() != uint64(pos) {
			t.Errorf("change: snapshot %v caught_up %v position %d, want a change at %d", m.GetSnapshot(), m.GetCaughtUp(), m.GetPosition(), pos)
		}
		if m.GetCall().GetCallSid() != step.sid || m.GetCall().GetStatus() != step.st {
			t.Errorf("change of %s to %v, want %s to %v", m.GetCall().GetCallSid(), m.GetCall().GetStatus(), step.sid, step.st)
		}
	}
}

// TestWatchCallsChildren: a watch of one parent's children sees its
// children only, including one that appears after the snapshot.
func TestWatchCallsChildren(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	parent, c1, c2, other := sid(10), sid(11), sid(12), sid(13)
	e.append(t, statusEvent(parent, "", callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, base))
	e.append(t, statusEvent(other, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base))
	e.waitApplied(t, e.append(t, statusEvent(c1, parent, callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(time.Second))))

	st := watch(t, e.client, &callledgerv1.CallFilter{ParentCallSid: parent})
	if m := recv(t, st); m.GetCall().GetCallSid() != c1 || !m.GetSnapshot() {
		t.Fatalf("first message %v, want the snapshot of %s", m, c1)
	}
	if m := recv(t, st); !m.GetCaughtUp() {
		t.Fatalf("second message %v, want caught_up", m)
	}
	e.append(t, statusEvent(other, "", callledgerv1.CallStatus_CALL_STATUS_COMPLETED, base.Add(time.Minute)))
	pos := e.append(t, statusEvent(c2, parent, callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(time.Minute)))
	// The parent changes too (its children), but is not its own child.
	m := recv(t, st)
	if m.GetCall().GetCallSid() != c2 || m.GetPosition() != uint64(pos) || m.GetCall().GetParentCallSid() != parent {
		t.Errorf("change %s at %d (parent %s), want %s at %d under %s", m.GetCall().GetCallSid(), m.GetPosition(), m.GetCall().GetParentCallSid(), c2, pos, parent)
	}
}

// TestWatchCallsSlowConsumer: a client that stops reading while changes
// keep coming is ended with RESOURCE_EXHAUSTED, rather than buffered
// without bound, and is told to watch again.
func TestWatchCallsSlowConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{watchBuffer: 4})
	// Fixed flow-control windows (no BDP growth): what the server can have
	// in flight to this client is bounded by them, so the changes below
	// overflow the watcher's buffer of 4 whatever the timing.
	conn := grpctest.Dial(t, e.addr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	slow := watch(t, callledgerv1.NewCallQueryServiceClient(conn), nil)
	if m := recv(t, slow); !m.GetCaughtUp() {
		t.Fatalf("first message %v, want caught_up on an empty store", m)
	}

	// 200 changes of 8 KiB each: 1.6 MB, far beyond the 64 KiB window, the
	// server's 64 KiB write quota and the 4 buffered changes.
	const n = 200
	big := strings.Repeat("x", 8<<10)
	evs := make([]*callledgerv1.Event, n)
	for i := range evs {
		evs[i] = statusEvent(sid(100+i), "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base)
		evs[i].GetCallStatusReported().From = big
	}
	e.waitApplied(t, e.appendAll(t, evs))
	e.settleWatchers(t)
	got := recvUntilExhausted(t, slow, func(m *callledgerv1.WatchCallsResponse) bool { return m.GetCall() != nil && !m.GetSnapshot() })
	t.Logf("received %d changes", got)
	if got >= n {
		t.Errorf("received all %d changes before the end: the consumer was never too slow", got)
	}

	// Watching again brings the whole current state.
	again := watch(t, e.client, nil)
	snap := 0
	for m := recv(t, again); !m.GetCaughtUp(); m = recv(t, again) {
		snap++
	}
	if snap != n {
		t.Errorf("watching again: %d calls in the snapshot, want %d", snap, n)
	}
}

// TestWatchCallsSlowDuringSnapshot: a client that stops reading while its
// snapshot is sent, as changes keep coming, is ended the same way as one
// too slow for the changes: RESOURCE_EXHAUSTED, told to watch again.
func TestWatchCallsSlowDuringSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{watchBuffer: 4})
	// More calls than a snapshot page (1000), each big enough that the
	// first page alone far exceeds the fixed 64 KiB windows below.
	const n = 1200
	big := strings.Repeat("x", 1<<10)
	evs := make([]*callledgerv1.Event, n)
	for i := range evs {
		evs[i] = statusEvent(sid(1000+i), "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base)
		evs[i].GetCallStatusReported().From = big
	}
	e.waitApplied(t, e.appendAll(t, evs))
	conn := grpctest.Dial(t, e.addr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	slow := watch(t, callledgerv1.NewCallQueryServiceClient(conn), nil)
	if _, err := slow.Header(); err != nil { // the watch is open
		t.Fatal(err)
	}
	// The snapshot's first page waits on the client; these changes
	// overflow the watcher's buffer of 4 meanwhile.
	changes := make([]*callledgerv1.Event, 16)
	for i := range changes {
		changes[i] = statusEvent(sid(1000+i), "", callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, base.Add(time.Minute))
	}
	e.waitApplied(t, e.appendAll(t, changes))
	e.settleWatchers(t)
	// Only snapshot calls: the watch was too slow before catching up.
	got := recvUntilExhausted(t, slow, func(m *callledgerv1.WatchCallsResponse) bool { return m.GetSnapshot() && !m.GetCaughtUp() })
	if got >= n {
		t.Errorf("received the whole snapshot (%d calls) before the end", got)
	}
}

// settleWatchers returns once every watcher has been handed the last
// applied batch: watching takes the store's apply lock, so once another
// watch is caught up, the batch before it has reached every watcher.
func (e *env) settleWatchers(t *testing.T) {
	t.Helper()
	other := watch(t, e.client, &callledgerv1.CallFilter{ParentCallSid: sid(1)})
	if m := recv(t, other); !m.GetCaughtUp() {
		t.Fatalf("other watch: %v, want caught_up", m)
	}
}

// recvUntilExhausted reads st until it ends, which must be with
// RESOURCE_EXHAUSTED telling the client to watch again; every message
// before must pass want. It returns how many came.
func recvUntilExhausted(t *testing.T, st grpc.ServerStreamingClient[callledgerv1.WatchCallsResponse], want func(*callledgerv1.WatchCallsResponse) bool) int {
	t.Helper()
	for got := 0; ; got++ {
		m, err := st.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "watch again") {
				t.Fatalf("after %d messages: %v, want RESOURCE_EXHAUSTED telling to watch again", got, err)
			}
			return got
		}
		if !want(m) {
			t.Fatalf("message %d: %v", got, m)
		}
	}
}

// TestStoreClosed: once the read model or the log is closed, every method
// answers UNAVAILABLE, including a watch in progress.
func TestStoreClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	call := sid(1)
	e.waitApplied(t, e.append(t, statusEvent(call, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base)))
	st := watch(t, e.client, nil)
	recv(t, st) // the call
	if m := recv(t, st); !m.GetCaughtUp() {
		t.Fatalf("%v, want caught_up", m)
	}

	if err := e.calls.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.events.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := st.Recv()
	wantCode(t, err, codes.Unavailable)

	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	_, err = e.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: call})
	wantCode(t, err, codes.Unavailable)
	_, err = e.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: call, MinPosition: 1000})
	wantCode(t, err, codes.Unavailable)
	_, err = e.client.ListCalls(ctx, &callledgerv1.ListCallsRequest{})
	wantCode(t, err, codes.Unavailable)
	_, err = e.client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: call})
	wantCode(t, err, codes.Unavailable)
	again, err := e.client.WatchCalls(ctx, &callledgerv1.WatchCallsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = again.Recv()
	wantCode(t, err, codes.Unavailable)
}
