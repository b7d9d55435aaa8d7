package callstate_test

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstate"
)

// minChecks is how many random call trees CI folds in every order; run
// with -rapid.checks=N (or RAPID_CHECKS) for more.
const minChecks = 10000

func TestMain(m *testing.M) {
	flag.Parse()
	set := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		if err := flag.Set("rapid.checks", fmt.Sprint(minChecks)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

var (
	terminals    = []callledgerv1.CallStatus{5, 6, 7, 8, 9}
	early        = []callledgerv1.CallStatus{2, 3, 4} // initiated, ringing, in-progress
	baseTime     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	terminalRaws = map[callledgerv1.CallStatus]string{5: "completed", 6: "busy", 7: "failed", 8: "no-answer", 9: "canceled"}
)

// treeGen draws the events of one random call tree: a root that may never
// call back, up to three dialled children (some silent, some without their
// terminal callback), a grandchild now and then, Event Streams copies,
// unknown statuses, Dial actions and recordings.
type treeGen struct {
	t      *rapid.T
	events []*callledgerv1.Event
	next   int
}

func (g *treeGen) sid(label string) string {
	g.next++
	return fmt.Sprintf("CA%032x", rapid.Uint64Range(1, 1<<62).Draw(g.t, label)+uint64(g.next)<<56)
}

func (g *treeGen) id() string {
	g.next++
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint(g.next, rapid.Int().Draw(g.t, "id")))).String()
}

func (g *treeGen) at(label string) time.Time {
	return baseTime.Add(time.Duration(rapid.IntRange(0, 3600).Draw(g.t, label)) * time.Second)
}

func (g *treeGen) add(ev *callledgerv1.Event) {
	if ev.ReceivedAt == nil {
		ev.ReceivedAt = timestamppb.New(ev.GetReportedAt().AsTime().Add(time.Duration(rapid.IntRange(0, 5000).Draw(g.t, "delay")) * time.Millisecond))
	}
	g.events = append(g.events, ev)
}

func (g *treeGen) status(sid, parent string, st callledgerv1.CallStatus, raw string, withDuration bool) {
	at := g.at("at")
	rep := &callledgerv1.CallStatusReported{Status: st, StatusRaw: raw, ParentCallSid: parent, AccountSid: "AC1", Direction: "outbound-dial", From: "+1", To: "+2"}
	if withDuration {
		d := int64(rapid.IntRange(0, 900).Draw(g.t, "duration"))
		rep.CallDurationSeconds = &d
	}
	src := callledgerv1.Source_SOURCE_STATUS_CALLBACK
	for copyN := 0; ; copyN++ {
		g.add(&callledgerv1.Event{
			EventId: g.id(), CallSid: sid, Source: src, ReportedAt: timestamppb.New(at),
			Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: proto.Clone(rep).(*callledgerv1.CallStatusReported)},
		})
		// Event Streams may carry a copy, as an event of its own.
		if copyN > 0 || !rapid.Bool().Draw(g.t, "es-copy") {
			return
		}
		src = callledgerv1.Source_SOURCE_EVENT_STREAMS
	}
}

// leg draws the own callbacks of one leg: any subset of the early
// statuses, maybe an unknown status, maybe a terminal one.
func (g *treeGen) leg(sid, parent string) {
	for _, st := range early {
		if rapid.Bool().Draw(g.t, "early") {
			g.status(sid, parent, st, st.String(), false)
		}
	}
	if rapid.IntRange(0, 9).Draw(g.t, "unknown") == 0 {
		g.status(sid, parent, callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED, "paused", false)
	}
	for n := rapid.IntRange(0, 2).Draw(g.t, "terminals"); n > 0; n-- { // 2: a conflicting report
		st := rapid.SampledFrom(terminals).Draw(g.t, "terminal")
		g.status(sid, parent, st, terminalRaws[st], true)
	}
}

func (g *treeGen) dial(parent, child string) {
	st := rapid.SampledFrom(terminals).Draw(g.t, "dial-status")
	d := int64(rapid.IntRange(0, 900).Draw(g.t, "dial-duration"))
	g.add(&callledgerv1.Event{
		EventId: g.id(), CallSid: parent, Source: callledgerv1.Source_SOURCE_DIAL_ACTION,
		ReceivedAt: timestamppb.New(g.at("dial-at")),
		Body: &callledgerv1.Event_DialCompleted{DialCompleted: &callledgerv1.DialCompleted{
			DialCallSid: child, DialCallStatus: st, DialCallStatusRaw: terminalRaws[st], DialCallDurationSeconds: &d,
			ParentStatus: callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, ParentStatusRaw: "in-progress",
		}},
	})
}

func (g *treeGen) recording(sid string) {
	re := fmt.Sprintf("RE%032x", rapid.Uint64().Draw(g.t, "recording"))
	for _, st := range []string{"in-progress", "completed", "absent", "failed", "paused"} {
		if rapid.Bool().Draw(g.t, "recording-callback") {
			d := int64(rapid.IntRange(0, 900).Draw(g.t, "recording-duration"))
			g.add(&callledgerv1.Event{
				EventId: g.id(), CallSid: sid, Source: callledgerv1.Source_SOURCE_RECORDING_STATUS,
				ReceivedAt: timestamppb.New(g.at("recording-at")),
				Body: &callledgerv1.Event_RecordingStatusReported{RecordingStatusReported: &callledgerv1.RecordingStatusReported{
					RecordingSid: re, RecordingStatus: st, RecordingDurationSeconds: &d, AccountSid: "AC1",
					RecordingTrack: rapid.SampledFrom([]string{"", "both"}).Draw(g.t, "track"), ErrorCode: rapid.SampledFrom([]string{"", "0", "16101"}).Draw(g.t, "recording-error"),
				}},
			})
		}
	}
	for n := rapid.IntRange(0, 2).Draw(g.t, "transcriptions"); n > 0; n-- {
		g.add(&callledgerv1.Event{
			EventId: g.id(), CallSid: sid, Source: callledgerv1.Source_SOURCE_RECORDING_STATUS,
			ReceivedAt: timestamppb.New(g.at("transcription-at")),
			Body: &callledgerv1.Event_TranscriptionReported{TranscriptionReported: &callledgerv1.TranscriptionReported{
				RecordingSid: re, TranscriptionSid: rapid.SampledFrom([]string{"TR1", "TR2"}).Draw(g.t, "transcription-sid"),
				TranscriptionStatus: rapid.SampledFrom([]string{"in-progress", "completed", "failed"}).Draw(g.t, "transcription-status"),
				TranscriptionText:   rapid.SampledFrom([]string{"", "hello"}).Draw(g.t, "transcription-text"),
			}},
		})
	}
}

// hangup draws hang-up requests of a leg made through callledger and the
// REST outcomes recorded for them, under a few request IDs, so that
// outcomes may come without their request and requests may repeat.
func (g *treeGen) hangup(sid string) {
	for n := rapid.IntRange(0, 3).Draw(g.t, "hangup-events"); n > 0; n-- {
		rid := rapid.SampledFrom([]string{"r1", "r2"}).Draw(g.t, "request-id")
		ev := &callledgerv1.Event{EventId: g.id(), CallSid: sid, Source: callledgerv1.Source_SOURCE_HANGUP_REQUEST, ReceivedAt: timestamppb.New(g.at("hangup-at"))}
		switch rapid.IntRange(0, 2).Draw(g.t, "hangup-kind") {
		case 0:
			ev.Body = &callledgerv1.Event_HangupRequested{HangupRequested: &callledgerv1.HangupRequested{
				RequestId: rid, RequestedBy: "user", EndCall: rapid.Bool().Draw(g.t, "end-call"),
			}}
		case 1:
			ev.Body = &callledgerv1.Event_HangupSent{HangupSent: &callledgerv1.HangupSent{RequestId: rid, Status: "completed"}}
		default:
			ev.Body = &callledgerv1.Event_HangupFailed{HangupFailed: &callledgerv1.HangupFailed{
				RequestId: rid, Status: "completed", ErrorCode: int32(rapid.SampledFrom([]int{0, 20404, 21220}).Draw(g.t, "error-code")),
			}}
		}
		g.add(ev)
	}
}

// reconciled draws reads of a leg from Twilio's REST API: any status,
// lagging or not, sometimes a 404, with identity fields of their own so
// that a test can tell whose value won.
func (g *treeGen) reconciled(sid, parent string) {
	all := append(append([]callledgerv1.CallStatus{1}, early...), terminals...) // queued too
	for n := rapid.IntRange(0, 2).Draw(g.t, "reconciliations"); n > 0; n-- {
		fetched := g.at("fetched-at")
		r := &callledgerv1.CallReconciled{
			AccountSid: "AC1", ParentCallSid: parent, Direction: "outbound-api", From: "+9", To: "+8",
			StartTime: timestamppb.New(fetched.Add(-time.Duration(rapid.IntRange(0, 600).Draw(g.t, "rest-age")) * time.Second)),
		}
		if rapid.IntRange(0, 5).Draw(g.t, "not-found") == 0 {
			r = &callledgerv1.CallReconciled{NotFound: true}
		} else {
			r.Status = rapid.SampledFrom(all).Draw(g.t, "rest-status")
			r.StatusRaw = r.Status.String()
			if callstate.IsTerminal(r.Status) {
				d := int64(rapid.IntRange(0, 900).Draw(g.t, "rest-duration"))
				r.DurationSeconds = &d
				r.EndTime = timestamppb.New(fetched.Add(-time.Second))
			}
		}
		ev := &callledgerv1.Event{
			EventId: g.id(), CallSid: sid, Source: callledgerv1.Source_SOURCE_RECONCILIATION,
			ReceivedAt: timestamppb.New(fetched),
			Body:       &callledgerv1.Event_CallReconciled{CallReconciled: r},
		}
		if rapid.Bool().Draw(g.t, "rest-date-updated") {
			ev.ReportedAt = timestamppb.New(fetched.Add(-time.Duration(rapid.IntRange(0, 60).Draw(g.t, "rest-lag")) * time.Second))
		}
		g.add(ev)
	}
}

// extras draws what callledger itself adds to a leg (hang-up requests and
// reconciliations) and what other channels say of it (answering-machine
// verdicts, Voice Insights summaries), each now and then.
func (g *treeGen) extras(sid, parent string) {
	if rapid.IntRange(0, 3).Draw(g.t, "hangups") == 0 {
		g.hangup(sid)
	}
	if rapid.IntRange(0, 2).Draw(g.t, "reconcile") == 0 {
		g.reconciled(sid, parent)
	}
	if rapid.IntRange(0, 3).Draw(g.t, "amd") == 0 {
		g.amd(sid)
	}
	if rapid.IntRange(0, 3).Draw(g.t, "insights") == 0 {
		g.summaries(sid)
	}
}

// amd draws answering-machine verdicts from the AMD callback, the status
// route and Event Streams.
func (g *treeGen) amd(sid string) {
	for n := rapid.IntRange(1, 3).Draw(g.t, "verdicts"); n > 0; n-- {
		d := int64(rapid.IntRange(500, 6000).Draw(g.t, "amd-ms"))
		src := rapid.SampledFrom([]callledgerv1.Source{callledgerv1.Source_SOURCE_AMD_CALLBACK, callledgerv1.Source_SOURCE_EVENT_STREAMS}).Draw(g.t, "amd-source")
		g.add(&callledgerv1.Event{
			EventId: g.id(), CallSid: sid, Source: src, ReportedAt: timestamppb.New(g.at("amd-at")),
			Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
				AnsweredBy: rapid.SampledFrom([]string{"human", "machine_start", "machine_end_beep"}).Draw(g.t, "answered-by"), MachineDetectionDurationMs: &d,
				AccountSid: rapid.SampledFrom([]string{"", "AC1", "AC2"}).Draw(g.t, "amd-account"),
			}},
		})
	}
}

// summaries draws Voice Insights call summaries, partial and complete.
func (g *treeGen) summaries(sid string) {
	states := map[string]callledgerv1.CallStatus{"completed": 5, "busy": 6, "fail": 7, "noanswer": 8, "canceled": 9, "answered": 4, "undialed": 0}
	for n := rapid.IntRange(1, 2).Draw(g.t, "summaries"); n > 0; n-- {
		state := rapid.SampledFrom([]string{"completed", "busy", "fail", "noanswer", "canceled", "answered", "undialed"}).Draw(g.t, "call-state")
		at := g.at("summary-at")
		d := int64(rapid.IntRange(0, 900).Draw(g.t, "summary-duration"))
		sum := &callledgerv1.CallSummaryReported{
			CallState: state, Status: states[state], ProcessingState: rapid.SampledFrom([]string{"partial", "complete"}).Draw(g.t, "processing"),
			DurationSeconds: &d, EndTime: timestamppb.New(at), DisconnectedBy: rapid.SampledFrom([]string{"", "caller", "callee"}).Draw(g.t, "disconnected-by"),
		}
		if rapid.Bool().Draw(g.t, "summary-tags") {
			sum.Tags = []string{"high_jitter"}
		}
		g.add(&callledgerv1.Event{
			EventId: g.id(), CallSid: sid, Source: callledgerv1.Source_SOURCE_VOICE_INSIGHTS, ReportedAt: timestamppb.New(at.Add(10 * time.Minute)),
			Body: &callledgerv1.Event_CallSummaryReported{CallSummaryReported: sum},
		})
	}
}

func drawTree(t *rapid.T) []*callledgerv1.Event {
	g := &treeGen{t: t}
	root := g.sid("root")
	if rapid.Bool().Draw(t, "root-calls-back") {
		g.leg(root, "")
	}
	g.extras(root, "")
	for n := rapid.IntRange(0, 3).Draw(t, "children"); n > 0; n-- {
		child := g.sid("child")
		if rapid.IntRange(0, 3).Draw(t, "silent-child") > 0 {
			g.leg(child, root)
		}
		g.extras(child, root)
		if rapid.Bool().Draw(t, "dial-action") {
			g.dial(root, child)
		}
		if rapid.IntRange(0, 5).Draw(t, "grandchild") == 0 {
			g.leg(g.sid("grandchild"), child)
		}
	}
	for n := rapid.IntRange(0, 2).Draw(t, "recordings"); n > 0; n-- {
		g.recording(root)
	}
	return g.events
}

// fold applies events in order, each at its own position (as in the
// log, where an event's position does not depend on the order it is
// folded in), and returns the records.
func fold(t *rapid.T, events []*callledgerv1.Event, positions map[string]uint64) map[string]*statev1.CallRecord {
	mem := callstate.NewMemory()
	for _, ev := range events {
		if err := callstate.Apply(mem, ev, positions[ev.GetEventId()]); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]*statev1.CallRecord{}
	for _, sid := range mem.Sids() {
		rec, _ := mem.Get(sid)
		out[sid] = rec
	}
	return out
}

// TestFoldIsOrderInsensitiveAndIdempotent: every permutation of a call
// tree's events, with random duplicates, folds into the same records.
func TestFoldIsOrderInsensitiveAndIdempotent(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		events := drawTree(t)
		// The log's order need not be the order the tree was drawn in: a
		// parent's end may come after its child's, or before.
		logOrder := rapid.Permutation(events).Draw(t, "log-order")
		positions := map[string]uint64{}
		for i, ev := range logOrder {
			positions[ev.GetEventId()] = uint64(i + 1)
		}
		want := fold(t, logOrder, positions)

		shuffled := rapid.Permutation(events).Draw(t, "order")
		for n := rapid.IntRange(0, len(events)).Draw(t, "duplicates"); n > 0; n-- {
			dup := rapid.SampledFrom(events).Draw(t, "duplicate")
			at := rapid.IntRange(0, len(shuffled)).Draw(t, "duplicate-at")
			shuffled = append(shuffled[:at], append([]*callledgerv1.Event{dup}, shuffled[at:]...)...)
		}
		got := fold(t, shuffled, positions)

		if len(got) != len(want) {
			t.Fatalf("%d calls in order, %d shuffled", len(want), len(got))
		}
		for sid, w := range want {
			if !proto.Equal(got[sid], w) {
				t.Fatalf("call %s differs by order:\nin order: %v\nshuffled: %v\nviews:\n%v\n%v",
					sid, w, got[sid], callstate.View(w), callstate.View(got[sid]))
			}
		}
		checkInvariants(t, want)
	})
}

// TestReconciliationOnlyFillsGaps: folding a tree with its REST reads
// against folding it without them, the reads never take back what the
// webhooks said. A webhook-decided terminal status, its duration and end
// stay; a non-terminal status only moves forward; identity and answered
// times stay; a hang-up request shows as ending exactly while the call is
// not terminal.
func TestReconciliationOnlyFillsGaps(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		events := drawTree(t)
		positions := map[string]uint64{}
		var webhooks []*callledgerv1.Event
		for i, ev := range events {
			positions[ev.GetEventId()] = uint64(i + 1)
			if ev.GetCallReconciled() == nil {
				webhooks = append(webhooks, ev)
			}
		}
		with := fold(t, rapid.Permutation(events).Draw(t, "order"), positions)
		without := fold(t, webhooks, positions)
		for sid, w := range with {
			got := callstate.View(w)
			if got.GetHangupRequest() != nil && got.GetEnding() == got.GetTerminal() {
				t.Fatalf("%s: ending %v while terminal %v", sid, got.GetEnding(), got.GetTerminal())
			}
			base, ok := without[sid]
			if !ok {
				continue // known only through REST reads
			}
			old := callstate.View(base)
			switch {
			case old.GetTerminal() && (old.GetStatusSource() == callledgerv1.Source_SOURCE_INFERRED || old.GetStatusSource() == callledgerv1.Source_SOURCE_VOICE_INSIGHTS):
				// An inferred end is no report, and a Voice Insights summary
				// ranks below every status report: a REST read replaces
				// either (but the call stays ended).
				if !got.GetTerminal() {
					t.Fatalf("%s: REST reads made an inferred end %v active again (%v)", sid, old.GetStatus(), got.GetStatus())
				}
			case old.GetTerminal():
				if got.GetStatus() != old.GetStatus() || got.GetStatusSource() != old.GetStatusSource() ||
					got.GetDurationSeconds() != old.GetDurationSeconds() || !proto.Equal(got.GetEndedAt(), old.GetEndedAt()) {
					t.Fatalf("%s: REST reads changed a webhook's terminal report %v/%v to %v/%v",
						sid, old.GetStatus(), old.GetStatusSource(), got.GetStatus(), got.GetStatusSource())
				}
			case !got.GetTerminal() && got.GetStatus() < old.GetStatus():
				t.Fatalf("%s: REST reads moved %v back to %v", sid, old.GetStatus(), got.GetStatus())
			}
			if old.GetFrom() != "" && (got.GetFrom() != old.GetFrom() || got.GetDirection() != old.GetDirection()) {
				t.Fatalf("%s: REST reads replaced the identity %s/%s by %s/%s", sid, old.GetFrom(), old.GetDirection(), got.GetFrom(), got.GetDirection())
			}
			for _, ts := range [][2]*timestamppb.Timestamp{{old.GetInitiatedAt(), got.GetInitiatedAt()}, {old.GetRingingAt(), got.GetRingingAt()}, {old.GetAnsweredAt(), got.GetAnsweredAt()}} {
				if !proto.Equal(ts[0], ts[1]) {
					t.Fatalf("%s: REST reads changed a status time %v to %v", sid, ts[0], ts[1])
				}
			}
			if old.GetParentCallSid() != "" && got.GetParentCallSid() != old.GetParentCallSid() {
				t.Fatalf("%s: REST reads changed the parent %s to %s", sid, old.GetParentCallSid(), got.GetParentCallSid())
			}
		}
	})
}

// checkInvariants holds for any set of events: links agree both ways, the
// root is where parents lead, placeholders have no own events.
func checkInvariants(t *rapid.T, recs map[string]*statev1.CallRecord) {
	for sid, r := range recs {
		c := callstate.View(r)
		if p := c.GetParentCallSid(); p != "" {
			parent, ok := recs[p]
			if !ok {
				t.Fatalf("%s names parent %s, which has no record", sid, p)
			}
			if c.GetRootCallSid() != parent.GetRootCallSid() {
				t.Fatalf("%s has root %s, its parent %s has %s", sid, c.GetRootCallSid(), p, parent.GetRootCallSid())
			}
		} else if c.GetRootCallSid() != sid {
			t.Fatalf("root %s has root_call_sid %s", sid, c.GetRootCallSid())
		}
		for _, child := range c.GetChildCallSids() {
			if _, ok := recs[child]; !ok {
				t.Fatalf("%s names child %s, which has no record", sid, child)
			}
		}
		if c.GetPlaceholder() != (c.GetEventCount() == 0) {
			t.Fatalf("%s: placeholder %v with %d own events", sid, c.GetPlaceholder(), c.GetEventCount())
		}
		if c.GetTerminal() && c.DurationSeconds == nil && c.GetStatusSource() != callledgerv1.Source_SOURCE_DIAL_ACTION && c.GetStatusSource() != callledgerv1.Source_SOURCE_RECONCILIATION &&
			c.GetStatusSource() != callledgerv1.Source_SOURCE_VOICE_INSIGHTS && c.GetStatusSource() != callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK &&
			c.GetStatusSource() != callledgerv1.Source_SOURCE_INFERRED { // an inferred end has no report, so no duration
			t.Fatalf("%s: terminal by %s without a duration", sid, c.GetStatusSource())
		}
		// A leg whose parent ended has ended too: by a report of its own,
		// or inferred.
		if p := c.GetParentCallSid(); p != "" && callstate.View(recs[p]).GetTerminal() && !c.GetTerminal() {
			t.Fatalf("%s is %s while its parent %s has ended", sid, c.GetStatus(), p)
		}
		if c.GetStatusSource() == callledgerv1.Source_SOURCE_INFERRED {
			parent := callstate.View(recs[c.GetParentCallSid()])
			if r.GetTerminal() != nil || !parent.GetTerminal() || !proto.Equal(c.GetEndedAt(), parent.GetEndedAt()) {
				t.Fatalf("%s: inferred end %v with terminal report %v, parent %s terminal %v ended %v",
					sid, c.GetEndedAt(), r.GetTerminal(), c.GetParentCallSid(), parent.GetTerminal(), parent.GetEndedAt())
			}
		}
	}
}
