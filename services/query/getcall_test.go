package query_test

import (
	"context"
	"slices"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
)

// TestGetCallTreeChildrenFirst: children that name their parent before the
// parent's own callback make it a placeholder that already shows them; its
// own callback then makes it a real call, and every leg stays in the tree.
func TestGetCallTreeChildrenFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	parent, c1, c2, c3 := sid(100), sid(101), sid(102), sid(103)

	e.append(t, statusEvent(c2, parent, callledgerv1.CallStatus_CALL_STATUS_COMPLETED, base.Add(3*time.Second)))
	pos := e.append(t, statusEvent(c1, parent, callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(2*time.Second)))

	got := e.getCall(t, parent, pos)
	if eventstore.Position(got.GetPosition()) < pos {
		t.Errorf("position %d is before the min_position %d", got.GetPosition(), pos)
	}
	call := got.GetCall()
	if !call.GetPlaceholder() || call.GetEventCount() != 0 {
		t.Errorf("parent known only from its children: placeholder=%v event_count=%d, want a placeholder without events", call.GetPlaceholder(), call.GetEventCount())
	}
	if call.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED || call.GetTerminal() {
		t.Errorf("placeholder parent status %v terminal=%v, want unspecified", call.GetStatus(), call.GetTerminal())
	}
	if want := []string{c1, c2}; !slices.Equal(call.GetChildCallSids(), want) {
		t.Errorf("children %v, want %v", call.GetChildCallSids(), want)
	}
	if want := []string{parent, c1, c2}; !slices.Equal(sids(got.GetLegs()), want) {
		t.Errorf("legs %v, want %v (root first, then by CallSid)", sids(got.GetLegs()), want)
	}

	// A child's answer carries the same tree, with the child as call.
	got = e.getCall(t, c2, pos)
	if got.GetCall().GetCallSid() != c2 || got.GetCall().GetRootCallSid() != parent || got.GetCall().GetParentCallSid() != parent {
		t.Errorf("child: sid %s root %s parent %s, want %s under %s", got.GetCall().GetCallSid(), got.GetCall().GetRootCallSid(), got.GetCall().GetParentCallSid(), c2, parent)
	}
	if got.GetCall().GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED || got.GetCall().GetDurationSeconds() != 42 {
		t.Errorf("child: status %v duration %d, want completed, 42 s", got.GetCall().GetStatus(), got.GetCall().GetDurationSeconds())
	}
	if want := []string{parent, c1, c2}; !slices.Equal(sids(got.GetLegs()), want) {
		t.Errorf("legs from a child %v, want %v", sids(got.GetLegs()), want)
	}

	// The parent's own callback: no longer a placeholder; its Dial action
	// names a third child that never calls back, itself a placeholder.
	e.append(t, statusEvent(parent, "", callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, base.Add(time.Second)))
	pos = e.append(t, dialEvent(parent, c3, callledgerv1.CallStatus_CALL_STATUS_NO_ANSWER, base.Add(4*time.Second)))
	got = e.getCall(t, parent, pos)
	call = got.GetCall()
	if call.GetPlaceholder() || call.GetEventCount() != 2 {
		t.Errorf("parent after its own events: placeholder=%v event_count=%d, want a real call with 2 events", call.GetPlaceholder(), call.GetEventCount())
	}
	if call.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS || call.GetRootCallSid() != parent || call.GetParentCallSid() != "" {
		t.Errorf("parent: status %v root %s parent %q, want in-progress root of itself", call.GetStatus(), call.GetRootCallSid(), call.GetParentCallSid())
	}
	if want := []string{c1, c2, c3}; !slices.Equal(call.GetChildCallSids(), want) {
		t.Errorf("children %v, want %v", call.GetChildCallSids(), want)
	}
	legs := got.GetLegs()
	if want := []string{parent, c1, c2, c3}; !slices.Equal(sids(legs), want) {
		t.Fatalf("legs %v, want %v", sids(legs), want)
	}
	if c := legs[3]; !c.GetPlaceholder() || c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_NO_ANSWER || c.GetDurationSeconds() != 7 {
		t.Errorf("child named only by the Dial action: placeholder=%v status %v duration %d, want a no-answer placeholder of 7 s",
			c.GetPlaceholder(), c.GetStatus(), c.GetDurationSeconds())
	}
	for _, l := range legs {
		if l.GetRootCallSid() != parent {
			t.Errorf("leg %s has root %s, want %s", l.GetCallSid(), l.GetRootCallSid(), parent)
		}
	}
}

// TestGetCallReadYourWrites: a GetCall with the position of an append sees
// that append, every time, with no retry or sleep.
func TestGetCallReadYourWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	statuses := []callledgerv1.CallStatus{
		callledgerv1.CallStatus_CALL_STATUS_QUEUED,
		callledgerv1.CallStatus_CALL_STATUS_INITIATED,
		callledgerv1.CallStatus_CALL_STATUS_RINGING,
		callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS,
		callledgerv1.CallStatus_CALL_STATUS_COMPLETED,
	}
	for round := range 10 {
		call := sid(200 + round)
		for i, st := range statuses {
			pos := e.append(t, statusEvent(call, "", st, base.Add(time.Duration(i)*time.Second)))
			got := e.getCall(t, call, pos)
			if got.GetCall().GetStatus() != st || got.GetCall().GetEventCount() != int64(i+1) {
				t.Fatalf("round %d, after appending %v at %d: status %v with %d events", round, st, pos, got.GetCall().GetStatus(), got.GetCall().GetEventCount())
			}
			if got.GetPosition() < uint64(pos) || got.GetCall().GetLastPosition() != uint64(pos) {
				t.Fatalf("answer at position %d, call last changed at %d; want at least %d, and exactly %d", got.GetPosition(), got.GetCall().GetLastPosition(), pos, pos)
			}
		}
	}
}

// TestGetCallWaitsForPosition: a GetCall for a position not written yet
// waits for it (within its deadline) and then answers with it.
func TestGetCallWaitsForPosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	call := sid(300)
	pos := e.append(t, statusEvent(call, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base))
	e.waitApplied(t, pos)

	type result struct {
		resp *callledgerv1.GetCallResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), failBound)
		defer cancel()
		// The next append of this store lands at pos+1: positions are
		// contiguous in the embedded store.
		resp, err := e.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: call, MinPosition: uint64(pos) + 1})
		done <- result{resp, err}
	}()
	next := e.append(t, statusEvent(call, "", callledgerv1.CallStatus_CALL_STATUS_COMPLETED, base.Add(time.Minute)))
	if next != pos+1 {
		t.Fatalf("append landed at %d, want %d", next, pos+1)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.GetCall().GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED {
		t.Errorf("status %v, want completed: the answer came before the position it waited for", r.resp.GetCall().GetStatus())
	}
}
