package erasure_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/projections/callstore"
)

// fixture is the erasure use case over real stores: a Pebble event log, a
// call store that applies the log when waited on (as the live projection
// would), a key store and a journal in temporary directories.
type fixture struct {
	t       *testing.T
	log     *pebblestore.Store
	calls   *callstore.Store
	keys    *keystore.Embedded
	journal *erasure.Journal
	svc     *erasure.Service
	dir     string
}

const (
	parent = "CA00000000000000000000000000000001"
	child  = "CA00000000000000000000000000000002"
	other  = "CA00000000000000000000000000000003"
	caller = "+15555550100"
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	f := &fixture{t: t, dir: t.TempDir()}
	var err error
	if f.log, err = pebblestore.Open(filepath.Join(f.dir, "ledger"), pebblestore.Options{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.log.Close() })
	if f.calls, err = callstore.Open(filepath.Join(f.dir, "calls"), callstore.Options{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.calls.Close() })
	kek, _, err := keystore.DevelopmentKEK(filepath.Join(f.dir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	if f.keys, err = keystore.Open(filepath.Join(f.dir, "keys"), kek, keystore.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.keys.Close() })
	f.openJournal()
	return f
}

func (f *fixture) openJournal() []erasure.Entry {
	f.t.Helper()
	if f.journal != nil {
		f.journal.Close()
	}
	j, entries, err := erasure.OpenJournal(filepath.Join(f.dir, "erasures.jsonl"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { j.Close() })
	f.journal = j
	f.svc, err = erasure.New(erasure.Config{Log: f.log, Keys: f.keys, ReadModel: projecting{f.calls, f}, Journal: j})
	if err != nil {
		f.t.Fatal(err)
	}
	return entries
}

// projecting applies the log to the call store before waiting on it.
type projecting struct {
	*callstore.Store
	f *fixture
}

func (p projecting) WaitFor(ctx context.Context, pos eventstore.Position) error {
	p.f.project()
	return p.Store.WaitFor(ctx, pos)
}

func (f *fixture) project() {
	f.t.Helper()
	recs, err := f.log.ReadAll(f.t.Context(), eventstore.Start, 1<<20)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(recs) == 0 {
		return
	}
	if err := f.calls.Apply(f.t.Context(), eventstore.Batch{Events: recs, Checkpoint: recs[len(recs)-1].Position}); err != nil {
		f.t.Fatal(err)
	}
}

// status appends a status callback of sid, from `from`, and makes its data
// key as the sealing write path does: indexed by the numbers it names.
func (f *fixture) status(sid, parentSid, from, to string) {
	f.t.Helper()
	ev := &callledgerv1.Event{
		EventId: eventcodec.EventID(eventcodec.IDKindStatus, []byte(sid)).String(), CallSid: sid,
		Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK, ReceivedAt: timestamppb.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			Status: callledgerv1.CallStatus_CALL_STATUS_COMPLETED, StatusRaw: "completed", ParentCallSid: parentSid, From: from, To: to,
		}},
	}
	data, err := eventcodec.Encode(ev)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.log.Append(f.t.Context(), eventcodec.CallStream(sid), eventstore.Any(), data); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.keys.Key(f.t.Context(), sid, from, to); err != nil {
		f.t.Fatal(err)
	}
}

// TestEraseNumberThroughThePartyIndex: a number is found in the key
// store's party index (a callee whose number the read model does not show
// on the leg that names it), widened to the call's tree; the keys are
// destroyed, the erasure recorded once, the calls redacted.
func TestEraseNumberThroughThePartyIndex(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.status(parent, "", caller, "+15555550111")
	f.status(child, parent, "+15555550111", "sip:agent@example.com")
	f.status(other, "", "+15555550199", "+15555550111")
	if _, err := f.keys.Key(t.Context(), "quarantine:0b8f", caller); err != nil {
		t.Fatal(err)
	}
	f.project()

	res, err := f.svc.Erase(t.Context(), erasure.Request{Number: " 15555550100", By: "dpo"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{parent, child, "quarantine:0b8f"}; !slices.Equal(res.Subjects, slices.Sorted(slices.Values(want))) {
		t.Errorf("subjects %v, want %v", res.Subjects, want)
	}
	if !slices.Equal(res.CallSids, []string{parent, child}) || res.Keys.Destroyed != 3 || res.PlaintextEvents != 2 {
		t.Errorf("result %+v", res)
	}
	for _, sub := range res.Subjects {
		if _, err := f.keys.Get(t.Context(), sub, 1); !errors.Is(err, keystore.ErrDestroyed) {
			t.Errorf("key of %s: %v, want ErrDestroyed", sub, err)
		}
	}
	for sid, want := range map[string]bool{parent: true, child: true, other: false} {
		c, err := f.calls.Get(t.Context(), sid)
		if err != nil {
			t.Fatal(err)
		}
		if c.GetRedacted() != want || (want && (c.GetFrom() != "" || c.GetTo() != "")) {
			t.Errorf("%s: redacted=%v from=%q, want redacted=%v", sid, c.GetRedacted(), c.GetFrom(), want)
		}
	}
	// Erasing again finds the keys gone and records a second erasure.
	again, err := f.svc.Erase(t.Context(), erasure.Request{CallSid: child, By: "dpo"})
	if err != nil || again.Keys.AlreadyDestroyed != 2 || again.ID == res.ID {
		t.Errorf("again: %+v, %v", again, err)
	}
}

// TestReplayFinishesAnErasureCutShort: an erasure journalled and then cut
// short (the process died before destroying anything) is finished by the
// replay: keys destroyed, recorded once under the journal's ID; a second
// replay does nothing.
func TestReplayFinishesAnErasureCutShort(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.status(parent, "", caller, "+15555550111")
	f.project()
	e := erasure.Entry{ID: "cut-short", At: time.Now().UTC(), By: "dpo", Subjects: []string{parent}}
	if err := f.journal.Append(e); err != nil {
		t.Fatal(err)
	}
	entries := f.openJournal() // the restart
	for range 2 {
		res, err := f.svc.Replay(t.Context(), entries)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Pending {
			if err := f.svc.Scrub(t.Context(), p); err != nil {
				t.Fatal(err)
			}
		}
		recs, err := f.log.ReadStream(t.Context(), eventcodec.ErasureStream, 0, 10)
		if err != nil || len(recs) != 1 {
			t.Fatalf("%d erasures recorded, %v", len(recs), err)
		}
		ev, _ := eventcodec.Decode(recs[0])
		if ev.GetErasureRecorded().GetErasureId() != e.ID || !ev.GetErasureRecorded().GetReplay() {
			t.Errorf("recorded %v", ev)
		}
		if c, _ := f.calls.Get(t.Context(), parent); !c.GetRedacted() {
			t.Error("not redacted")
		}
		if res.Entries != 1 {
			t.Errorf("entries %d", res.Entries)
		}
		if _, err := f.keys.Get(t.Context(), parent, 1); !errors.Is(err, keystore.ErrDestroyed) {
			t.Errorf("key: %v", err)
		}
	}
}

// TestRefusals: what is refused changes nothing.
func TestRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, req := range []erasure.Request{
		{By: "dpo"},
		{Number: caller, CallSid: parent, By: "dpo"},
		{Number: caller},
		{CallSid: "CA1", By: "dpo"},
		{CallSids: []string{parent, "nope"}, By: "retention"},
	} {
		if _, err := f.svc.Erase(t.Context(), req); !errors.Is(err, erasure.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", req, err)
		}
	}
	if _, err := f.svc.Erase(t.Context(), erasure.Request{CallSid: parent, By: "dpo"}); !errors.Is(err, erasure.ErrNotFound) {
		t.Errorf("unknown call: %v", err)
	}
	if got := f.openJournal(); len(got) != 0 {
		t.Errorf("refusals journalled %v", got)
	}
}

// TestPersonalInClear: an event whose personal fields are empty (as
// sealing stores it) holds nothing in the clear.
func TestPersonalInClear(t *testing.T) {
	ev := &callledgerv1.Event{Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
		Status: callledgerv1.CallStatus_CALL_STATUS_COMPLETED, AccountSid: "AC1", Direction: "inbound"}}}
	if erasure.PersonalInClear(ev) {
		t.Error("an event without personal fields counted")
	}
	ev.GetCallStatusReported().To = caller
	if !erasure.PersonalInClear(ev) {
		t.Error("an event naming a number not counted")
	}
	ev.GetCallStatusReported().To = ""
	ev.Request = &callledgerv1.HttpRequest{Method: "POST", Body: []byte("From=%2B1555")}
	if !erasure.PersonalInClear(ev) {
		t.Error("a verbatim request not counted")
	}
}
