package callstate_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstate"
)

// TestGolden runs the files in testdata/fold: each case lists callbacks in
// arrival order and the calls they must fold into, one per scenario of the
// capture corpus. A case also folds its events reversed and in 50 random
// orders with duplicates; any difference fails it. Regenerate with
// -rewrite after a deliberate change, and read the diff.
//
// Event lines (legs are named by alias; times are hh:mm:ss on 2026-03-01):
//
//	status <leg> <CallStatus> [parent=<leg>] [seq=N] [at=hh:mm:ss] [duration=N] [sip=N] [via=events id=<CloudEvent id>]
//	dial <parent> <child> <DialCallStatus> [duration=N] [parent-status=<CallStatus>] [at=hh:mm:ss]
//	recording <leg> <recording> <RecordingStatus> [duration=N] [at=hh:mm:ss]
//	hangup <leg> <request-id> [end-call=true] [at=hh:mm:ss]
//	hangup-sent <leg> <request-id> [status=completed|canceled] [at=hh:mm:ss]
//	hangup-failed <leg> <request-id> code=N [at=hh:mm:ss]
//	reconciled <leg> <Status|not-found> [parent=<leg>] [duration=N] [from=<number>] [at=hh:mm:ss]
//	amd <leg> <AnsweredBy> [duration=N] [via=amd|status|events] [account=AC…] [at=hh:mm:ss]
//	transcription <leg> <recording> <transcription> <TranscriptionStatus> [text=…] [at=hh:mm:ss]
//	conference <conference> <StatusCallbackEvent> [call=<leg>] [seq=N] [hold=…] [muted=…] [coaching=…] [label=…] [left=<reason>] [call-status=<status>] [account=AC…] [at=hh:mm:ss]
//	summary <leg> <call_state> [processing=complete|partial] [disconnected-by=…] [sip=N] [tags=a,b] [duration=N] [at=hh:mm:ss]
//	erase <leg>... [at=hh:mm:ss]
//
// status and recording also take account=AC…, error=<ErrorCode> (recording:
// and track=…); status takes answered-by=… and from=…. A line repeated word for word is
// a retry: the same event ID.
func TestGolden(t *testing.T) {
	t.Parallel()
	datadriven.Walk(t, "testdata/fold", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			if td.Cmd != "fold" {
				t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
			}
			events, aliases := parseEvents(t, td.Input)
			want := render(foldAll(t, events), aliases)
			rng := rand.New(rand.NewPCG(1, uint64(len(events))))
			orders := [][]*callledgerv1.Event{reversed(events)}
			for range 50 {
				orders = append(orders, shuffleWithDuplicates(rng, events))
			}
			for _, order := range orders {
				if got := render(foldAll(t, order), aliases); got != want {
					return fmt.Sprintf("ORDER-DEPENDENT:\nin order:\n%s\nanother order:\n%s", want, got)
				}
			}
			return want
		})
	})
}

func foldAll(t *testing.T, events []*callledgerv1.Event) *callstate.Memory {
	mem := callstate.NewMemory()
	for i, ev := range events {
		if err := callstate.Apply(mem, ev, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	return mem
}

func reversed(events []*callledgerv1.Event) []*callledgerv1.Event {
	out := slices.Clone(events)
	slices.Reverse(out)
	return out
}

func shuffleWithDuplicates(rng *rand.Rand, events []*callledgerv1.Event) []*callledgerv1.Event {
	out := slices.Clone(events)
	for range rng.IntN(len(events) + 1) {
		out = append(out, events[rng.IntN(len(events))])
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// sidOf maps an alias to a stable CallSid.
func sidOf(alias string) string {
	sum := md5.Sum([]byte(alias))
	return "CA" + hex.EncodeToString(sum[:])
}

func parseEvents(t *testing.T, input string) ([]*callledgerv1.Event, map[string]string) {
	aliases := map[string]string{} // sid → alias
	leg := func(alias string) string {
		sid := sidOf(alias)
		aliases[sid] = alias
		return sid
	}
	var events []*callledgerv1.Event
	for n, line := range strings.Split(strings.TrimSpace(input), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words := strings.Fields(line)
		args := map[string]string{}
		var pos []string
		for _, w := range words[1:] {
			if k, v, ok := strings.Cut(w, "="); ok {
				args[k] = v
			} else {
				pos = append(pos, w)
			}
		}
		for k := range args {
			if !slices.Contains(allowedArgs[words[0]], k) {
				t.Fatalf("line %q: unknown argument %q", line, k)
			}
		}
		at := baseTime.Add(time.Duration(n) * time.Second)
		if s, ok := args["at"]; ok {
			tod, err := time.Parse("15:04:05", s)
			if err != nil {
				t.Fatalf("line %q: at: %v", line, err)
			}
			at = baseTime.Truncate(24 * time.Hour).Add(time.Duration(tod.Hour())*time.Hour + time.Duration(tod.Minute())*time.Minute + time.Duration(tod.Second())*time.Second)
		}
		ev := &callledgerv1.Event{
			EventId:    uuid.NewSHA1(uuid.NameSpaceURL, []byte(line)).String(),
			ReceivedAt: timestamppb.New(at.Add(500 * time.Millisecond)),
		}
		need := func(k int) {
			if len(pos) != k {
				t.Fatalf("line %q: want %d words after %s", line, k, words[0])
			}
		}
		switch words[0] {
		case "status":
			need(2)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_STATUS_CALLBACK
			ev.ReportedAt = timestamppb.New(at)
			st, raw := status(pos[1])
			rep := &callledgerv1.CallStatusReported{Status: st, StatusRaw: raw, CallDurationSeconds: optInt(t, args, "duration"),
				AccountSid: args["account"], ErrorCode: args["error"], AnsweredBy: args["answered-by"]}
			if p, ok := args["parent"]; ok {
				rep.ParentCallSid = leg(p)
			}
			rep.From = args["from"]
			if s := optInt(t, args, "sip"); s != nil {
				sip := int32(*s)
				rep.SipResponseCode = &sip
			}
			if args["via"] == "events" {
				ev.Source = callledgerv1.Source_SOURCE_EVENT_STREAMS
				ev.EventId = uuid.NewSHA1(uuid.NameSpaceURL, []byte("ce:"+args["id"])).String()
			}
			ev.Body = &callledgerv1.Event_CallStatusReported{CallStatusReported: rep}
		case "dial":
			need(3)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_DIAL_ACTION
			st, raw := status(pos[2])
			ps, praw := status(cmp(args["parent-status"], "in-progress"))
			ev.Body = &callledgerv1.Event_DialCompleted{DialCompleted: &callledgerv1.DialCompleted{
				DialCallSid: leg(pos[1]), DialCallStatus: st, DialCallStatusRaw: raw,
				DialCallDurationSeconds: optInt(t, args, "duration"), ParentStatus: ps, ParentStatusRaw: praw,
			}}
		case "recording":
			need(3)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_RECORDING_STATUS
			sum := md5.Sum([]byte(pos[1]))
			ev.Body = &callledgerv1.Event_RecordingStatusReported{RecordingStatusReported: &callledgerv1.RecordingStatusReported{
				RecordingSid: "RE" + hex.EncodeToString(sum[:]), RecordingStatus: pos[2],
				RecordingDurationSeconds: optInt(t, args, "duration"), AccountSid: args["account"], ErrorCode: args["error"], RecordingTrack: args["track"],
			}}
		case "transcription":
			need(4)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_RECORDING_STATUS
			sum := md5.Sum([]byte(pos[1]))
			ev.Body = &callledgerv1.Event_TranscriptionReported{TranscriptionReported: &callledgerv1.TranscriptionReported{
				RecordingSid: "RE" + hex.EncodeToString(sum[:]), TranscriptionSid: pos[2], TranscriptionStatus: pos[3], TranscriptionText: args["text"],
			}}
		case "amd":
			need(2)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_AMD_CALLBACK
			ev.ReportedAt = timestamppb.New(at)
			switch args["via"] {
			case "events":
				ev.Source = callledgerv1.Source_SOURCE_EVENT_STREAMS
			case "", "amd", "status":
			default:
				t.Fatalf("line %q: via=%s", line, args["via"])
			}
			ev.Body = &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
				AnsweredBy: pos[1], MachineDetectionDurationMs: optInt(t, args, "duration"), AccountSid: args["account"],
			}}
		case "conference":
			need(2)
			ev.Source = callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK
			ev.ReportedAt = timestamppb.New(at)
			c := &callledgerv1.ConferenceEventReported{
				ConferenceSid: confOf(pos[0]), FriendlyName: pos[0], EventRaw: pos[1], Event: conferenceEvent(pos[1]),
				SequenceNumber: optInt(t, args, "seq"), ParticipantLabel: args["label"], ReasonParticipantLeft: args["left"],
				ParticipantCallStatus: args["call-status"], AccountSid: args["account"],
				Hold: optBool(t, args, "hold"), Muted: optBool(t, args, "muted"), Coaching: optBool(t, args, "coaching"),
			}
			aliases[c.ConferenceSid] = pos[0]
			if l, ok := args["call"]; ok {
				c.CallSid = leg(l)
			}
			if pos[1] == "conference-end" {
				c.ReasonConferenceEnded = "last-participant-left"
			}
			ev.Body = &callledgerv1.Event_ConferenceEventReported{ConferenceEventReported: c}
		case "summary":
			need(2)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_VOICE_INSIGHTS
			ev.ReportedAt = timestamppb.New(at)
			st, _ := status(map[string]string{"noanswer": "no-answer", "fail": "failed"}[pos[1]] + pos[1])
			if pos[1] == "noanswer" || pos[1] == "fail" {
				st, _ = status(map[string]string{"noanswer": "no-answer", "fail": "failed"}[pos[1]])
			}
			sum := &callledgerv1.CallSummaryReported{
				CallState: pos[1], Status: st, ProcessingState: cmp(args["processing"], "complete"), DisconnectedBy: args["disconnected-by"],
				DurationSeconds: optInt(t, args, "duration"), EndTime: timestamppb.New(at),
			}
			if n := optInt(t, args, "sip"); n != nil {
				sip := int32(*n)
				sum.LastSipResponse = &sip
			}
			if tags := args["tags"]; tags != "" {
				sum.Tags = strings.Split(tags, ",")
			}
			ev.Body = &callledgerv1.Event_CallSummaryReported{CallSummaryReported: sum}
		case "hangup":
			need(2)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_HANGUP_REQUEST
			ev.Body = &callledgerv1.Event_HangupRequested{HangupRequested: &callledgerv1.HangupRequested{
				RequestId: pos[1], RequestedBy: "golden", EndCall: args["end-call"] == "true",
			}}
		case "hangup-sent":
			need(2)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_HANGUP_REQUEST
			ev.Body = &callledgerv1.Event_HangupSent{HangupSent: &callledgerv1.HangupSent{RequestId: pos[1], Status: cmp(args["status"], "completed")}}
		case "hangup-failed":
			need(2)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_HANGUP_REQUEST
			ev.Body = &callledgerv1.Event_HangupFailed{HangupFailed: &callledgerv1.HangupFailed{
				RequestId: pos[1], Status: "completed", ErrorCode: int32(*optInt(t, args, "code")), ErrorMessage: "golden",
			}}
		case "erase":
			if len(pos) == 0 {
				t.Fatalf("line %q: erase names legs", line)
			}
			e := &callledgerv1.ErasureRecorded{ErasureId: line, RequestedBy: "golden", SubjectCount: int32(len(pos))}
			for _, p := range pos {
				e.CallSids = append(e.CallSids, leg(p))
			}
			ev.Source = callledgerv1.Source_SOURCE_ERASURE
			ev.Body = &callledgerv1.Event_ErasureRecorded{ErasureRecorded: e}
		case "reconciled":
			need(2)
			ev.CallSid = leg(pos[0])
			ev.Source = callledgerv1.Source_SOURCE_RECONCILIATION
			ev.ReportedAt = timestamppb.New(at)
			r := &callledgerv1.CallReconciled{NotFound: pos[1] == "not-found"}
			if !r.NotFound {
				r.Status, r.StatusRaw = status(pos[1])
				r.DurationSeconds = optInt(t, args, "duration")
				r.From, r.AccountSid, r.Direction = cmp(args["from"], "+15550000000"), "AC1", "outbound-api"
				if p, ok := args["parent"]; ok {
					r.ParentCallSid = leg(p)
				}
				if callstate.IsTerminal(r.Status) {
					r.EndTime = timestamppb.New(at)
				}
			}
			ev.Body = &callledgerv1.Event_CallReconciled{CallReconciled: r}
		default:
			t.Fatalf("line %q: unknown event %q", line, words[0])
		}
		events = append(events, ev)
	}
	return events, aliases
}

var allowedArgs = map[string][]string{
	"status":        {"parent", "seq", "at", "duration", "sip", "via", "id", "account", "error", "answered-by", "from"},
	"erase":         {"at"},
	"dial":          {"duration", "parent-status", "at"},
	"recording":     {"duration", "at", "account", "error", "track"},
	"transcription": {"text", "at"},
	"amd":           {"duration", "via", "account", "at"},
	"conference":    {"call", "seq", "hold", "muted", "coaching", "label", "left", "call-status", "account", "at"},
	"summary":       {"processing", "disconnected-by", "sip", "tags", "duration", "at"},
	"hangup":        {"end-call", "at"},
	"hangup-sent":   {"status", "at"},
	"hangup-failed": {"code", "at"},
	"reconciled":    {"parent", "duration", "from", "at"},
}

// confOf maps an alias to a stable ConferenceSid.
func confOf(alias string) string {
	sum := md5.Sum([]byte(alias))
	return "CF" + hex.EncodeToString(sum[:])
}

func conferenceEvent(raw string) callledgerv1.ConferenceEvent {
	enum := "CONFERENCE_EVENT_" + strings.ToUpper(strings.ReplaceAll(raw, "-", "_"))
	return callledgerv1.ConferenceEvent(callledgerv1.ConferenceEvent_value[enum])
}

func optBool(t *testing.T, args map[string]string, key string) *bool {
	s, ok := args[key]
	if !ok {
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		t.Fatalf("%s=%s: %v", key, s, err)
	}
	return &b
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func status(raw string) (callledgerv1.CallStatus, string) {
	enum := "CALL_STATUS_" + strings.ToUpper(strings.ReplaceAll(raw, "-", "_"))
	return callledgerv1.CallStatus(callledgerv1.CallStatus_value[enum]), raw
}

func optInt(t *testing.T, args map[string]string, key string) *int64 {
	s, ok := args[key]
	if !ok {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%s: %v", key, s, err)
	}
	return &n
}

// render prints every call, by alias, with the fields a reader checks.
func render(mem *callstate.Memory, aliases map[string]string) string {
	name := func(sid string) string {
		if a, ok := aliases[sid]; ok {
			return a
		}
		return sid
	}
	var lines []string
	for _, sid := range mem.Sids() {
		rec, _ := mem.Get(sid)
		c := callstate.View(rec)
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s", name(sid), strings.TrimPrefix(c.GetStatus().String(), "CALL_STATUS_"))
		if c.GetTerminal() {
			b.WriteString(" terminal")
		}
		if c.GetPlaceholder() {
			b.WriteString(" placeholder")
		}
		if c.GetStatusSource() != callledgerv1.Source_SOURCE_UNSPECIFIED {
			fmt.Fprintf(&b, " by=%s", strings.ToLower(strings.TrimPrefix(c.GetStatusSource().String(), "SOURCE_")))
		}
		if c.DurationSeconds != nil {
			fmt.Fprintf(&b, " duration=%d", c.GetDurationSeconds())
		}
		if p := c.GetParentCallSid(); p != "" {
			fmt.Fprintf(&b, " parent=%s", name(p))
		}
		if kids := c.GetChildCallSids(); len(kids) > 0 {
			var ks []string
			for _, k := range kids {
				ks = append(ks, name(k))
			}
			slices.Sort(ks)
			fmt.Fprintf(&b, " children=%s", strings.Join(ks, ","))
		}
		fmt.Fprintf(&b, " root=%s events=%d", name(c.GetRootCallSid()), c.GetEventCount())
		if n := len(c.GetRecordings()); n > 0 {
			fmt.Fprintf(&b, " recordings=%d", n)
		}
		if h := c.GetHangupRequest(); h != nil {
			fmt.Fprintf(&b, " hangup=%s:%s", h.GetRequestId(), strings.ToLower(strings.TrimPrefix(h.GetOutcome().String(), "HANGUP_OUTCOME_")))
			if h.GetErrorCode() != 0 {
				fmt.Fprintf(&b, ":%d", h.GetErrorCode())
			}
		}
		if c.GetEnding() {
			b.WriteString(" ending")
		}
		if c.GetRedacted() {
			b.WriteString(" redacted")
		}
		if r := c.GetReconciliation(); r != nil {
			if r.GetNotFound() {
				b.WriteString(" reconciled=not-found")
			} else {
				fmt.Fprintf(&b, " reconciled=%s", strings.TrimPrefix(r.GetStatus().String(), "CALL_STATUS_"))
			}
		}
		if c.GetFrom() != "" {
			fmt.Fprintf(&b, " from=%s", c.GetFrom())
		}
		if a := c.GetAccountSid(); a != "" {
			fmt.Fprintf(&b, " account=%s", a)
		}
		if e := c.GetErrorCode(); e != "" {
			fmt.Fprintf(&b, " error=%s", e)
		}
		if a := c.GetAnsweredBy(); a != "" {
			fmt.Fprintf(&b, " answered_by=%s", a)
		}
		if c.MachineDetectionDurationMs != nil {
			fmt.Fprintf(&b, " amd_ms=%d", c.GetMachineDetectionDurationMs())
		}
		for _, r := range c.GetRecordings() {
			if r.GetStatus() == "" && len(r.GetTranscriptions()) == 0 && r.GetErrorCode() == "" {
				continue // a mere mention: counted in recordings= above
			}
			fmt.Fprintf(&b, " recording=%s", cmp(r.GetStatus(), "-"))
			if r.DurationSeconds != nil {
				fmt.Fprintf(&b, ":%ds", r.GetDurationSeconds())
			}
			if r.GetErrorCode() != "" {
				fmt.Fprintf(&b, ":error=%s", r.GetErrorCode())
			}
			for _, tr := range r.GetTranscriptions() {
				fmt.Fprintf(&b, ":transcription=%s/%s", tr.GetTranscriptionSid(), tr.GetStatus())
				if tr.GetText() != "" {
					fmt.Fprintf(&b, "/%q", tr.GetText())
				}
			}
		}
		if in := c.GetInsights(); in != nil {
			fmt.Fprintf(&b, " insights=%s", in.GetProcessingState())
			if in.GetDisconnectedBy() != "" {
				fmt.Fprintf(&b, ":disconnected_by=%s", in.GetDisconnectedBy())
			}
			if in.LastSipResponse != nil {
				fmt.Fprintf(&b, ":sip=%d", in.GetLastSipResponse())
			}
			if len(in.GetTags()) > 0 {
				fmt.Fprintf(&b, ":tags=%s", strings.Join(in.GetTags(), ","))
			}
		}
		for _, p := range c.GetConferences() {
			fmt.Fprintf(&b, " in %s", participant(p, name))
		}
		lines = append(lines, b.String())
	}
	slices.Sort(lines)
	for _, sid := range mem.ConferenceSids() {
		rec, _ := mem.GetConference(sid)
		c := callstate.ConferenceView(rec)
		var b strings.Builder
		fmt.Fprintf(&b, "conference %s: %s events=%d", name(sid), strings.TrimPrefix(c.GetStatus().String(), "CONFERENCE_STATUS_"), c.GetEventCount())
		if t := c.GetStartedAt(); t != nil {
			fmt.Fprintf(&b, " started=%s", t.AsTime().Format("15:04:05"))
		}
		if t := c.GetEndedAt(); t != nil {
			fmt.Fprintf(&b, " ended=%s:%s", t.AsTime().Format("15:04:05"), c.GetReasonEnded())
		}
		if a := c.GetAccountSid(); a != "" {
			fmt.Fprintf(&b, " account=%s", a)
		}
		for _, p := range c.GetParticipants() {
			fmt.Fprintf(&b, "\n  %s", participant(p, name))
		}
		lines = append(lines, b.String())
	}
	return strings.Join(lines, "\n") + "\n"
}

// participant renders one participant the same way from a call and from
// its conference, so that a reader sees both agree.
func participant(p *callledgerv1.ConferenceParticipant, name func(string) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s[", name(p.GetConferenceSid()), name(p.GetCallSid()))
	var flags []string
	if p.GetPresent() {
		flags = append(flags, "present")
	}
	if p.GetHold() {
		flags = append(flags, "hold")
	}
	if p.GetMuted() {
		flags = append(flags, "muted")
	}
	if p.GetCoaching() {
		flags = append(flags, "coaching")
	}
	if p.GetLabel() != "" {
		flags = append(flags, "label="+p.GetLabel())
	}
	if t := p.GetJoinedAt(); t != nil {
		flags = append(flags, "joined="+t.AsTime().Format("15:04:05"))
	}
	if t := p.GetLeftAt(); t != nil {
		flags = append(flags, "left="+t.AsTime().Format("15:04:05")+":"+p.GetReasonLeft()+":"+p.GetCallStatusAtLeave())
	}
	b.WriteString(strings.Join(flags, " "))
	b.WriteString("]")
	return b.String()
}
