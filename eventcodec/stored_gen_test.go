package eventcodec_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/services/command"
	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

// The stored-event corpus is written by this version's own write paths,
// into a real Pebble event store, and read back as stored: the webhook's
// derivation of Twilio requests (whole call trees of the capture corpus in
// testdata/twilio, plus requests that end in quarantine), the command
// service's hang-ups against a fake Twilio REST API, and the reconciler's
// reads of Call resources. Its clock is fixed, so that the same version
// writes the same bytes.

// The capture corpus trees whose requests are written whole, in delivery
// order, and single requests of other trees.
var (
	storedTrees = []int{
		33, // outbound, completed: queued to completed with durations and SIP code
		13, // inbound <Dial>, recorded: Dial action, two recording callbacks
		3,  // inbound <Dial>, no answer: a child leg, Event Streams
		28, // outbound, completed, callbacks sent as GET (with retries)
		29, // outbound, a CallStatus the ledger does not know, Event Streams
		24, // the caller hangs up while the <Dial> rings: canceled
		8,  // outbound, busy
		34, // a child known only from its parent's Dial action
		27, // signed requests without a CallSid: quarantined
		6,  // outbound, in progress: hung up below
		16, // outbound, in progress: a refused hang-up, then reconciled
	}
	storedSeqs = []int{
		127,    // one Event Streams delivery of two CloudEvents
		11, 14, // outbound, initiated and ringing: hung up below (canceled)
	}
)

// The accounts of the capture corpus, with REST credentials for the fake.
var storedAccounts = []rest.Account{
	{AccountSid: "ACf42e06a462aa0c13b95dd4c7a152f73b", AuthToken: "2b6f0c8e4a1d3f5b7c9e0a2d4f6b8c1e"},
	{AccountSid: "AC6d9126624276254e46e24386bb76fe7d", AuthToken: "9e7c5a3f1d0b2e4c6a8f0d1b3e5c7a9f"},
}

// writer is this version's write path into a fresh Pebble event store.
type writer struct {
	t      *testing.T
	ctx    context.Context
	events *pebblestore.Store
	// keys seals the personal data of what is written (docs/PRIVACY.md);
	// its directory is kept with the generation (storedKeysDir).
	keys     *keystore.Embedded
	keysDir  string
	personal *seal.Events
	calls    *callstore.Store
	fake     *resttest.Fake
	rest     *rest.Client
	cmd      *command.Server
	now      time.Time         // the server clock; each reading advances it
	notes    map[string]string // event ID → what wrote it
}

func newWriter(t *testing.T) *writer {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	events, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	keysDir := t.TempDir()
	keys, err := keystore.Open(keysDir, corpusKEK(t), keystore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	calls, err := callstore.Open(t.TempDir(), callstore.Options{Logger: quiet, Personal: seal.NewEvents(keys)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { calls.Close() })
	w := &writer{
		t: t, ctx: t.Context(), events: events, calls: calls,
		keys: keys, keysDir: keysDir, personal: seal.NewEvents(keys),
		fake:  resttest.New(t, storedAccounts...),
		now:   time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		notes: map[string]string{},
	}
	if w.rest, err = rest.New(rest.Config{Accounts: storedAccounts, Transport: w.fake.Transport()}); err != nil {
		t.Fatal(err)
	}
	if w.cmd, err = command.New(command.Config{Store: events, Calls: calls, Twilio: w.rest, Logger: quiet, Now: w.clock, Personal: w.personal}); err != nil {
		t.Fatal(err)
	}
	return w
}

// clock advances a quarter second a reading.
func (w *writer) clock() time.Time {
	w.now = w.now.Add(250 * time.Millisecond)
	return w.now
}

// at sets the server clock (a quarter second before t: the next reading
// is t).
func (w *writer) at(t time.Time) { w.now = t.Add(-250 * time.Millisecond) }

func date(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// append stores events in their streams, as the webhook and the
// reconciler do (any expected state; a retry is a no-op; personal data
// sealed), and notes what wrote each new one.
func (w *writer) append(note string, stream string, evs ...*callledgerv1.Event) {
	w.t.Helper()
	records := make([]eventstore.EventData, 0, len(evs))
	for _, ev := range evs {
		ev, err := w.personal.Seal(w.ctx, ev)
		if err != nil {
			w.t.Fatalf("%s: %v", note, err)
		}
		rec, err := eventcodec.Encode(ev)
		if err != nil {
			w.t.Fatalf("%s: %v", note, err)
		}
		records = append(records, rec)
	}
	res, err := w.events.Append(w.ctx, stream, eventstore.Any(), records...)
	if err != nil {
		w.t.Fatalf("%s: %v", note, err)
	}
	for _, rec := range records {
		if !slices.Contains(res.Duplicates, rec.ID) {
			w.noteOnce(rec.ID.String(), note)
		}
	}
}

func (w *writer) noteOnce(id, note string) {
	if _, ok := w.notes[id]; !ok {
		w.notes[id] = note
	}
}

// webhook derives a signed request as the webhook handler does and stores
// its events, one append per stream. The request arrives 400 ms after the
// latest time Twilio reports in it, or at the next tick of the clock when
// it reports none.
func (w *writer) webhook(note string, kind twilio.Kind, method, uri, contentType, body string, header http.Header) {
	w.t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		w.t.Fatal(err)
	}
	if header == nil {
		header = http.Header{"Content-Type": {contentType}, "User-Agent": {"TwilioProxy/1.1"}, "X-Twilio-Signature": {twilio.Sign(corpus.Token, corpus.PublicURL+uri, formOf(method, contentType, body))}}
	}
	req := &twilio.Request{
		Method: method, URL: corpus.PublicURL + uri, RawQuery: u.RawQuery, ContentType: contentType,
		Header: header, Body: []byte(body), RemoteAddr: "203.0.113.7:40000",
	}
	var reported time.Time
	for _, d := range twilio.Derive(kind, req) {
		if rep := d.Event.GetReportedAt(); rep != nil && rep.AsTime().After(reported) {
			reported = rep.AsTime()
		}
	}
	if !reported.IsZero() {
		w.at(reported.Add(400 * time.Millisecond))
	}
	req.ReceivedAt = w.clock()
	ds := twilio.Derive(kind, req)
	for i := 0; i < len(ds); {
		j := i + 1
		for j < len(ds) && ds[j].Stream == ds[i].Stream {
			j++
		}
		evs := make([]*callledgerv1.Event, 0, j-i)
		for _, d := range ds[i:j] {
			evs = append(evs, d.Event)
		}
		w.append(note, ds[i].Stream, evs...)
		i = j
	}
}

// formOf is the body a form POST is signed with (a GET or JSON body: none).
func formOf(method, contentType, body string) []byte {
	if method != http.MethodPost || !strings.HasPrefix(contentType, "application/x-www-form-urlencoded") {
		return nil
	}
	return []byte(body)
}

// project applies everything stored so far to the call store, which the
// command service reads.
func (w *writer) project() {
	w.t.Helper()
	recs, err := w.events.ReadAll(w.ctx, eventstore.Start, 1<<20)
	if err != nil {
		w.t.Fatal(err)
	}
	head, err := w.events.Head(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.calls.Apply(w.ctx, eventstore.Batch{Events: recs, Checkpoint: head}); err != nil {
		w.t.Fatal(err)
	}
}

// hangup asks the command service to hang up sid and notes the events it
// stored.
func (w *writer) hangup(note, sid, requestID string, endCall bool) {
	w.t.Helper()
	w.project()
	before, err := w.events.Head(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.cmd.RequestHangup(w.ctx, &callledgerv1.RequestHangupRequest{
		CallSid: sid, RequestId: requestID, RequestedBy: "ops@example.com", EndCall: endCall,
	}); err != nil {
		w.t.Fatalf("%s: %v", note, err)
	}
	recs, err := w.events.ReadAll(w.ctx, before, 16)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, rec := range recs {
		w.noteOnce(rec.ID.String(), note)
	}
}

// reconcile reads sid from Twilio as the reconciler does: the Call
// resource, its children once it has ended, or a 404.
func (w *writer) reconcile(note, account, sid string) {
	w.t.Helper()
	call, err := w.rest.FetchCall(w.ctx, account, sid)
	if re := (*rest.Error)(nil); errors.As(err, &re) && re.NotFound() {
		ev := rest.NotFound(account, sid, w.clock())
		w.append(note+": Twilio answered 404", eventcodec.CallStream(sid), ev)
		return
	}
	if err != nil {
		w.t.Fatalf("%s: %v", note, err)
	}
	ev := rest.Reconciled(call, w.clock())
	w.append(note, eventcodec.CallStream(sid), ev)
	if !callstate.IsTerminal(ev.GetCallReconciled().GetStatus()) {
		return
	}
	kids, err := w.rest.ListChildCalls(w.ctx, account, sid)
	if err != nil {
		w.t.Fatalf("%s: children: %v", note, err)
	}
	for i := range kids {
		kid := rest.Reconciled(&kids[i], w.clock())
		w.append(note+": a child leg, listed once the parent ended", eventcodec.CallStream(kid.GetCallSid()), kid)
	}
}

// formBody encodes name/value pairs in the order given, as Twilio sends
// them.
func formBody(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(pairs[i]) + "=" + url.QueryEscape(pairs[i+1]))
	}
	return b.String()
}

// newCallbacks writes the callbacks the second generation learned to
// read: answering-machine detection (its route, the status route, Event
// Streams), conference callbacks (their route, the status route, and a
// malformed ConferenceSid), transcriptions, Voice Insights summaries and
// call events, another voice event naming a call, the status callback
// fields added (errors, caller name, STIR, SIP Call-ID, queue time), a
// voicemail known only from its recording, and a child leg whose final
// callback never came.
func (w *writer) newCallbacks() {
	const (
		form       = "application/x-www-form-urlencoded"
		account    = "ACf42e06a462aa0c13b95dd4c7a152f73b"
		completed  = "CAc088e8a85c1fb7af418617ca34e416b5" // tree 33, outbound, completed
		answered   = "CAf582e797b5f92936564178e3fcd8b065" // tree 6, outbound, in progress
		getCall    = "CAd45c97f42881cdd16aba658ed77c464f" // tree 28
		dialParent = "CA3d6d6a91b4e8375767af8ac36c1246d1" // tree 13, recorded <Dial>
		recording  = "REb0f28e3f8bebf8a406ec9922a07da8af"
		conference = "CF7a1c3e5b9d0f2a4c6e8b1d3f5a7c9e0b"
		customer   = "CA5e7a9c1b3d5f7e9a0c2b4d6f8a1c3e5d"
		failed     = "CA9b1d3f5a7c9e0b2d4f6a8c1e3b5d7f9a"
		voicemail  = "CA1f3e5d7c9b0a2f4e6d8c1b3a5f7e9d0c"
		parent     = "CA2c4e6a8b0d1f3e5c7a9b2d4f6e8a0c1b"
		child      = "CA4a6c8e0b2d3f5a7c9e1b3d5f7a9c0e2d"
	)
	ts := func(s string) string { return date(s).Format("Mon, 2 Jan 2006 15:04:05 -0700") }
	post := func(note string, kind twilio.Kind, body string) {
		w.webhook(note, kind, http.MethodPost, kind.Path(), form, body, nil)
	}
	events := func(note, body string) {
		w.webhook(note, twilio.KindEvents, http.MethodPost, "/twilio/events?bodySHA256="+twilio.BodySHA256([]byte(body)), "application/json", body, nil)
	}

	// Answering-machine detection, on each of its three channels.
	post("an asynchronous AMD callback on its route", twilio.KindAMD, formBody(
		"AccountSid", account, "CallSid", completed, "AnsweredBy", "machine_end_beep", "MachineDetectionDuration", "4210"))
	post("an asynchronous AMD callback pointed at the status route", twilio.KindStatus, formBody(
		"AccountSid", account, "CallSid", answered, "AnsweredBy", "human", "MachineDetectionDuration", "1930"))
	w.at(date("2026-03-01T05:08:40Z"))
	events("an Event Streams amd.detected event", `[{"specversion":"1.0","type":"com.twilio.voice.status-callback.amd.detected",`+
		`"source":"/2010-04-01/Accounts/`+account+`/Calls/`+getCall+`.json","id":"EZ3c5e7a9b1d3f5e7c9a0b2d4f6e8a1c3d",`+
		`"dataschema":"https://events-schemas.twilio.com/Voice.WebhookEvent/2","datacontenttype":"application/json","time":"2026-03-01T05:08:39.512Z",`+
		`"data":{"sid":"`+getCall+`","timestamp":"2026-03-01T05:08:39.401Z","request":{"method":"POST","url":"https://hooks.example.com/amd",`+
		`"parameters":{"AccountSid":"`+account+`","CallSid":"`+getCall+`","AnsweredBy":"machine_start","MachineDetectionDuration":"2540"}}}}]`)

	// A failed call with the fields the second generation reads.
	post("a status callback of a failed call: error, caller name, STIR, SIP Call-ID, queue time", twilio.KindStatus, formBody(
		"AccountSid", account, "CallSid", failed, "CallStatus", "initiated", "Direction", "outbound-api", "From", "+14155550142", "To", "+12125550190",
		"CallerName", "ACME CORP", "ForwardedFrom", "+14155550100", "StirVerstat", "TN-Validation-Passed-A", "StirStatus", "A",
		"SipCallId", "7d1c9e0f@203.0.113.9", "QueueTime", "240", "SequenceNumber", "0", "Timestamp", ts("2026-03-30T09:00:00Z")))
	post("the failed call's final callback, with ErrorCode and ErrorMessage", twilio.KindStatus, formBody(
		"AccountSid", account, "CallSid", failed, "CallStatus", "failed", "Direction", "outbound-api", "From", "+14155550142", "To", "+12125550190",
		"ErrorCode", "13224", "ErrorMessage", "Dial: Twilio does not support calling this number or the number is invalid", "SipResponseCode", "404",
		"CallDuration", "0", "SequenceNumber", "1", "Timestamp", ts("2026-03-30T09:00:02Z")))

	// A conference: an answered call and a customer, the customer held,
	// the answered call muted, the customer hanging up, the end.
	conf := func(note string, kind twilio.Kind, at string, pairs ...string) {
		post(note, kind, formBody(append([]string{"AccountSid", account, "ConferenceSid", conference, "FriendlyName", "support-42", "Timestamp", ts(at)}, pairs...)...))
	}
	conf("conference-start", twilio.KindConference, "2026-03-29T18:12:00Z", "StatusCallbackEvent", "conference-start", "SequenceNumber", "1")
	conf("participant-join of the agent (the answered call)", twilio.KindConference, "2026-03-29T18:12:00Z",
		"StatusCallbackEvent", "participant-join", "CallSid", answered, "ParticipantLabel", "agent", "Hold", "false", "Muted", "false", "Coaching", "false",
		"EndConferenceOnExit", "true", "StartConferenceOnEnter", "true", "SequenceNumber", "2")
	conf("participant-join of the customer, known from nothing else", twilio.KindConference, "2026-03-29T18:12:03Z",
		"StatusCallbackEvent", "participant-join", "CallSid", customer, "ParticipantLabel", "customer", "Hold", "false", "Muted", "false", "Coaching", "false", "SequenceNumber", "3")
	conf("participant-hold of the customer", twilio.KindConference, "2026-03-29T18:12:30Z",
		"StatusCallbackEvent", "participant-hold", "CallSid", customer, "ParticipantLabel", "customer", "Hold", "true", "Muted", "false", "Coaching", "false", "SequenceNumber", "4")
	conf("participant-unhold of the customer", twilio.KindConference, "2026-03-29T18:12:30Z",
		"StatusCallbackEvent", "participant-unhold", "CallSid", customer, "ParticipantLabel", "customer", "Hold", "false", "Muted", "false", "Coaching", "false", "SequenceNumber", "5")
	conf("participant-mute of the agent, pointed at the status route", twilio.KindStatus, "2026-03-29T18:12:40Z",
		"StatusCallbackEvent", "participant-mute", "CallSid", answered, "ParticipantLabel", "agent", "Hold", "false", "Muted", "true", "Coaching", "false", "SequenceNumber", "6")
	conf("participant-leave of the customer, who hung up", twilio.KindConference, "2026-03-29T18:13:10Z",
		"StatusCallbackEvent", "participant-leave", "CallSid", customer, "ParticipantLabel", "customer", "ParticipantCallStatus", "completed",
		"ReasonParticipantLeft", "participant_hung_up", "SequenceNumber", "7")
	conf("conference-end", twilio.KindConference, "2026-03-29T18:13:12Z", "StatusCallbackEvent", "conference-end",
		"CallSidEndingConference", answered, "ParticipantLabelEndingConference", "agent", "ReasonConferenceEnded", "participant-with-end-conference-on-exit-left", "SequenceNumber", "8")
	post("a conference callback whose ConferenceSid is not a ConferenceSid: quarantined", twilio.KindConference, formBody(
		"AccountSid", account, "ConferenceSid", "CF1", "StatusCallbackEvent", "conference-start"))

	// A transcription of the recorded <Dial>'s recording.
	post("a transcription callback on the recording route", twilio.KindRecording, formBody(
		"AccountSid", account, "CallSid", dialParent, "RecordingSid", recording, "RecordingUrl", "https://api.twilio.com/2010-04-01/Accounts/"+account+"/Recordings/"+recording,
		"TranscriptionSid", "TR6e8a0c2b4d6f8e0a1c3b5d7f9a2c4e6b", "TranscriptionStatus", "completed", "TranscriptionType", "fast",
		"TranscriptionUrl", "https://api.twilio.com/2010-04-01/Accounts/"+account+"/Recordings/"+recording+"/Transcriptions/TR6e8a0c2b4d6f8e0a1c3b5d7f9a2c4e6b",
		"TranscriptionText", "Hi, this is a test of the support line."))

	// A voicemail: a call known only from its recording callback.
	post("a voicemail's recording callback, the call's only callback", twilio.KindRecording, formBody(
		"AccountSid", account, "CallSid", voicemail, "RecordingSid", "RE8c0e2a4b6d8f0c1e3a5b7d9f1c3e5a7b", "RecordingStatus", "completed",
		"RecordingDuration", "17", "RecordingChannels", "1", "RecordingSource", "RecordVerb", "RecordingTrack", "inbound", "ErrorCode", "0",
		"RecordingStartTime", ts("2026-03-30T11:00:00Z")))

	// Voice Insights: summaries of the completed call, a gateway event of
	// the answered one, and another voice event naming a call.
	summary := func(state, sum string) string {
		data := `{"call_sid":"` + completed + `","account_sid":"` + account + `","start_time":"2026-03-26T15:57:53Z","end_time":"2026-03-26T16:01:53Z",` +
			`"duration":240,"connect_duration":227,"call_type":"carrier","call_state":"completed","processing_state":"` + state + `",` +
			`"tags":["high_jitter"],"properties":{"disconnected_by":"callee","last_sip_response_num":200,"q850_cause":16,"direction":"outbound_api"}}`
		return `{"specversion":"1.0","type":"com.twilio.voice.insights.call-summary.` + sum + `","source":"/v1/Voice/` + completed + `/Summary",` +
			`"id":"EZ` + map[string]string{"partial": "5a7c9e1b3d5f7a9c0e2b4d6f8a1c3e5d", "complete": "7c9e1b3d5f7a9c0e2b4d6f8a1c3e5d7f"}[sum] + `",` +
			`"dataschema":"https://events-schemas.twilio.com/VoiceInsights.CallSummary/1","datacontenttype":"application/json","time":"2026-03-26T16:` +
			map[string]string{"partial": "10", "complete": "31"}[sum] + `:00.000Z","data":` + strconv.Quote(data) + `}`
	}
	w.at(date("2026-03-26T16:31:01Z"))
	events("Voice Insights call summaries, partial and complete, in one delivery", "["+summary("partial", "partial")+","+summary("complete", "complete")+"]")
	events("a Voice Insights gateway call event and a conference participant API event, both naming calls",
		`[{"specversion":"1.0","type":"com.twilio.voice.insights.call-event.gateway","source":"/v1/Voice/`+answered+`/Events","id":"EZ9e1b3d5f7a9c0e2b4d6f8a1c3e5d7f9a",`+
			`"dataschema":"https://events-schemas.twilio.com/VoiceInsights.CallEvent/3","datacontenttype":"application/json","time":"2026-03-29T18:11:14.300Z",`+
			`"data":{"timestamp":"2026-03-29T18:11:14.201Z","call_sid":"`+answered+`","account_sid":"`+account+`","edge":"carrier_edge","name":"answered","group":"call_progress","level":"INFO"}},`+
			`{"specversion":"1.0","type":"com.twilio.voice.api-request.conference-participant.created","source":"/2010-04-01/Accounts/`+account+`/Conferences/`+conference+`/Participants.json",`+
			`"id":"EZb3d5f7a9c0e2b4d6f8a1c3e5d7f9a1c3","dataschema":"https://events-schemas.twilio.com/Voice.WebhookEvent/2","datacontenttype":"application/json","time":"2026-03-29T18:12:02.000Z",`+
			`"data":{"sid":"`+customer+`","request":{"method":"POST","url":"https://hooks.example.com/participant","parameters":{"AccountSid":"`+account+`","CallSid":"`+customer+`"}}}}]`)

	// A <Dial> child whose final callback never came: it shows as ended
	// once its parent does.
	status := func(note, sid, st, at string, pairs ...string) {
		post(note, twilio.KindStatus, formBody(append([]string{"AccountSid", account, "CallSid", sid, "CallStatus", st, "Timestamp", ts(at)}, pairs...)...))
	}
	status("an inbound call that dials a child", parent, "in-progress", "2026-03-30T12:00:00Z", "Direction", "inbound", "SequenceNumber", "0")
	status("the child answers; its completed callback will be lost", child, "in-progress", "2026-03-30T12:00:04Z",
		"Direction", "outbound-dial", "ParentCallSid", parent, "SequenceNumber", "2")
	status("the parent completes", parent, "completed", "2026-03-30T12:03:00Z", "Direction", "inbound", "CallDuration", "180", "SequenceNumber", "1")
}

// erasures erases, through the erasure use case over a real key store,
// a call's tree (the failed call) and a number (the callee of the
// answered call, which also took part in a conference).
func (w *writer) erasures() {
	w.t.Helper()
	w.project()
	journal, _, err := erasure.OpenJournal(filepath.Join(w.t.TempDir(), "erasures.jsonl"))
	if err != nil {
		w.t.Fatal(err)
	}
	defer journal.Close()
	ids := []string{"0f5a9c3e-2b7d-4e1a-8c6f-9d0b2e4a6c81", "7b3e1d9f-5a2c-4f8e-b0d6-1c3a5e7f9b02"}
	svc, err := erasure.New(erasure.Config{
		Log: w.events, Keys: w.keys, ReadModel: projecting{w.calls, w}, Journal: journal, Now: w.clock,
		NewID: func() string { id := ids[0]; ids = ids[1:]; return id },
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.at(date("2026-03-31T09:00:00Z"))
	for _, c := range []struct {
		note string
		req  erasure.Request
	}{
		{"an erasure of a call's tree (callledger erase --call)", erasure.Request{CallSid: "CA9b1d3f5a7c9e0b2d4f6a8c1e3b5d7f9a", By: "dpo@example.com"}},
		{"an erasure of a number (callledger erase --number)", erasure.Request{Number: "+1 303 555 0121", By: "dpo@example.com"}},
	} {
		before, err := w.events.Head(w.ctx)
		if err != nil {
			w.t.Fatal(err)
		}
		res, err := svc.Erase(w.ctx, c.req)
		if err != nil || res.ID == "" {
			w.t.Fatalf("%s: %+v, %v", c.note, res, err)
		}
		recs, err := w.events.ReadAll(w.ctx, before, 16)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, rec := range recs {
			w.noteOnce(rec.ID.String(), c.note)
		}
		w.project()
	}
}

// projecting is the writer's read model as an erasure waits on it: it
// applies what the log holds, as the live projection would.
type projecting struct {
	*callstore.Store
	w *writer
}

func (p projecting) WaitFor(ctx context.Context, pos eventstore.Position) error {
	p.w.project()
	return p.Store.WaitFor(ctx, pos)
}

// corpusKEK is the key-encryption key of the key stores kept with the
// generations (storedKeysDir): they protect made-up numbers only.
func corpusKEK(t *testing.T) keystore.KEK {
	t.Helper()
	kek, err := keystore.ParseKEK([]byte("Y2FsbGxlZGdlciBzdG9yZWQtZXZlbnQgY29ycHVzIGs="))
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// storedRecord is one stored event and what wrote it.
type storedRecord struct {
	rec  eventstore.RecordedEvent
	note string
}

// writeStoredEvents writes the corpus with this version's write paths and
// returns what the event store holds, in log order, and the directory of
// the key store that sealed it (closed).
func writeStoredEvents(t *testing.T) ([]storedRecord, string) {
	t.Helper()
	w := newWriter(t)
	reqs, err := corpus.Requests()
	if err != nil {
		t.Fatal(err)
	}
	last := map[int]time.Time{} // tree → when its latest request arrived
	for _, r := range reqs {
		if !slices.Contains(storedTrees, r.Tree) && !slices.Contains(storedSeqs, r.Seq) {
			continue
		}
		if t, ok := last[r.Tree]; ok {
			w.at(t.Add(time.Second)) // unless the request reports its own time
		}
		if r.Kind == "forged" {
			t.Fatalf("seq %d is forged: the ledger stores only signed requests", r.Seq)
		}
		kind, ok := twilio.KindOfPath(r.Path)
		if !ok {
			t.Fatalf("seq %d: unknown path %q", r.Seq, r.Path)
		}
		h := http.Header{}
		for k, v := range r.Headers {
			h.Set(k, v)
		}
		note := fmt.Sprintf("capture corpus seq %d (tree %d, %s): %s %s", r.Seq, r.Tree, r.Scenario, r.Method, r.Path)
		if r.DupOf != nil {
			note += fmt.Sprintf(", a retry of seq %d", *r.DupOf)
		}
		w.webhook(note, kind, r.Method, r.URI(), r.ContentType, r.Body, h)
		last[r.Tree] = w.now
	}

	// Signed requests that name no usable call.
	const form = "application/x-www-form-urlencoded"
	w.at(date("2026-03-30T10:15:02Z"))
	w.webhook("a status callback whose CallSid is not a CallSid: quarantined", twilio.KindStatus, http.MethodPost,
		"/twilio/voice/status", form, "AccountSid=ACf42e06a462aa0c13b95dd4c7a152f73b&CallSid=CA123&CallStatus=ringing&Timestamp=Mon%2C+30+Mar+2026+10%3A15%3A01+%2B0000", nil)
	w.webhook("a Dial action whose body does not parse: quarantined", twilio.KindDial, http.MethodPost,
		"/twilio/voice/dial", form, "CallSid=CA0d2f8e6b4a1c3e5f7a9b0c2d4e6f8a1b&DialCallStatus=%zz", nil)
	w.webhook("a recording callback of a conference (no CallSid): quarantined", twilio.KindRecording, http.MethodPost,
		"/twilio/voice/recording", form, "AccountSid=ACf42e06a462aa0c13b95dd4c7a152f73b&ConferenceSid=CF3b1d5e7f9a0c2e4f6a8b0d1c3e5f7a9b&RecordingSid=RE5c7e9a1b3d5f7a9c0e2b4d6f8a0c1e3d&RecordingStatus=completed&RecordingDuration=41", nil)
	messaging := `[{"specversion":"1.0","type":"com.twilio.messaging.message.delivered","source":"/2010-04-01/Accounts/ACf42e06a462aa0c13b95dd4c7a152f73b/Messages/SM1f3a5c7e9b0d2f4a6c8e0b1d3f5a7c9e.json","id":"EZ6a8c0e2f4b6d8a0c1e3f5a7b9d0c2e4f","dataschema":"https://events-schemas.twilio.com/Messaging.MessageStatus/5","datacontenttype":"application/json","time":"2026-03-30T10:15:04.118Z","data":{"messageSid":"SM1f3a5c7e9b0d2f4a6c8e0b1d3f5a7c9e","messageStatus":"DELIVERED"}}]`
	w.webhook("an Event Streams delivery of a messaging event: quarantined", twilio.KindEvents, http.MethodPost,
		"/twilio/events?bodySHA256="+twilio.BodySHA256([]byte(messaging)), "application/json", messaging, nil)
	truncated := `[{"specversion":"1.0","type":"com.twilio.voice.status-callback.call.ringing","id":"EZ0c2e4a6b8d0f1a3c5e7b9d1f3a5c7e9b"`
	w.webhook("an Event Streams delivery cut short (not JSON): quarantined", twilio.KindEvents, http.MethodPost,
		"/twilio/events?bodySHA256="+twilio.BodySHA256([]byte(truncated)), "application/json", truncated, nil)

	w.newCallbacks()

	// Hang-ups through the command service, of calls the capture corpus
	// left in progress, ringing or ended.
	const (
		account      = "ACf42e06a462aa0c13b95dd4c7a152f73b"
		otherAccount = "AC6d9126624276254e46e24386bb76fe7d"
		completed    = "CAc088e8a85c1fb7af418617ca34e416b5" // tree 33
		answered     = "CAf582e797b5f92936564178e3fcd8b065" // tree 6
		ringing      = "CAa21286f0df11069b4cf21868b0f98492" // seqs 11, 14
		busy         = "CA67911834b2a16fa858158831aab6d4e9" // tree 8
		unavailable  = "CA2d3f0297f713753d42af340f9d04cb0f" // tree 16
		unknown      = "CA7e1b3d5f7a9c0e2b4d6f8a0c1e3d5f7a" // never reported
	)
	w.at(date("2026-03-26T16:05:12Z"))
	w.hangup("a hang-up recorded for the audit trail only (end_call false)", completed, "audit-2026-03-26-0042", false)
	w.fake.Put(resttest.Call{Sid: answered, AccountSid: account, Status: "in-progress", Direction: "outbound-api",
		From: "+13125550193", To: "+13035550121", StartTime: date("2026-03-29T18:11:14Z"), DateCreated: date("2026-03-29T18:10:57Z")})
	w.at(date("2026-03-29T18:13:40Z"))
	w.hangup("a hang-up of an answered call: Twilio accepts Status=completed", answered, "7c1e9a52-3b4d-4f6e-8a90-b1c2d3e4f5a6", true)
	w.fake.Put(resttest.Call{Sid: ringing, AccountSid: otherAccount, Status: "ringing", Direction: "outbound-api",
		From: "+14155550199", To: "+15125550184", DateCreated: date("2026-03-28T19:58:32Z")})
	w.at(date("2026-03-28T19:58:41Z"))
	w.hangup("a hang-up of a ringing call: Twilio accepts Status=canceled", ringing, "0b8f4c2e-6d1a-4e3b-9c5f-7a2d8e4b1c6f", true)
	w.fake.Put(resttest.Call{Sid: busy, AccountSid: account, Status: "busy", Direction: "outbound-api",
		From: "+16285550194", To: "+15125550112", Duration: "0", DateCreated: date("2026-03-19T19:37:15Z")})
	w.fake.Fail(busy, resttest.Fault{Status: http.StatusBadRequest, Code: 21220})
	w.at(date("2026-03-19T19:37:22Z"))
	w.hangup("a hang-up of a call that has just ended: Twilio refuses (400, 21220)", busy, "c5a9e3d7-4f1b-4c2a-8e6d-9b0f2a4c6e8d", true)
	w.fake.Put(resttest.Call{Sid: unavailable, AccountSid: account, Status: "in-progress", Direction: "outbound-api",
		From: "+13125550198", To: "+12125550178", StartTime: date("2026-03-10T12:03:50Z"), DateCreated: date("2026-03-10T12:03:37Z")})
	w.fake.Fail(unavailable, resttest.Fault{Status: http.StatusServiceUnavailable, Code: 20503})
	w.at(date("2026-03-10T12:07:02Z"))
	w.hangup("a hang-up while Twilio is unavailable (503, 20503)", unavailable, "e3a7d1f9-2c4b-4a8e-b6d0-5f1c9e7a3b2d", true)
	w.at(date("2026-03-10T12:07:09Z"))
	w.hangup("the client's retry of that hang-up, which Twilio accepts", unavailable, "e3a7d1f9-2c4b-4a8e-b6d0-5f1c9e7a3b2d", true)
	w.at(date("2026-03-30T10:20:00Z"))
	w.hangup("a hang-up of a call Twilio does not know (404, 20404)", unknown, "5d2b8f4a-1e7c-4b3d-a9f6-0c8e2a4d6b1f", true)

	// The reconciler's reads of Twilio's Call resources.
	w.fake.Put(resttest.Call{Sid: unavailable, AccountSid: account, Status: "completed", Direction: "outbound-api",
		From: "+13125550198", To: "+12125550178", AnsweredBy: "human", Duration: "199",
		StartTime: date("2026-03-10T12:03:50Z"), EndTime: date("2026-03-10T12:07:09Z"),
		DateCreated: date("2026-03-10T12:03:37Z"), Updated: date("2026-03-10T12:07:10Z")})
	w.at(date("2026-03-10T12:12:10Z"))
	w.reconcile("a read of a hung-up call whose completed callback never came", account, unavailable)
	w.fake.Put(resttest.Call{Sid: answered, AccountSid: account, Status: "in-progress", Direction: "outbound-api",
		From: "+13125550193", To: "+13035550121", StartTime: date("2026-03-29T18:11:14Z"),
		DateCreated: date("2026-03-29T18:10:57Z"), Updated: date("2026-03-29T18:11:14Z")})
	w.at(date("2026-03-29T18:13:41Z"))
	w.reconcile("a read of a call still in progress, just after its hang-up was sent", account, answered)
	const dialParent, dialChild = "CA237be4912f7dd6b12047c7ad798c50ca", "CA617a3082904c476f6d86589e0768edb4" // tree 3
	w.fake.Put(resttest.Call{Sid: dialParent, AccountSid: account, Status: "completed", Direction: "inbound",
		From: "+16175550176", To: "+14155550194", Duration: "61",
		StartTime: date("2026-03-01T04:07:48Z"), EndTime: date("2026-03-01T04:08:49Z"),
		DateCreated: date("2026-03-01T04:07:48Z"), Updated: date("2026-03-01T04:08:50Z")})
	w.fake.Put(resttest.Call{Sid: dialChild, AccountSid: account, ParentCallSid: dialParent, Status: "no-answer", Direction: "outbound-dial",
		From: "+16175550176", To: "sip:agent71@callcenter.sip.twilio.com", Duration: "0",
		DateCreated: date("2026-03-01T04:07:50Z"), Updated: date("2026-03-01T04:08:16Z")})
	w.at(date("2026-03-01T04:14:00Z"))
	w.reconcile("a read of an ended <Dial> parent", account, dialParent)
	w.at(date("2026-03-06T00:57:00Z"))
	w.reconcile("a read of the child leg tree 34 knows only from its parent's Dial action", otherAccount, "CA355cc845a15fcc72a1b89dcca41f85ec")

	w.erasures()

	head, err := w.events.Head(w.ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := w.events.ReadAll(w.ctx, eventstore.Start, int(head))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]storedRecord, len(recs))
	for i, rec := range recs {
		note, ok := w.notes[rec.ID.String()]
		if !ok {
			t.Fatalf("stored event %s of %s was not noted", rec.ID, rec.Stream)
		}
		out[i] = storedRecord{rec: rec, note: note}
	}
	if err := w.keys.Close(); err != nil {
		t.Fatal(err)
	}
	return out, w.keysDir
}
