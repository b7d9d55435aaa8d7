package seal

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/keystore/keystoretest"
)

// statusEvent is a status callback as twilio.Derive makes it: normalized
// fields and the verbatim request.
func statusEvent(id, sid string) *callledgerv1.Event {
	req := request().GetEvent().GetRequest()
	req.Method, req.ContentType = "POST", "application/x-www-form-urlencoded"
	// A "+" the sender did not encode arrives as a space.
	req.Body = append(req.Body, "&ForwardedFrom=+15555550142"...)
	return &callledgerv1.Event{
		EventId: id, CallSid: sid, Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK,
		ReceivedAt: timestamppb.Now(),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			Status: callledgerv1.CallStatus_CALL_STATUS_COMPLETED, StatusRaw: "completed",
			AccountSid: "AC0123456789abcdef0123456789abcdef",
			From:       "+15555550100", To: "+15555550199", CallerName: "Jane Roe",
		}},
		Request: req,
	}
}

func TestEventsSealOpen(t *testing.T) {
	ctx := context.Background()
	keys := keystoretest.Open(t)
	e := NewEvents(keys)
	ev := statusEvent(event1, callA)
	orig := proto.Clone(ev)

	stored, err := e.Seal(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(ev, orig) {
		t.Fatal("Seal changed its argument")
	}
	if stored.GetSealed() == nil || stored.GetSealedRequest() == nil {
		t.Fatalf("sealed parts missing: %v", stored)
	}
	if stored.GetSealed().GetSubject() != callA {
		t.Errorf("subject %q, want the CallSid", stored.GetSealed().GetSubject())
	}
	data, err := eventcodec.Encode(stored)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"5555550100", "5555550199", "5555550142", "Jane Roe", "hooks.example.com", "RSOYDt4T1cUTdK1PDd93", "10.0.0.7"} {
		if bytes.Contains(data.Data, []byte(s)) {
			t.Errorf("the stored event holds %q in the clear", s)
		}
	}
	if got := stored.GetCallStatusReported().GetStatusRaw(); got != "completed" {
		t.Errorf("status %q: the facts in the clear were lost", got)
	}
	if stored.GetRequest().GetMethod() != "POST" || stored.GetEventId() != event1 {
		t.Errorf("clear fields lost: %v", stored)
	}

	// Every party is indexed, normalized.
	for _, party := range []string{"+15555550100", "+15555550199", "+15555550142"} {
		subjects, err := keys.Subjects(ctx, party)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(subjects, callA) {
			t.Errorf("Subjects(%s) = %v, want %s", party, subjects, callA)
		}
	}

	// Facts only: the projection's open.
	facts := proto.Clone(stored).(*callledgerv1.Event)
	o, err := e.Open(ctx, facts, Facts)
	if err != nil || o.Redacted {
		t.Fatalf("Open facts: %v, %+v", err, o)
	}
	if facts.GetCallStatusReported().GetFrom() != "+15555550100" || facts.GetCallStatusReported().GetCallerName() != "Jane Roe" {
		t.Errorf("facts not opened: %v", facts.GetCallStatusReported())
	}
	if facts.GetSealedRequest() == nil || facts.GetRequest().GetBody() != nil {
		t.Error("opening the facts opened the request")
	}

	whole := proto.Clone(stored).(*callledgerv1.Event)
	if _, err := e.Open(ctx, whole); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(whole, ev) {
		t.Errorf("opened:\n%v\nwant the event as derived:\n%v", whole, ev)
	}

	// An event of another call, and one with nothing personal.
	other, err := e.Seal(ctx, statusEvent(event2, callB))
	if err != nil {
		t.Fatal(err)
	}
	if other.GetSealed().GetSubject() != callB {
		t.Errorf("subject %q, want %s", other.GetSealed().GetSubject(), callB)
	}
	plain := &callledgerv1.Event{EventId: event2, CallSid: callB, Body: &callledgerv1.Event_HangupSent{HangupSent: &callledgerv1.HangupSent{RequestId: "r"}}}
	if got, err := e.Seal(ctx, plain); err != nil || got.GetSealed() != nil || !proto.Equal(got, plain) {
		t.Errorf("an event with nothing personal: %v, %v", got, err)
	}

	// Erased: old events open redacted, new ones are stored without
	// their personal fields, and no key is made again.
	if _, err := keys.Destroy(ctx, callA); err != nil {
		t.Fatal(err)
	}
	red := proto.Clone(stored).(*callledgerv1.Event)
	o, err = e.Open(ctx, red)
	if err != nil || !o.Redacted {
		t.Fatalf("Open of an erased subject: %v, %+v", err, o)
	}
	if red.GetCallStatusReported().GetFrom() != "" || red.GetSealed() != nil || red.GetCallStatusReported().GetStatusRaw() != "completed" {
		t.Errorf("redacted: %v", red)
	}
	late, err := e.Seal(ctx, statusEvent(event2, callA))
	if err != nil {
		t.Fatal(err)
	}
	if late.GetSealed() != nil || late.GetCallStatusReported().GetFrom() != "" || late.GetRequest().GetBody() != nil || late.GetCallStatusReported().GetStatusRaw() != "completed" {
		t.Errorf("a late event of an erased call: %v", late)
	}
	if _, err := keys.Get(ctx, callA, stored.GetSealed().GetKeyId()); !errors.Is(err, keystore.ErrDestroyed) {
		t.Errorf("the erased subject has a key again: %v", err)
	}
}

// TestEventsOpenFails: a lost key store and a tampered ciphertext are
// errors, never an erasure.
func TestEventsOpenFails(t *testing.T) {
	ctx := context.Background()
	e := NewEvents(keystoretest.Open(t))
	stored, err := e.Seal(ctx, statusEvent(event1, callA))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewEvents(keystoretest.Open(t)).Open(ctx, proto.Clone(stored).(*callledgerv1.Event)); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("another key store: %v, want ErrNotFound", err)
	}
	tampered := proto.Clone(stored).(*callledgerv1.Event)
	tampered.Sealed.Ciphertext[0] ^= 1
	if _, err := e.Open(ctx, tampered); !errors.Is(err, ErrOpen) {
		t.Errorf("tampered: %v, want ErrOpen", err)
	}
	moved := proto.Clone(stored).(*callledgerv1.Event)
	moved.EventId = event2
	if _, err := e.Open(ctx, moved); !errors.Is(err, ErrOpen) {
		t.Errorf("moved to another event: %v, want ErrOpen", err)
	}
	swapped := proto.Clone(stored).(*callledgerv1.Event)
	swapped.Sealed, swapped.SealedRequest = swapped.SealedRequest, swapped.Sealed
	if _, err := e.Open(ctx, swapped); !errors.Is(err, ErrOpen) {
		t.Errorf("parts swapped: %v, want ErrOpen", err)
	}
	var none *Events
	if _, err := none.Open(ctx, proto.Clone(stored).(*callledgerv1.Event)); err == nil {
		t.Error("a sealed event opened without a key store")
	}
}

func TestSubject(t *testing.T) {
	for _, tc := range []struct {
		ev   *callledgerv1.Event
		want string
	}{
		{&callledgerv1.Event{EventId: event1, CallSid: callA}, callA},
		{&callledgerv1.Event{EventId: event1, Body: &callledgerv1.Event_RequestQuarantined{RequestQuarantined: &callledgerv1.RequestQuarantined{}}}, "quarantine:" + event1},
		{&callledgerv1.Event{EventId: event1, Body: &callledgerv1.Event_ConferenceEventReported{ConferenceEventReported: &callledgerv1.ConferenceEventReported{
			ConferenceSid: "CF00000000000000000000000000000001", CallSid: callB}}}, callB},
		{&callledgerv1.Event{EventId: event1, Body: &callledgerv1.Event_ConferenceEventReported{ConferenceEventReported: &callledgerv1.ConferenceEventReported{
			ConferenceSid: "CF00000000000000000000000000000001"}}}, "conference:CF00000000000000000000000000000001"},
	} {
		if got := Subject(tc.ev); got != tc.want {
			t.Errorf("Subject(%v) = %q, want %q", tc.ev, got, tc.want)
		}
	}
}

// TestEventsSealOwned: sealing in place stores what Seal stores — the same
// clear fields, parts that open to the same event, the same parties
// indexed — with the deferred sync too, and leaves its argument as the
// event to store.
func TestEventsSealOwned(t *testing.T) {
	ctx := context.Background()
	for _, deferSync := range []bool{false, true} {
		// Each way in a key store of its own, so that what SealOwned
		// indexes is its own doing.
		keys := keystoretest.Open(t)
		var opts []Option
		if deferSync {
			opts = append(opts, DeferSync())
		}
		e := NewEvents(keys, opts...)
		ev := statusEvent(event1, callA)
		orig := proto.Clone(ev).(*callledgerv1.Event)
		want, err := NewEvents(keystoretest.Open(t)).Seal(ctx, proto.Clone(ev).(*callledgerv1.Event))
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.SealOwned(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		if got != ev {
			t.Error("SealOwned returned another event than the one it was given")
		}
		if got.GetSealed() == nil || got.GetSealedRequest() == nil {
			t.Fatalf("sealed parts missing: %v", got)
		}
		// The ciphertexts differ (random nonces); what they hold does not.
		clearOf := func(ev *callledgerv1.Event) *callledgerv1.Event {
			c := proto.Clone(ev).(*callledgerv1.Event)
			c.Sealed, c.SealedRequest = nil, nil
			return c
		}
		if !proto.Equal(clearOf(got), clearOf(want)) {
			t.Errorf("clear fields differ:\nSealOwned %v\nSeal      %v", clearOf(got), clearOf(want))
		}
		if err := keys.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Open(ctx, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, orig) {
			t.Errorf("SealOwned then Open:\n%v\nwant\n%v", got, orig)
		}
		subs, err := keys.Subjects(ctx, "+15555550142")
		if err != nil || !slices.Equal(subs, []string{callA}) {
			t.Errorf("Subjects(ForwardedFrom) = %v, %v; want [%s]: SealOwned must index the parties it moves out", subs, err, callA)
		}
	}
}
