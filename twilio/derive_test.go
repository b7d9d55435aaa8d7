package twilio_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/datadriven"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/internal/golden"
	"github.com/callledger/callledger/twilio"
)

// TestDeriveCorpus replays every request the corpus expects to be stored:
// each lands in the stream of the CallSid the corpus names (or quarantine),
// retries derive the IDs of their originals, and each call's stream ends up
// with exactly own_events distinct events.
func TestDeriveCorpus(t *testing.T) {
	t.Parallel()
	reqs, expected := loadCorpus(t)
	idsBySeq := map[int][]string{}
	streams := map[string]map[string]bool{} // stream -> event IDs
	for _, r := range reqs {
		if r.Kind == "forged" {
			continue
		}
		kind := kindOf(t, r)
		ds := twilio.Derive(kind, requestOf(r))
		checkDerived(t, kind, requestOf(r), ds)
		want := eventcodec.CallStream(r.CallSid)
		if r.Kind == "quarantine" {
			want = eventcodec.QuarantineStream(string(kind))
		}
		var ids []string
		for _, d := range ds {
			if d.Stream != want {
				t.Errorf("seq %d (%s): stream %q, want %q", r.Seq, r.Scenario, d.Stream, want)
			}
			if streams[d.Stream] == nil {
				streams[d.Stream] = map[string]bool{}
			}
			streams[d.Stream][d.Event.GetEventId()] = true
			ids = append(ids, d.Event.GetEventId())
		}
		idsBySeq[r.Seq] = ids
		if r.DupOf != nil {
			orig, ok := idsBySeq[*r.DupOf]
			if !ok {
				t.Fatalf("seq %d: dup_of %d comes later or is forged", r.Seq, *r.DupOf)
			}
			if !slices.Equal(ids, orig) {
				t.Errorf("seq %d retries seq %d but derives IDs %v, want %v", r.Seq, *r.DupOf, ids, orig)
			}
		}
	}
	calls := 0
	for _, e := range expected {
		got := len(streams[eventcodec.CallStream(e.CallSid)])
		if got != e.OwnEvents {
			t.Errorf("call %s: %d distinct events, want own_events %d", e.CallSid, got, e.OwnEvents)
		}
		if e.OwnEvents > 0 {
			calls++
		}
	}
	for stream := range streams {
		if sid, ok := eventcodec.CallSidOf(stream); ok && !slices.ContainsFunc(expected, func(e expectedCall) bool { return e.CallSid == sid }) {
			t.Errorf("stream %s is not a call of expected.jsonl", stream)
		}
	}
	if calls == 0 {
		t.Fatal("no call with events in expected.jsonl")
	}
}

// checkDerived asserts what holds for every Derive result: at least one
// event, valid deterministic UUIDv5 IDs, a stream that is a valid call or
// the kind's quarantine, the verbatim request, and an encodable event.
func checkDerived(t *testing.T, kind twilio.Kind, req *twilio.Request, ds []twilio.Derived) {
	t.Helper()
	if len(ds) == 0 {
		t.Fatalf("Derive(%s) returned no event", kind)
	}
	again := twilio.Derive(kind, req)
	if len(again) != len(ds) {
		t.Fatalf("Derive is not deterministic: %d events, then %d", len(ds), len(again))
	}
	seen := map[string]bool{}
	for i, d := range ds {
		ev := d.Event
		if ev == nil {
			t.Fatalf("event %d is nil", i)
		}
		id, err := uuid.Parse(ev.GetEventId())
		if err != nil || id.Version() != 5 {
			t.Errorf("event %d: ID %q is not a UUIDv5 (%v)", i, ev.GetEventId(), err)
		}
		if again[i].Event.GetEventId() != ev.GetEventId() || again[i].Stream != d.Stream {
			t.Errorf("event %d: derived %s/%s, then %s/%s", i, d.Stream, ev.GetEventId(), again[i].Stream, again[i].Event.GetEventId())
		}
		if seen[d.Stream+" "+ev.GetEventId()] {
			t.Errorf("event %d: ID %s twice in %s", i, ev.GetEventId(), d.Stream)
		}
		seen[d.Stream+" "+ev.GetEventId()] = true
		if cf, ok := eventcodec.ConferenceSidOf(d.Stream); ok {
			if c := ev.GetConferenceEventReported(); c == nil || c.GetConferenceSid() != cf || !eventcodec.ValidConferenceSid(cf) || ev.GetCallSid() != "" {
				t.Errorf("event %d: stream %q with body %v and call_sid %q", i, d.Stream, ev.GetBody(), ev.GetCallSid())
			}
		} else if sid, ok := eventcodec.CallSidOf(d.Stream); ok {
			if !eventcodec.ValidCallSid(sid) || ev.GetCallSid() != sid {
				t.Errorf("event %d: stream %q with call_sid %q", i, d.Stream, ev.GetCallSid())
			}
			if ev.GetRequestQuarantined() != nil || ev.GetConferenceEventReported() != nil {
				t.Errorf("event %d: %T body in call stream %s", i, ev.GetBody(), d.Stream)
			}
		} else {
			q := ev.GetRequestQuarantined()
			if want := quarantineOf(kind); d.Stream != want || q == nil || q.GetKind() != validUTF8(string(kind)) || q.GetReason() == "" || ev.GetCallSid() != "" {
				t.Errorf("event %d: stream %q, body %v, call_sid %q; want %s with kind and reason", i, d.Stream, q, ev.GetCallSid(), want)
			}
		}
		if r := ev.GetRequest(); r == nil || !bytes.Equal(r.GetBody(), req.Body) || r.GetMethod() != validUTF8(req.Method) || r.GetUrl() != escapedURL(req.URL) {
			t.Errorf("event %d: request not kept verbatim", i)
		}
		if _, err := eventcodec.Encode(ev); err != nil {
			t.Errorf("event %d: %v", i, err)
		}
	}
}

// validUTF8 and escapedURL are what Derive stores for strings that are not
// UTF-8 (proto3 strings must be): U+FFFD, or %XX in URLs.
func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func escapedURL(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&b, "%%%02X", s[i])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func quarantineOf(kind twilio.Kind) string {
	switch kind {
	case twilio.KindStatus, twilio.KindDial, twilio.KindRecording, twilio.KindAMD, twilio.KindConference, twilio.KindEvents:
		return eventcodec.QuarantineStream(string(kind))
	}
	return eventcodec.QuarantineStream("unknown")
}

func ts(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(t)
}

// TestDeriveGolden runs the files in testdata/derive: each case derives a
// request of the capture corpus and prints every event it becomes, its
// stream then the event as JSON (proto field names), without the verbatim
// request and the CloudEvent's raw bytes, which are checked here against
// the corpus instead. Regenerate with -rewrite after a deliberate change,
// and read the diff: a stored event's fields mean the same forever.
//
//	derive seq=<corpus seq>
func TestDeriveGolden(t *testing.T) {
	t.Parallel()
	datadriven.Walk(t, "testdata/derive", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			if td.Cmd != "derive" {
				td.Fatalf(t, "unknown command %q", td.Cmd)
			}
			var seq int
			td.ScanArgs(t, "seq", &seq)
			c := bySeq(t, seq)
			req := requestOf(c)
			ds := twilio.Derive(kindOf(t, c), req)
			var elems []json.RawMessage
			if kindOf(t, c) == twilio.KindEvents {
				if err := json.Unmarshal(req.Body, &elems); err != nil {
					t.Fatal(err)
				}
			}
			var out strings.Builder
			for i, d := range ds {
				got := proto.CloneOf(d.Event)
				if r := got.GetRequest(); r == nil || r.GetUrl() != corpusPublicURL+c.URI() || string(r.GetBody()) != c.Body ||
					r.GetMethod() != c.Method || r.GetContentType() != c.ContentType || r.GetRemoteAddr() != req.RemoteAddr ||
					len(r.GetHeaders()) != len(c.Headers) {
					t.Errorf("%s: event %d: request %v is not the verbatim request", td.Pos, i, prototext.Format(r))
				}
				if i > 0 && d.Event.GetRequest() == ds[0].Event.GetRequest() {
					t.Errorf("%s: event %d shares its request message with event 0", td.Pos, i)
				}
				got.Request = nil
				if elems != nil {
					if !bytes.Equal(got.GetCloudEvent().GetRaw(), elems[i]) {
						t.Errorf("%s: event %d: cloud_event.raw = %s, want the array element %s", td.Pos, i, got.GetCloudEvent().GetRaw(), elems[i])
					}
					got.CloudEvent.Raw = nil
				}
				js, err := golden.JSON(got)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&out, "%s\n%s\n", d.Stream, js)
			}
			return out.String()
		})
	})
}

// form derives a form callback of kind with body, POSTed.
func form(kind twilio.Kind, body string) []twilio.Derived {
	return twilio.Derive(kind, &twilio.Request{
		Method: http.MethodPost, URL: corpusPublicURL + "/twilio/voice/" + string(kind),
		ContentType: "application/x-www-form-urlencoded", Body: []byte(body), ReceivedAt: receivedAt,
	})
}

const sid = "CA0123456789abcdef0123456789abcdef"

func TestDeriveEventIDs(t *testing.T) {
	t.Parallel()
	id := func(kind twilio.Kind, body string) string {
		ds := form(kind, body)
		if len(ds) != 1 {
			t.Fatalf("%d events", len(ds))
		}
		return ds[0].Event.GetEventId()
	}
	base := "CallSid=" + sid + "&CallStatus=ringing&SequenceNumber=1"
	same := []struct{ name, a, b string }{
		{"parameter order", base, "SequenceNumber=1&CallStatus=ringing&CallSid=" + sid},
		{"encoding", base + "&From=%2B1415", base + "&From=%2b1415"},
		{"order of repeated values", base + "&X=1&X=2", base + "&X=2&X=1"},
		{"empty settings", base, "&" + base + "&&"},
		// Twilio signs every distinct value once: a pair sent again is the
		// same signed request, hence the same fact.
		{"a repeated pair", base, base + "&CallStatus=ringing"},
		{"a repeated pair among others", base + "&X=1&X=2", base + "&X=2&X=1&X=2"},
	}
	for _, tt := range same {
		if a, b := id(twilio.KindStatus, tt.a), id(twilio.KindStatus, tt.b); a != b {
			t.Errorf("%s changes the ID: %s vs %s", tt.name, a, b)
		}
	}
	differ := []struct{ name, a, b string }{
		{"a value", base, strings.Replace(base, "ringing", "completed", 1)},
		{"an extra parameter", base, base + "&Extra="},
		{"another value of a name", base, base + "&CallStatus=completed"},
		{"the split between name and value", base + "&Ab=c", base + "&A=bc"},
	}
	for _, tt := range differ {
		if a, b := id(twilio.KindStatus, tt.a), id(twilio.KindStatus, tt.b); a == b {
			t.Errorf("%s does not change the ID %s", tt.name, a)
		}
	}
	if id(twilio.KindStatus, base) == id(twilio.KindDial, base) {
		t.Error("the kind does not change the ID")
	}
	// A GET carries the same parameters in its query: same fact, same ID.
	get := twilio.Derive(twilio.KindStatus, &twilio.Request{Method: http.MethodGet, RawQuery: base, URL: corpusPublicURL + "/s?" + base})
	if got := get[0].Event.GetEventId(); got != id(twilio.KindStatus, base) {
		t.Errorf("GET ID %s differs from the POST's", got)
	}
}

func TestDeriveNormalization(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind twilio.Kind
		body string
		want proto.Message // the event's body
	}{
		{"unknown status kept raw", twilio.KindStatus, "CallSid=" + sid + "&CallStatus=on-hold",
			&callledgerv1.CallStatusReported{Status: callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED, StatusRaw: "on-hold"}},
		{"numbers that do not parse stay unset", twilio.KindStatus,
			"CallSid=" + sid + "&CallStatus=completed&SequenceNumber=x&CallDuration=+&Duration=1.5&SipResponseCode=99999999999",
			&callledgerv1.CallStatusReported{Status: callledgerv1.CallStatus_CALL_STATUS_COMPLETED, StatusRaw: "completed"}},
		{"first value of a repeated name", twilio.KindStatus, "CallSid=" + sid + "&CallStatus=busy&CallStatus=completed&SequenceNumber=4&SequenceNumber=1",
			&callledgerv1.CallStatusReported{Status: callledgerv1.CallStatus_CALL_STATUS_BUSY, StatusRaw: "busy", SequenceNumber: proto.Int64(4)}},
		{"malformed ParentCallSid is no link", twilio.KindStatus, "CallSid=" + sid + "&CallStatus=ringing&ParentCallSid=CA123&AnsweredBy=human&RecordingSid=RE1&RecordingUrl=u",
			&callledgerv1.CallStatusReported{Status: callledgerv1.CallStatus_CALL_STATUS_RINGING, StatusRaw: "ringing", AnsweredBy: "human", RecordingSid: "RE1", RecordingUrl: "u"}},
		{"all statuses", twilio.KindStatus, "CallSid=" + sid + "&CallStatus=queued",
			&callledgerv1.CallStatusReported{Status: callledgerv1.CallStatus_CALL_STATUS_QUEUED, StatusRaw: "queued"}},
		{"conference dial answered", twilio.KindDial, "CallSid=" + sid + "&CallStatus=in-progress&DialCallStatus=answered&DialBridged=true&RecordingUrl=r",
			&callledgerv1.DialCompleted{DialCallStatus: callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, DialCallStatusRaw: "answered",
				DialBridged: proto.Bool(true), ParentStatus: callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, ParentStatusRaw: "in-progress", RecordingUrl: "r"}},
		{"canceled dial", twilio.KindDial, "CallSid=" + sid + "&DialCallSid=CA0123456789abcdef0123456789abcde0&DialCallStatus=canceled&DialCallDuration=0",
			&callledgerv1.DialCompleted{DialCallSid: "CA0123456789abcdef0123456789abcde0", DialCallStatus: callledgerv1.CallStatus_CALL_STATUS_CANCELED,
				DialCallStatusRaw: "canceled", DialCallDurationSeconds: proto.Int64(0)}},
		{"absent recording", twilio.KindRecording, "CallSid=" + sid + "&RecordingStatus=absent&ErrorCode=13617&RecordingDuration=0&RecordingTrack=both&RecordingStartTime=garbage",
			&callledgerv1.RecordingStatusReported{RecordingStatus: "absent", ErrorCode: "13617", RecordingDurationSeconds: proto.Int64(0), RecordingTrack: "both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ds := form(tt.kind, tt.body)
			checkDerived(t, tt.kind, &twilio.Request{Method: http.MethodPost, URL: corpusPublicURL + "/twilio/voice/" + string(tt.kind),
				ContentType: "application/x-www-form-urlencoded", Body: []byte(tt.body), ReceivedAt: receivedAt}, ds)
			var got proto.Message
			switch b := ds[0].Event.GetBody().(type) {
			case *callledgerv1.Event_CallStatusReported:
				got = b.CallStatusReported
			case *callledgerv1.Event_DialCompleted:
				got = b.DialCompleted
			case *callledgerv1.Event_RecordingStatusReported:
				got = b.RecordingStatusReported
			default:
				t.Fatalf("body %T", b)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("\n got %v\nwant %v", prototext.Format(got), prototext.Format(tt.want))
			}
			if ds[0].Event.GetReportedAt() != nil {
				t.Errorf("reported_at %v without a Timestamp", ds[0].Event.GetReportedAt())
			}
		})
	}
}

func TestDeriveQuarantine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		kind   twilio.Kind
		method string
		query  string
		body   string
		reason string // a substring of the reason
	}{
		{"no CallSid", twilio.KindStatus, "POST", "", "CallStatus=completed", "no CallSid"},
		{"empty CallSid", twilio.KindDial, "POST", "", "CallSid=&DialCallStatus=busy", "empty CallSid"},
		{"malformed CallSid", twilio.KindStatus, "POST", "", "CallSid=CA0123456789ABCDEF0123456789abcdef", "not a CallSid"},
		{"conference recording", twilio.KindRecording, "POST", "", "ConferenceSid=CF1&RecordingSid=RE1", "no CallSid"},
		{"semicolon", twilio.KindStatus, "POST", "", "CallSid=" + sid + ";CallStatus=busy", "semicolon"},
		{"bad escape", twilio.KindStatus, "POST", "", "CallSid=" + sid + "&From=%zz", "escape"},
		{"GET without parameters", twilio.KindStatus, "GET", "", "", "no CallSid"},
		{"GET with a bad query", twilio.KindStatus, "GET", "CallSid=" + sid + "&x=%", "", "escape"},
		{"JSON on a form route", twilio.KindStatus, "POST", "bodySHA256=x", `{"CallSid":"` + sid + `"}`, "no CallSid"},
		{"too many parameters", twilio.KindStatus, "POST", "", "CallSid=" + sid + strings.Repeat("&", 10000), "more parameters"},
		{"unknown kind", twilio.Kind("voicemail"), "POST", "", "CallSid=" + sid, "unknown"},
		{"conference callback without ConferenceSid", twilio.KindConference, "POST", "", "CallSid=" + sid + "&StatusCallbackEvent=participant-join", "no ConferenceSid"},
		{"conference callback with a malformed ConferenceSid", twilio.KindConference, "POST", "", "ConferenceSid=CF1&StatusCallbackEvent=conference-end", "not a ConferenceSid"},
		{"AMD callback with a placeholder CallSid", twilio.KindAMD, "POST", "", "CallSid=CAxxxxxxxxxx&AnsweredBy=machine_end_beep", "not a CallSid"},
		{"empty kind", twilio.Kind(""), "POST", "", "CallSid=" + sid, "unknown"},
		{"events: not JSON", twilio.KindEvents, "POST", "", "CallSid=" + sid, "JSON"},
		{"events: an object", twilio.KindEvents, "POST", "", `{"id":"x"}`, "JSON"},
		{"events: empty array", twilio.KindEvents, "POST", "", `[]`, "no CloudEvents"},
		{"events: null", twilio.KindEvents, "POST", "", `null`, "no CloudEvents"},
		{"events: GET", twilio.KindEvents, "GET", "", "", "JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &twilio.Request{Method: tt.method, RawQuery: tt.query, URL: "https://ledger.test/x?" + tt.query, Body: []byte(tt.body)}
			ds := twilio.Derive(tt.kind, req)
			checkDerived(t, tt.kind, req, ds)
			if len(ds) != 1 {
				t.Fatalf("%d events, want 1", len(ds))
			}
			if q := ds[0].Event.GetRequestQuarantined(); q == nil || !strings.Contains(q.GetReason(), tt.reason) {
				t.Errorf("quarantined as %v, want a reason with %q", q, tt.reason)
			}
			// A retry is a no-op; another body is another event.
			req2 := *req
			req2.Body = append([]byte(tt.body), ' ')
			if other := twilio.Derive(tt.kind, &req2); other[0].Event.GetEventId() == ds[0].Event.GetEventId() {
				t.Error("a different body derives the same quarantine ID")
			}
		})
	}
	if ds := twilio.Derive(twilio.KindStatus, nil); len(ds) != 1 || ds[0].Event.GetRequestQuarantined() == nil {
		t.Errorf("Derive(nil request) = %v, want one quarantined event", ds)
	}
}

// cloudEvent renders one Event Streams event; data is inserted verbatim.
func cloudEvent(id, typ, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","type":%q,"source":"/x","id":%q,"time":"2026-03-10T13:52:49.002Z","data":%s}`, typ, id, data)
}

func voiceData(sid, timestamp string, params string) string {
	return fmt.Sprintf(`{"sid":%q,"timestamp":%q,"request":{"method":"POST","url":"u","parameters":{%s}}}`, sid, timestamp, params)
}

func TestDeriveEventStreams(t *testing.T) {
	t.Parallel()
	const ringing = "com.twilio.voice.status-callback.call.ringing"
	okData := voiceData(sid, "2026-03-10T13:52:48.421Z", `"CallSid":"`+sid+`","CallStatus":"ringing","Timestamp":"Tue, 10 Mar 2026 13:52:47 +0000"`)
	tests := []struct {
		name     string
		body     string
		streams  []string
		reported []string // RFC 3339 or ""
		reasons  []string // for quarantined events, a substring of the reason
	}{
		{"Timestamp parameter first", "[" + cloudEvent("E1", ringing, okData) + "]",
			[]string{"call-" + sid}, []string{"2026-03-10T13:52:47Z"}, nil},
		{"then data.timestamp", "[" + cloudEvent("E1", ringing, voiceData(sid, "2026-03-10T13:52:48.421Z", `"CallStatus":"ringing"`)) + "]",
			[]string{"call-" + sid}, []string{"2026-03-10T13:52:48.421Z"}, nil},
		{"then the CloudEvent time", "[" + cloudEvent("E1", ringing, voiceData(sid, "", `"CallStatus":"ringing","Timestamp":"soon"`)) + "]",
			[]string{"call-" + sid}, []string{"2026-03-10T13:52:49.002Z"}, nil},
		{"deprecated type", "[" + cloudEvent("E1", "com.twilio.voice.webhook.status-callback.call.completed", okData) + "]",
			[]string{"call-" + sid}, []string{"2026-03-10T13:52:47Z"}, nil},
		{"non-string parameters", "[" + cloudEvent("E1", ringing, voiceData(sid, "", `"SequenceNumber":7,"CallStatus":null,"X":{"a":1}`)) + "]",
			[]string{"call-" + sid}, []string{"2026-03-10T13:52:49.002Z"}, nil},
		{"the same id twice is one event", "[" + cloudEvent("E1", ringing, okData) + "," + cloudEvent("E1", ringing, okData) + "]",
			[]string{"call-" + sid}, []string{"2026-03-10T13:52:47Z"}, nil},
		{"another voice type naming the call goes to its stream", "[" + cloudEvent("E1", ringing, okData) + "," + cloudEvent("E2", "com.twilio.voice.twiml.call.redirected", okData) + "]",
			[]string{"call-" + sid, "call-" + sid}, []string{"2026-03-10T13:52:47Z", "2026-03-10T13:52:49.002Z"}, nil},
		{"a type that is not a voice event beside a good one", "[" + cloudEvent("E1", ringing, okData) + "," + cloudEvent("E2", "com.twilio.messaging.message.sent", okData) + "]",
			[]string{"call-" + sid, "quarantine-events"}, []string{"2026-03-10T13:52:47Z", "2026-03-10T13:52:49.002Z"}, []string{"", "is not a voice event"}},
		{"a voice event that names no call", "[" + cloudEvent("E2", "com.twilio.voice.twiml.call.redirected", `{"sid":"CA1"}`) + "]",
			[]string{"quarantine-events"}, []string{"2026-03-10T13:52:49.002Z"}, []string{"names no call"}},
		{"invalid sid", "[" + cloudEvent("E1", ringing, voiceData("CA1", "", "")) + "]",
			[]string{"quarantine-events"}, []string{"2026-03-10T13:52:49.002Z"}, []string{"data.sid"}},
		{"no id", "[" + cloudEvent("", ringing, okData) + "]",
			[]string{"quarantine-events"}, []string{"2026-03-10T13:52:49.002Z"}, []string{"no id"}},
		{"no data", "[" + cloudEvent("E1", ringing, "null") + "]",
			[]string{"quarantine-events"}, []string{"2026-03-10T13:52:49.002Z"}, []string{"data"}},
		{"data string is not JSON", "[" + cloudEvent("E1", ringing, `"{oops"`) + "]",
			[]string{"quarantine-events"}, []string{"2026-03-10T13:52:49.002Z"}, []string{"data"}},
		{"element is not an object", `[42]`, []string{"quarantine-events"}, []string{""}, []string{"not a CloudEvent"}},
		{"id is a number", `[{"id":5}]`, []string{"quarantine-events"}, []string{""}, []string{"not a CloudEvent"}},
		{"100 identical elements are one", "[1" + strings.Repeat(",1", 99) + "]", []string{"quarantine-events"}, []string{""}, []string{"not a CloudEvent"}},
		{"101 elements are quarantined whole", "[1" + strings.Repeat(",1", 100) + "]", []string{"quarantine-events"}, []string{""}, []string{"101 CloudEvents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &twilio.Request{Method: http.MethodPost, URL: corpusPublicURL + "/twilio/events", Body: []byte(tt.body), ReceivedAt: receivedAt}
			ds := twilio.Derive(twilio.KindEvents, req)
			checkDerived(t, twilio.KindEvents, req, ds)
			if len(ds) != len(tt.streams) {
				t.Fatalf("%d events, want %d", len(ds), len(tt.streams))
			}
			for i, d := range ds {
				if d.Stream != tt.streams[i] {
					t.Errorf("event %d: stream %s, want %s", i, d.Stream, tt.streams[i])
				}
				var want *timestamppb.Timestamp
				if tt.reported[i] != "" {
					want = ts(tt.reported[i])
				}
				if !proto.Equal(d.Event.GetReportedAt(), want) {
					t.Errorf("event %d: reported_at %v, want %v", i, d.Event.GetReportedAt(), want)
				}
				if q := d.Event.GetRequestQuarantined(); q != nil && !strings.Contains(q.GetReason(), tt.reasons[i]) {
					t.Errorf("event %d: reason %q, want %q in it", i, q.GetReason(), tt.reasons[i])
				}
				if q := d.Event.GetRequestQuarantined(); (q == nil || !strings.Contains(q.GetReason(), "CloudEvents in one")) && d.Event.GetCloudEvent().GetRaw() == nil {
					t.Errorf("event %d: no raw CloudEvent", i)
				}
			}
		})
	}
	// Redelivery of one CloudEvent in another array keeps its ID.
	one := twilio.Derive(twilio.KindEvents, &twilio.Request{Body: []byte("[" + cloudEvent("E1", ringing, okData) + "]")})
	two := twilio.Derive(twilio.KindEvents, &twilio.Request{Body: []byte("[" + cloudEvent("E0", ringing, okData) + ",\n " + cloudEvent("E1", ringing, okData) + "]")})
	if one[0].Event.GetEventId() != two[1].Event.GetEventId() || one[0].Event.GetEventId() != eventcodec.EventID("events", []byte("E1")).String() {
		t.Errorf("redelivered CloudEvent E1: IDs %s and %s", one[0].Event.GetEventId(), two[1].Event.GetEventId())
	}
	if st := one[0].Event.GetCallStatusReported(); st.GetSequenceNumber() != 0 || st.SequenceNumber != nil {
		t.Errorf("sequence number %v without one in the parameters", st.SequenceNumber)
	}
}

func TestDeriveHeaders(t *testing.T) {
	t.Parallel()
	h := http.Header{
		"X-Twilio-Signature":  {"sig"},
		"Authorization":       {"Basic dXNlcjpwYXNz"},
		"Proxy-Authorization": {"Basic eA=="},
		"Cookie":              {"session=1"},
		"cookie":              {"raw=1"}, // not canonical: still a cookie
		"Accept":              {"*/*"},
		"X-Multi":             {"b", "a"},
		"Empty":               {},
	}
	req := &twilio.Request{Method: http.MethodPost, Header: h, Body: []byte("CallSid=" + sid)}
	for _, d := range twilio.Derive(twilio.KindStatus, req) {
		var got []string
		for _, hd := range d.Event.GetRequest().GetHeaders() {
			got = append(got, hd.GetName()+": "+hd.GetValue())
		}
		want := []string{"Accept: */*", "X-Multi: b", "X-Multi: a", "X-Twilio-Signature: sig"}
		if !slices.Equal(got, want) {
			t.Errorf("headers %q, want %q", got, want)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 3, 1, 4, 7, 50, 0, time.UTC)
	for _, s := range []string{
		"Sun, 1 Mar 2026 04:07:50 +0000",
		"Sun, 01 Mar 2026 04:07:50 +0000",
		"Sat, 28 Feb 2026 23:07:50 -0500",
		"1 Mar 2026 04:07:50 +0000",
		"Sun, 1 Mar 2026 04:07:50 GMT",
		"Sun, 1 Mar 2026 04:07:50 +0000 (UTC)",
	} {
		got, err := twilio.ParseTimestamp(s)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTimestamp(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "2026-03-01T04:07:50Z", "Sun, 32 Mar 2026 04:07:50 +0000", "Sun, 1 Mar 2026 25:07:50 +0000", "yesterday"} {
		if _, err := twilio.ParseTimestamp(s); !errors.Is(err, twilio.ErrInvalidTimestamp) {
			t.Errorf("ParseTimestamp(%q) = %v, want ErrInvalidTimestamp", s, err)
		}
	}
}

// TestDeriveInvalidUTF8 keeps requests that are not UTF-8 storable: proto3
// refuses to encode invalid UTF-8 in string fields, and an event that
// cannot be encoded is a verified request lost.
func TestDeriveInvalidUTF8(t *testing.T) {
	t.Parallel()
	get := &twilio.Request{
		Method: http.MethodGet, RawQuery: "CallSid=" + sid + "&CallStatus=ringing&From=\xf0%FF", URL: "https://ledger.test/s?CallSid=" + sid + "&CallStatus=ringing&From=\xf0%FF",
		Header: http.Header{"X-Obs-Text": {"caf\xe9"}}, ContentType: "text/\xff", RemoteAddr: "\xfe",
	}
	ds := twilio.Derive(twilio.KindStatus, get)
	checkDerived(t, twilio.KindStatus, get, ds)
	ev := ds[0].Event
	if got, want := ev.GetRequest().GetUrl(), "https://ledger.test/s?CallSid="+sid+"&CallStatus=ringing&From=%F0%FF"; got != want {
		t.Errorf("url %q, want %q", got, want)
	}
	if got := ev.GetCallStatusReported().GetFrom(); got != "\uFFFD" {
		t.Errorf("From %q, want U+FFFD", got)
	}
	if got := ev.GetRequest().GetHeaders()[0].GetValue(); got != "caf\uFFFD" {
		t.Errorf("header value %q", got)
	}
	post := &twilio.Request{Method: http.MethodPost, Body: []byte("CallSid=" + sid + "&DialCallStatus=%C3%28")}
	ds = twilio.Derive(twilio.KindDial, post)
	checkDerived(t, twilio.KindDial, post, ds)
	if got := ds[0].Event.GetDialCompleted().GetDialCallStatusRaw(); got != "\uFFFD(" {
		t.Errorf("DialCallStatus %q", got)
	}
	if !bytes.Equal(ds[0].Event.GetRequest().GetBody(), post.Body) {
		t.Error("body not kept byte for byte")
	}
	bad := &twilio.Request{Method: http.MethodPost, Body: []byte("x")}
	ds = twilio.Derive(twilio.Kind("\xff"), bad)
	checkDerived(t, twilio.Kind("\xff"), bad, ds)
}

// TestKinds checks the one list of webhook kinds: each is served on its own
// path, found back from it, and derives events of its own source, filed in
// its own quarantine.
func TestKinds(t *testing.T) {
	t.Parallel()
	kinds := twilio.Kinds()
	if len(kinds) != 6 {
		t.Fatalf("Kinds() = %v, want the six routes", kinds)
	}
	paths, sources := map[string]bool{}, map[callledgerv1.Source]bool{}
	for _, k := range kinds {
		if got, ok := twilio.KindOfPath(k.Path()); !ok || got != k || paths[k.Path()] {
			t.Errorf("kind %s: path %q maps back to %q, %v (or is shared)", k, k.Path(), got, ok)
		}
		paths[k.Path()] = true
		ds := twilio.Derive(k, &twilio.Request{Method: http.MethodPost, Body: []byte("not a callback")})
		ev := ds[0].Event
		if ds[0].Stream != eventcodec.QuarantineStream(string(k)) || ev.GetSource() == callledgerv1.Source_SOURCE_UNSPECIFIED || sources[ev.GetSource()] {
			t.Errorf("kind %s: stream %s, source %s (or shared)", k, ds[0].Stream, ev.GetSource())
		}
		sources[ev.GetSource()] = true
	}
	for _, p := range []string{"", "/", "/twilio/voice", "/twilio/voice/status/", "/twilio/voice/unknown"} {
		if k, ok := twilio.KindOfPath(p); ok {
			t.Errorf("KindOfPath(%q) = %s", p, k)
		}
	}
	if p := twilio.Kind("unknown").Path(); p != "" {
		t.Errorf("unknown kind's path %q", p)
	}
}

// TestDeriveRecognizes checks the callbacks recognized beyond a route's
// own: answering-machine detection (its route, or the status route),
// conference callbacks (their route, or the status route), transcriptions
// (the recording route). Each keeps the ID kind of the route it arrived
// on, so that a stored callback's redelivery is still recognized.
func TestDeriveRecognizes(t *testing.T) {
	t.Parallel()
	const cf = "CF0123456789abcdef0123456789abcdef"
	amd := "CallSid=" + sid + "&AccountSid=AC1&AnsweredBy=machine_end_beep&MachineDetectionDuration=3200"
	conf := "ConferenceSid=" + cf + "&FriendlyName=room&StatusCallbackEvent=participant-hold&CallSid=" + sid +
		"&Hold=true&Muted=false&Coaching=false&ParticipantLabel=agent&SequenceNumber=4&Timestamp=Tue%2C+10+Mar+2026+13%3A52%3A47+%2B0000"
	tr := "CallSid=" + sid + "&RecordingSid=RE1&TranscriptionSid=TR1&TranscriptionStatus=completed&TranscriptionText=hello&AccountSid=AC1"
	for _, tt := range []struct {
		name   string
		kind   twilio.Kind
		body   string
		stream string
		source callledgerv1.Source
		idKind eventcodec.IDKind
		want   proto.Message
	}{
		{"AMD on its route", twilio.KindAMD, amd, "call-" + sid, callledgerv1.Source_SOURCE_AMD_CALLBACK, eventcodec.IDKindAMD,
			&callledgerv1.CallStatusReported{AccountSid: "AC1", AnsweredBy: "machine_end_beep", MachineDetectionDurationMs: proto.Int64(3200)}},
		{"AMD on the status route", twilio.KindStatus, amd, "call-" + sid, callledgerv1.Source_SOURCE_AMD_CALLBACK, eventcodec.IDKindStatus,
			&callledgerv1.CallStatusReported{AccountSid: "AC1", AnsweredBy: "machine_end_beep", MachineDetectionDurationMs: proto.Int64(3200)}},
		{"AMD with a CallStatus on its route", twilio.KindAMD, amd + "&CallStatus=in-progress", "call-" + sid, callledgerv1.Source_SOURCE_AMD_CALLBACK, eventcodec.IDKindAMD,
			&callledgerv1.CallStatusReported{Status: callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, StatusRaw: "in-progress", AccountSid: "AC1", AnsweredBy: "machine_end_beep", MachineDetectionDurationMs: proto.Int64(3200)}},
		{"a status callback with AnsweredBy is a status callback", twilio.KindStatus, amd + "&CallStatus=completed", "call-" + sid, callledgerv1.Source_SOURCE_STATUS_CALLBACK, eventcodec.IDKindStatus,
			&callledgerv1.CallStatusReported{Status: callledgerv1.CallStatus_CALL_STATUS_COMPLETED, StatusRaw: "completed", AccountSid: "AC1", AnsweredBy: "machine_end_beep", MachineDetectionDurationMs: proto.Int64(3200)}},
		{"conference on its route", twilio.KindConference, conf, "conference-" + cf, callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK, eventcodec.IDKindConference,
			&callledgerv1.ConferenceEventReported{ConferenceSid: cf, FriendlyName: "room", Event: callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_HOLD,
				EventRaw: "participant-hold", CallSid: sid, Hold: proto.Bool(true), Muted: proto.Bool(false), Coaching: proto.Bool(false), ParticipantLabel: "agent", SequenceNumber: proto.Int64(4)}},
		{"conference on the status route", twilio.KindStatus, conf, "conference-" + cf, callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK, eventcodec.IDKindStatus,
			&callledgerv1.ConferenceEventReported{ConferenceSid: cf, FriendlyName: "room", Event: callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_HOLD,
				EventRaw: "participant-hold", CallSid: sid, Hold: proto.Bool(true), Muted: proto.Bool(false), Coaching: proto.Bool(false), ParticipantLabel: "agent", SequenceNumber: proto.Int64(4)}},
		{"conference-end without a CallSid", twilio.KindConference, "ConferenceSid=" + cf + "&StatusCallbackEvent=conference-end&ReasonConferenceEnded=last-participant-left&CallSidEndingConference=" + sid,
			"conference-" + cf, callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK, eventcodec.IDKindConference,
			&callledgerv1.ConferenceEventReported{ConferenceSid: cf, Event: callledgerv1.ConferenceEvent_CONFERENCE_EVENT_CONFERENCE_END, EventRaw: "conference-end",
				ReasonConferenceEnded: "last-participant-left", CallSidEndingConference: sid}},
		{"participant-leave", twilio.KindConference, "ConferenceSid=" + cf + "&StatusCallbackEvent=participant-leave&CallSid=" + sid + "&ParticipantCallStatus=completed&ReasonParticipantLeft=participant_hung_up",
			"conference-" + cf, callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK, eventcodec.IDKindConference,
			&callledgerv1.ConferenceEventReported{ConferenceSid: cf, Event: callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_LEAVE, EventRaw: "participant-leave",
				CallSid: sid, ParticipantCallStatus: "completed", ReasonParticipantLeft: "participant_hung_up"}},
		{"unknown conference event kept raw", twilio.KindConference, "ConferenceSid=" + cf + "&StatusCallbackEvent=participant-wave",
			"conference-" + cf, callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK, eventcodec.IDKindConference,
			&callledgerv1.ConferenceEventReported{ConferenceSid: cf, EventRaw: "participant-wave"}},
		{"transcription on the recording route", twilio.KindRecording, tr, "call-" + sid, callledgerv1.Source_SOURCE_RECORDING_STATUS, eventcodec.IDKindRecording,
			&callledgerv1.TranscriptionReported{TranscriptionSid: "TR1", TranscriptionStatus: "completed", TranscriptionText: "hello", RecordingSid: "RE1", AccountSid: "AC1"}},
		{"status fields", twilio.KindStatus, "CallSid=" + sid + "&CallStatus=failed&ErrorCode=13224&ErrorMessage=Busy+here&CallerName=Ada&ForwardedFrom=%2B1&StirVerstat=TN-Validation-Passed-A&StirStatus=A&SipCallId=abc%40host&QueueTime=120",
			"call-" + sid, callledgerv1.Source_SOURCE_STATUS_CALLBACK, eventcodec.IDKindStatus,
			&callledgerv1.CallStatusReported{Status: callledgerv1.CallStatus_CALL_STATUS_FAILED, StatusRaw: "failed", ErrorCode: "13224", ErrorMessage: "Busy here", CallerName: "Ada",
				ForwardedFrom: "+1", StirVerstat: "TN-Validation-Passed-A", StirStatus: "A", SipCallId: "abc@host", QueueTimeMs: proto.Int64(120)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &twilio.Request{Method: http.MethodPost, URL: corpusPublicURL + tt.kind.Path(), ContentType: "application/x-www-form-urlencoded", Body: []byte(tt.body), ReceivedAt: receivedAt}
			ds := twilio.Derive(tt.kind, req)
			checkDerived(t, tt.kind, req, ds)
			ev := ds[0].Event
			if ds[0].Stream != tt.stream || ev.GetSource() != tt.source || ev.GetDerivation() != twilio.Derivation {
				t.Errorf("stream %s, source %s, derivation %d; want %s, %s, %d", ds[0].Stream, ev.GetSource(), ev.GetDerivation(), tt.stream, tt.source, twilio.Derivation)
			}
			// The ID covers the canonical parameters under the route's kind:
			// the same as an identical callback's on that route always was.
			if want := form(tt.kind, tt.body)[0].Event.GetEventId(); ev.GetEventId() != want {
				t.Errorf("ID %s, want %s", ev.GetEventId(), want)
			}
			if other := twilio.KindStatus; tt.idKind != eventcodec.IDKindStatus && form(other, tt.body)[0].Event.GetEventId() == ev.GetEventId() {
				t.Errorf("the %s route and the status route derive the same ID", tt.kind)
			}
			var got proto.Message
			switch b := ev.GetBody().(type) {
			case *callledgerv1.Event_CallStatusReported:
				got = b.CallStatusReported
			case *callledgerv1.Event_ConferenceEventReported:
				got = b.ConferenceEventReported
			case *callledgerv1.Event_TranscriptionReported:
				got = b.TranscriptionReported
			default:
				t.Fatalf("body %T", b)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("\n got %v\nwant %v", prototext.Format(got), prototext.Format(tt.want))
			}
		})
	}
}

// TestDeriveCloudEventIdentity: CloudEvents are identified by source and
// id. A voice status callback keeps the ID it always had (its id: a call's
// status callbacks all come from one source, which its stream names);
// every other CloudEvent filed under a call covers its source too, so two
// events sharing an id from different sources are two events.
func TestDeriveCloudEventIdentity(t *testing.T) {
	t.Parallel()
	derive := func(typ, source, id, data string) string {
		body := fmt.Sprintf(`[{"specversion":"1.0","type":%q,"source":%q,"id":%q,"time":"2026-03-10T13:52:49.002Z","data":%s}]`, typ, source, id, data)
		ds := twilio.Derive(twilio.KindEvents, &twilio.Request{Method: http.MethodPost, Body: []byte(body)})
		if len(ds) != 1 || ds[0].Stream != "call-"+sid {
			t.Fatalf("%s: %v", typ, ds)
		}
		return ds[0].Event.GetEventId()
	}
	status := voiceData(sid, "", `"CallStatus":"ringing"`)
	const ringing = "com.twilio.voice.status-callback.call.ringing"
	if a, b := derive(ringing, "/a", "E1", status), derive(ringing, "/b", "E1", status); a != b || a != eventcodec.EventID(eventcodec.IDKindEvents, []byte("E1")).String() {
		t.Errorf("status callback: IDs %s and %s, want the id's", a, b)
	}
	amd := voiceData(sid, "", `"AnsweredBy":"human"`)
	const detected = "com.twilio.voice.status-callback.amd.detected"
	if a, b := derive(detected, "/a", "E1", amd), derive(detected, "/b", "E1", amd); a == b {
		t.Errorf("AMD events of two sources share the ID %s", a)
	}
	if a, b := derive(detected, "/a", "E1", amd), derive(detected, "/a", "E1", amd); a != b {
		t.Errorf("a redelivered AMD event: IDs %s and %s", a, b)
	}
	summary := `{"call_sid":"` + sid + `","call_state":"completed"}`
	const complete = "com.twilio.voice.insights.call-summary.complete"
	if a, b := derive(complete, "/a", "E1", summary), derive(complete, "/b", "E1", summary); a == b {
		t.Errorf("summaries of two sources share the ID %s", a)
	}
}

// TestDeriveVoiceInsights checks what a call summary and a call event
// become, and where they are filed.
func TestDeriveVoiceInsights(t *testing.T) {
	t.Parallel()
	summary := `{"call_sid":"` + sid + `","account_sid":"AC1","parent_call_sid":"CA0123456789abcdef0123456789abcde0","call_state":"noanswer","call_type":"carrier",` +
		`"duration":12,"processing_state":"complete","start_time":"2026-03-10T13:50:00Z","end_time":"2026-03-10T13:51:00Z","tags":["high_jitter","silence"],` +
		`"properties":{"disconnected_by":"callee","last_sip_response_num":487,"q850_cause":16}}`
	body := `[{"specversion":"1.0","type":"com.twilio.voice.insights.call-summary.complete","source":"/v1/Voice/` + sid + `/Summary","id":"EZ1","data":` + strconv.Quote(summary) + `},` +
		`{"specversion":"1.0","type":"com.twilio.voice.insights.call-event.gateway","source":"AB1","id":"NO1","time":"2026-03-10T13:50:01Z","data":{"call_sid":"` + sid + `","account_sid":"AC1","name":"call.connected","group":"call","level":"INFO","edge":"ashburn"}},` +
		`{"specversion":"1.0","type":"com.twilio.voice.insights.call-event.sdk","source":"/v1/Voice/` + sid + `/Events","id":"NO2","data":{"name":"x"}}]`
	req := &twilio.Request{Method: http.MethodPost, URL: corpusPublicURL + "/twilio/events", Body: []byte(body), ReceivedAt: receivedAt}
	ds := twilio.Derive(twilio.KindEvents, req)
	checkDerived(t, twilio.KindEvents, req, ds)
	if len(ds) != 3 {
		t.Fatalf("%d events", len(ds))
	}
	for i, d := range ds {
		if d.Stream != "call-"+sid || d.Event.GetSource() != callledgerv1.Source_SOURCE_VOICE_INSIGHTS {
			t.Errorf("event %d: %s, %s", i, d.Stream, d.Event.GetSource())
		}
	}
	want := &callledgerv1.CallSummaryReported{
		Summary: "complete", ProcessingState: "complete", CallState: "noanswer", Status: callledgerv1.CallStatus_CALL_STATUS_NO_ANSWER, CallType: "carrier",
		AccountSid: "AC1", ParentCallSid: "CA0123456789abcdef0123456789abcde0", DurationSeconds: proto.Int64(12), StartTime: ts("2026-03-10T13:50:00Z"),
		EndTime: ts("2026-03-10T13:51:00Z"), DisconnectedBy: "callee", LastSipResponse: proto.Int32(487), Tags: []string{"high_jitter", "silence"}, Q850Cause: proto.Int32(16),
	}
	if got := ds[0].Event.GetCallSummaryReported(); !proto.Equal(got, want) {
		t.Errorf("summary\n got %v\nwant %v", prototext.Format(got), prototext.Format(want))
	}
	if !proto.Equal(ds[0].Event.GetReportedAt(), ts("2026-03-10T13:51:00Z")) {
		t.Errorf("summary reported at %v, want its end time (no CloudEvent time)", ds[0].Event.GetReportedAt())
	}
	if got := ds[1].Event.GetCallEventReported(); got.GetName() != "call.connected" || got.GetAccountSid() != "AC1" || got.GetEdge() != "ashburn" || got.GetType() != "com.twilio.voice.insights.call-event.gateway" {
		t.Errorf("gateway event %v", got)
	}
	if got := ds[2].Event.GetCallEventReported(); got.GetName() != "x" {
		t.Errorf("an event naming its call in the source only: %v", got)
	}
}

// TestUpcast derives events of an older derivation again from their
// verbatim requests: new fields reach old events, and a callback this
// version recognizes gets its body, while the event keeps its ID and call.
func TestUpcast(t *testing.T) {
	t.Parallel()
	const cf = "CF0123456789abcdef0123456789abcdef"
	old := func(kind twilio.Kind, body string, mutate func(*callledgerv1.Event)) *callledgerv1.Event {
		ds := form(kind, body)
		ev := proto.CloneOf(ds[0].Event)
		ev.Derivation = 0
		mutate(ev)
		return ev
	}
	// As derivation 0 stored a participant callback sent to the status
	// route: a status report without a status, in the call's stream.
	join := "ConferenceSid=" + cf + "&StatusCallbackEvent=participant-join&CallSid=" + sid + "&Timestamp=Tue%2C+10+Mar+2026+13%3A52%3A47+UTC"
	ev := old(twilio.KindStatus, join, func(ev *callledgerv1.Event) {
		ev.CallSid, ev.Source, ev.ReportedAt = sid, callledgerv1.Source_SOURCE_STATUS_CALLBACK, nil
		ev.Body = &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{}}
	})
	if !twilio.NeedsUpcast(ev) {
		t.Fatal("a derivation-0 status callback needs no upcast")
	}
	up := twilio.Upcast(ev)
	if up.GetEventId() != ev.GetEventId() || up.GetCallSid() != sid || up.GetDerivation() != twilio.Derivation ||
		up.GetConferenceEventReported().GetConferenceSid() != cf || up.GetSource() != callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK ||
		!proto.Equal(up.GetReportedAt(), ts("2026-03-10T13:52:47Z")) || up.GetRequest() != ev.GetRequest() {
		t.Errorf("upcast %v", prototext.Format(up))
	}
	if ev.GetCallStatusReported() == nil {
		t.Error("Upcast modified its argument")
	}
	if twilio.NeedsUpcast(up) || twilio.Upcast(up) != up {
		t.Error("a current event is upcast again")
	}
	// New fields of a status callback.
	failed := old(twilio.KindStatus, "CallSid="+sid+"&CallStatus=failed&ErrorCode=13224", func(ev *callledgerv1.Event) {
		ev.GetCallStatusReported().ErrorCode = ""
	})
	if got := twilio.Upcast(failed).GetCallStatusReported().GetErrorCode(); got != "13224" {
		t.Errorf("upcast error code %q", got)
	}
	// Without its request (decoded as facts only), nothing to read.
	bare := proto.CloneOf(failed)
	bare.Request = nil
	if twilio.Upcast(bare) != bare {
		t.Error("an event without its request was upcast")
	}
	// Events no webhook wrote are never upcast.
	hang := &callledgerv1.Event{Source: callledgerv1.Source_SOURCE_HANGUP_REQUEST, Body: &callledgerv1.Event_HangupRequested{HangupRequested: &callledgerv1.HangupRequested{}}}
	if twilio.NeedsUpcast(hang) {
		t.Error("a hang-up request needs an upcast")
	}
}
