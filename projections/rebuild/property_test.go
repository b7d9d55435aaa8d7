package rebuild_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/rebuild"
	"github.com/callledger/callledger/twilio"
)

// ledgerGen draws a few call trees (a root, up to three dialled children,
// a grandchild now and then) and their events: own callbacks with their
// ParentCallSid, the parent's Dial actions, recordings, and Voice
// Insights summaries, which come late. The events of every tree are then
// appended in one random order, so that children come before their
// parents, legs out of order, and late events after their call was
// spilled.
type ledgerGen struct {
	t      *rapid.T
	events []*callledgerv1.Event
	next   int
	base   time.Time
}

func (g *ledgerGen) sid(label string) string {
	g.next++
	return fmt.Sprintf("CA%032x", rapid.Uint64Range(1, 1<<40).Draw(g.t, label)+uint64(g.next)<<48)
}

func (g *ledgerGen) add(sid string, src callledgerv1.Source, label string, ev *callledgerv1.Event) {
	g.next++
	at := g.base.Add(time.Duration(rapid.IntRange(0, 600).Draw(g.t, label)) * time.Second)
	ev.EventId = uuid.NewSHA1(uuid.NameSpaceOID, fmt.Append(nil, g.next)).String()
	ev.CallSid, ev.Source, ev.Derivation = sid, src, twilio.Derivation
	ev.ReportedAt, ev.ReceivedAt = timestamppb.New(at), timestamppb.New(at.Add(time.Second))
	g.events = append(g.events, ev)
}

func (g *ledgerGen) leg(sid, parent string) {
	statuses := []callledgerv1.CallStatus{2, 3, 4, 5, 6, 7, 8, 9}
	for n := rapid.IntRange(0, 4).Draw(g.t, "callbacks"); n > 0; n-- {
		st := rapid.SampledFrom(statuses).Draw(g.t, "status")
		rep := &callledgerv1.CallStatusReported{Status: st, ParentCallSid: parent, AccountSid: "AC1", Direction: "outbound-dial", From: "+1", To: "+2"}
		if callstate.IsTerminal(st) {
			d := int64(rapid.IntRange(0, 900).Draw(g.t, "duration"))
			rep.CallDurationSeconds = &d
		}
		src := rapid.SampledFrom([]callledgerv1.Source{callledgerv1.Source_SOURCE_STATUS_CALLBACK, callledgerv1.Source_SOURCE_EVENT_STREAMS}).Draw(g.t, "source")
		g.add(sid, src, "at", &callledgerv1.Event{Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: rep}})
	}
	if rapid.IntRange(0, 3).Draw(g.t, "recording") == 0 {
		g.add(sid, callledgerv1.Source_SOURCE_RECORDING_STATUS, "recording-at", &callledgerv1.Event{Body: &callledgerv1.Event_RecordingStatusReported{
			RecordingStatusReported: &callledgerv1.RecordingStatusReported{AccountSid: "AC1", RecordingSid: fmt.Sprintf("RE%032x", g.next), RecordingStatus: "completed"},
		}})
	}
	if rapid.IntRange(0, 3).Draw(g.t, "summary") == 0 {
		st := rapid.SampledFrom(statuses[3:]).Draw(g.t, "summary-status")
		g.add(sid, callledgerv1.Source_SOURCE_VOICE_INSIGHTS, "summary-at", &callledgerv1.Event{Body: &callledgerv1.Event_CallSummaryReported{
			CallSummaryReported: &callledgerv1.CallSummaryReported{Status: st, ParentCallSid: parent, AccountSid: "AC1", ProcessingState: "complete", StartTime: timestamppb.New(g.base)},
		}})
	}
}

func (g *ledgerGen) dial(parent, child string) {
	st := rapid.SampledFrom([]callledgerv1.CallStatus{5, 6, 7, 8, 9}).Draw(g.t, "dial-status")
	d := int64(rapid.IntRange(0, 900).Draw(g.t, "dial-duration"))
	g.add(parent, callledgerv1.Source_SOURCE_DIAL_ACTION, "dial-at", &callledgerv1.Event{Body: &callledgerv1.Event_DialCompleted{DialCompleted: &callledgerv1.DialCompleted{
		DialCallSid: child, DialCallStatus: st, DialCallDurationSeconds: &d, AccountSid: "AC1",
	}}})
}

func (g *ledgerGen) tree() {
	root := g.sid("root")
	g.leg(root, "")
	for range rapid.IntRange(0, 3).Draw(g.t, "children") {
		child := g.sid("child")
		g.leg(child, root)
		if rapid.Bool().Draw(g.t, "dialled") {
			g.dial(root, child)
		}
		if rapid.IntRange(0, 3).Draw(g.t, "grandchild") == 0 {
			gc := g.sid("grandchild")
			g.leg(gc, child)
			g.dial(child, gc)
		}
	}
}

// TestBuildEqualsPlainFold: whatever the order of the log, and however
// small the epochs (records are spilled into the read model being built
// and read back by the next event of their tree), the batches and the
// decoders, Build writes exactly the read model that folding every event
// in log order into one in-memory map gives: the same records, the same
// counts, and the time and active indexes of those records alone.
func TestBuildEqualsPlainFold(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	base := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		g := &ledgerGen{t: rt, base: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
		for range rapid.IntRange(1, 4).Draw(rt, "trees") {
			g.tree()
		}
		order := rapid.Permutation(g.events).Draw(rt, "order")
		dir, err := os.MkdirTemp(base, "check")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(dir)
		store, err := pebblestore.Open(filepath.Join(dir, "ledger"), pebblestore.Options{Logger: quiet})
		if err != nil {
			rt.Fatal(err)
		}
		defer store.Close()
		for _, ev := range order {
			data, err := eventcodec.Encode(ev)
			if err != nil {
				rt.Fatal(err)
			}
			if _, err := store.Append(ctx, eventcodec.CallStream(ev.GetCallSid()), eventstore.Any(), data); err != nil {
				rt.Fatal(err)
			}
		}

		// The plain fold: every event in log order into one map.
		plain := callstate.NewMemory()
		head, err := store.Head(ctx)
		if err != nil {
			rt.Fatal(err)
		}
		evs, err := store.ReadAll(ctx, eventstore.Start, int(head)+1)
		if err != nil {
			rt.Fatal(err)
		}
		for _, rec := range evs {
			ev, ok := callstore.DecodeCallEvent(&rec, quiet)
			if !ok {
				rt.Fatalf("event at %d not decoded", rec.Position)
			}
			if err := callstate.Apply(plain, ev, uint64(rec.Position)); err != nil {
				rt.Fatal(err)
			}
		}

		out := filepath.Join(dir, "built")
		opts := rebuild.Options{
			BatchSize:   rapid.IntRange(1, 40).Draw(rt, "batch"),
			Decoders:    rapid.IntRange(1, 3).Draw(rt, "decoders"),
			EpochEvents: uint64(rapid.IntRange(1, 8).Draw(rt, "epoch")),
		}
		st, err := rebuild.Build(ctx, store, out, opts)
		if err != nil {
			rt.Fatal(err)
		}
		if st.Calls != plain.Len() || st.Checkpoint != head {
			rt.Fatalf("built %d calls to %d, want %d calls to %d", st.Calls, st.Checkpoint, plain.Len(), head)
		}
		built, err := callstore.Open(out, callstore.Options{Logger: quiet})
		if err != nil {
			rt.Fatal(err)
		}
		defer built.Close()
		compareWithPlain(rt, ctx, plain, built)
	})
}

// compareWithPlain checks that a read model holds the records of plain,
// counted and indexed as they should be.
func compareWithPlain(t *rapid.T, ctx context.Context, plain *callstate.Memory, built *callstore.Store) {
	var got []*statev1.CallRecord
	if err := built.Records(ctx, func(r *statev1.CallRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	sids := plain.Sids()
	if len(got) != len(sids) {
		t.Fatalf("%d records built, %d folded", len(got), len(sids))
	}
	byStatus := map[callledgerv1.CallStatus]int64{}
	var active, all []string
	for i, sid := range sids {
		want, _ := plain.Get(sid)
		if !proto.Equal(got[i], want) {
			t.Fatalf("record %s differs:\nbuilt  %v\nfolded %v", sid, got[i], want)
		}
		view := callstate.View(want)
		byStatus[view.GetStatus()]++
		if callstate.Active(view) {
			active = append(active, sid)
		}
		all = append(all, sid)
	}
	c := built.Counts()
	if c.Total != int64(len(sids)) || c.Active != int64(len(active)) || len(c.ByStatus) != len(byStatus) {
		t.Fatalf("counts %+v, want %d calls, %d active, by status %v", c, len(sids), len(active), byStatus)
	}
	for s, n := range byStatus {
		if c.ByStatus[s] != n {
			t.Fatalf("counts %+v, want by status %v", c, byStatus)
		}
	}
	for _, idx := range []struct {
		f    callstore.Filter
		want []string
	}{{callstore.Filter{}, all}, {callstore.Filter{ActiveOnly: true}, active}} {
		page, err := built.List(ctx, idx.f, len(sids)+10, "")
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, call := range page.Calls {
			listed = append(listed, call.GetCallSid())
		}
		slices.Sort(listed)
		if !slices.Equal(listed, idx.want) {
			t.Fatalf("List(%+v) gives %v, want %v", idx.f, listed, idx.want)
		}
	}
	// The retention index: every call not redacted, once (a stale key
	// left by a record written again would list it twice).
	var unredacted []string
	for i, sid := range sids {
		if !got[i].GetRedacted() {
			unredacted = append(unredacted, sid)
		}
	}
	due, err := built.Due(ctx, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), len(sids)+10)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(due)
	if !slices.Equal(due, unredacted) {
		t.Fatalf("Due lists %v, want %v", due, unredacted)
	}
}
