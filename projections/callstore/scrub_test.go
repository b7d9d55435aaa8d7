package callstore_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/residue"
	"github.com/callledger/callledger/projections/callstore"
)

// TestScrubPending: an erasure the read model applies — wherever it was
// made — leaves a pending scrub, which survives a restart; ScrubPending
// then removes the redacted calls' personal data from every file of the
// read model, and has nothing left to do the second time.
func TestScrubPending(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, callstore.Options{})
	const number = "+15555550177"
	var pos uint64
	event := func(call string, body func(*callledgerv1.Event)) eventstore.RecordedEvent {
		pos++
		ev := &callledgerv1.Event{EventId: uuid.NewString(), CallSid: call, Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK,
			ReceivedAt: timestamppb.New(t0), ReportedAt: timestamppb.New(t0)}
		body(ev)
		rec, err := eventcodec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return eventstore.RecordedEvent{ID: rec.ID, Type: rec.Type, Stream: eventcodec.CallStream(call), Position: eventstore.Position(pos), Data: rec.Data}
	}
	status := func(call, from string) eventstore.RecordedEvent {
		return event(call, func(ev *callledgerv1.Event) {
			ev.Body = &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
				Status: completed, AccountSid: "AC1", Direction: "inbound", From: from, To: "+15555550100"}}
		})
	}
	erasure := func(id, call string) eventstore.RecordedEvent {
		rec := event(call, func(ev *callledgerv1.Event) {
			ev.CallSid = ""
			ev.Body = &callledgerv1.Event_ErasureRecorded{ErasureRecorded: &callledgerv1.ErasureRecorded{
				ErasureId: id, RequestedBy: "test", SubjectCount: 1, CallSids: []string{call}}}
		})
		rec.Stream = eventcodec.ErasureStream
		return rec
	}
	apply(t, s, status(sid(1), number), status(sid(2), "+15555550188"))
	if n, err := s.ScrubPending(ctx); err != nil || n != 0 {
		t.Fatalf("ScrubPending before any erasure: %d, %v", n, err)
	}
	apply(t, s, erasure("e1", sid(1)))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The control: the redacted call's number is still in the files.
	if hits, err := residue.Find(dir, residue.PhoneNumber(number)...); err != nil || len(hits) == 0 {
		t.Fatalf("before the scrub the number is in no file (%v): the search proves nothing", err)
	}

	s = open(t, dir, callstore.Options{})
	if n, err := s.ScrubPending(ctx); err != nil || n != 1 {
		t.Fatalf("ScrubPending after a restart: %d, %v; want the erased call", n, err)
	}
	residue.AssertNone(t, dir, residue.PhoneNumber(number)...)
	if hits, err := residue.Find(dir, residue.PhoneNumber("+15555550188")...); err != nil || len(hits) == 0 {
		t.Errorf("the call not erased lost its number (%v)", err)
	}
	if n, err := s.ScrubPending(ctx); err != nil || n != 0 {
		t.Errorf("ScrubPending again: %d, %v; want nothing", n, err)
	}

	// The erasure service scrubs what it erased itself: that scrub is not
	// pending any more.
	apply(t, s, erasure("e2", sid(2)))
	if err := s.Scrub(ctx, []string{sid(2)}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ScrubPending(ctx); err != nil || n != 0 {
		t.Errorf("ScrubPending after the erasure's own scrub: %d, %v; want nothing", n, err)
	}
}
