package e2e_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/twilio"
)

// signedCallback is one request to the stack.
type signedCallback struct {
	name, path, contentType, body string
}

func formCallback(path string, pairs ...string) signedCallback {
	v := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		v.Add(pairs[i], pairs[i+1])
	}
	return signedCallback{name: path + " " + v.Get("StatusCallbackEvent") + v.Get("CallStatus") + v.Get("AnsweredBy"), path: path,
		contentType: "application/x-www-form-urlencoded", body: v.Encode()}
}

// postSigned sends cb signed as Twilio signs it and fails t unless it is
// accepted.
func (s *stack) postSigned(t *testing.T, cb signedCallback) {
	t.Helper()
	uri, signed := cb.path, []byte(cb.body)
	if cb.contentType == "application/json" {
		uri += "?bodySHA256=" + twilio.BodySHA256([]byte(cb.body))
		signed = nil
	}
	req, err := http.NewRequest(http.MethodPost, s.url+uri, strings.NewReader(cb.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", cb.contentType)
	req.Header.Set("X-Twilio-Signature", twilio.Sign(corpus.Token, corpus.PublicURL+uri, signed))
	resp, err := s.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s: HTTP %d", cb.name, resp.StatusCode)
	}
	var pos uint64
	if _, err := fmt.Sscan(resp.Header.Get("Callledger-Position"), &pos); err != nil {
		t.Fatalf("%s: %v", cb.name, err)
	}
	s.mu.Lock()
	s.maxSeen = max(s.maxSeen, eventstore.Position(pos))
	s.mu.Unlock()
}

func tsParam(t time.Time) string { return t.UTC().Format("Mon, 2 Jan 2006 15:04:05 -0700") }

// TestVoiceCallbacksEndToEnd sends, signed over HTTP to the server serve
// runs, in a random order and each one to three times: a conference of
// three participants (join, hold, unhold, leave, end), an AMD verdict
// through each of its three channels, a voicemail known only from its
// recording, a <Dial> child whose final signedCallback is lost, two terminal
// reports of which only one has a duration, and a Voice Insights summary.
// Read back over gRPC: the conference view and every participant's
// fields on its call agree, in any order; each AMD verdict is in
// answered_by; the voicemail has its account; the child is ended
// (inferred); the duration stays; the summary is in its call's history.
func TestVoiceCallbacksEndToEnd(t *testing.T) {
	t.Parallel()
	const (
		acct     = "AC0123456789abcdef0123456789abcdef"
		conf     = "CF0123456789abcdef0123456789abcdef"
		agent    = "CA00000000000000000000000000000a01"
		customer = "CA00000000000000000000000000000a02"
		coach    = "CA00000000000000000000000000000a03"
		amdRoute = "CA00000000000000000000000000000b01"
		amdSt    = "CA00000000000000000000000000000b02"
		amdES    = "CA00000000000000000000000000000b03"
		vm       = "CA00000000000000000000000000000c01"
		parent   = "CA00000000000000000000000000000d01"
		child    = "CA00000000000000000000000000000d02"
		twice    = "CA00000000000000000000000000000e01"
	)
	at := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	c := func(event, call string, seq int, sec int, extra ...string) signedCallback {
		return formCallback("/twilio/voice/conference", append([]string{"AccountSid", acct, "ConferenceSid", conf, "FriendlyName", "support",
			"StatusCallbackEvent", event, "CallSid", call, "SequenceNumber", fmt.Sprint(seq), "Timestamp", tsParam(at.Add(time.Duration(sec) * time.Second))}, extra...)...)
	}
	cbs := []signedCallback{
		c("participant-join", customer, 1, 0, "ParticipantLabel", "customer", "Hold", "false", "Muted", "false", "Coaching", "false"),
		c("participant-join", agent, 2, 1, "ParticipantLabel", "agent", "Hold", "false", "Muted", "false", "Coaching", "false"),
		c("participant-join", coach, 3, 2, "ParticipantLabel", "supervisor", "Hold", "false", "Muted", "true", "Coaching", "true", "CallSidToCoach", agent),
		c("participant-hold", customer, 4, 30, "Hold", "true"),
		c("participant-unhold", customer, 5, 30, "Hold", "false"),
		c("participant-leave", coach, 6, 60, "ParticipantCallStatus", "completed", "ReasonParticipantLeft", "participant_hung_up"),
		c("participant-leave", customer, 7, 90, "ParticipantCallStatus", "completed", "ReasonParticipantLeft", "participant_hung_up"),
		formCallback("/twilio/voice/conference", "AccountSid", acct, "ConferenceSid", conf, "StatusCallbackEvent", "conference-end", "SequenceNumber", "8",
			"Timestamp", tsParam(at.Add(91*time.Second)), "ReasonConferenceEnded", "last-participant-left", "CallSidEndingConference", customer),

		formCallback("/twilio/voice/amd", "AccountSid", acct, "CallSid", amdRoute, "AnsweredBy", "machine_end_beep", "MachineDetectionDuration", "4100"),
		formCallback("/twilio/voice/status", "AccountSid", acct, "CallSid", amdSt, "AnsweredBy", "human", "MachineDetectionDuration", "1800"),
		{name: "amd.detected", path: "/twilio/events", contentType: "application/json", body: `[{"specversion":"1.0","type":"com.twilio.voice.status-callback.amd.detected",` +
			`"source":"/2010-04-01/Accounts/` + acct + `/Calls/` + amdES + `.json","id":"EZ00000000000000000000000000000b03","time":"2026-06-01T10:00:05Z",` +
			`"data":{"sid":"` + amdES + `","request":{"method":"POST","url":"https://hooks.example.com/amd","parameters":{"CallSid":"` + amdES + `","AnsweredBy":"machine_start","MachineDetectionDuration":"2600"}}}}]`},

		formCallback("/twilio/voice/recording", "AccountSid", acct, "CallSid", vm, "RecordingSid", "RE00000000000000000000000000000c01", "RecordingStatus", "completed", "RecordingDuration", "12"),

		formCallback("/twilio/voice/status", "AccountSid", acct, "CallSid", parent, "CallStatus", "in-progress", "Direction", "inbound", "Timestamp", tsParam(at)),
		formCallback("/twilio/voice/status", "AccountSid", acct, "CallSid", child, "ParentCallSid", parent, "CallStatus", "in-progress", "Direction", "outbound-dial", "Timestamp", tsParam(at.Add(2*time.Second))),
		formCallback("/twilio/voice/status", "AccountSid", acct, "CallSid", parent, "CallStatus", "completed", "CallDuration", "300", "Direction", "inbound", "Timestamp", tsParam(at.Add(5*time.Minute))),

		formCallback("/twilio/voice/status", "AccountSid", acct, "CallSid", twice, "CallStatus", "completed", "CallDuration", "42", "SequenceNumber", "3", "Timestamp", tsParam(at.Add(time.Minute))),
		formCallback("/twilio/voice/status", "AccountSid", acct, "CallSid", twice, "CallStatus", "completed", "SequenceNumber", "4", "Timestamp", tsParam(at.Add(time.Minute+time.Second))),
		{name: "call summary", path: "/twilio/events", contentType: "application/json", body: `[{"specversion":"1.0","type":"com.twilio.voice.insights.call-summary.complete",` +
			`"source":"/v1/Voice/` + twice + `/Summary","id":"EZ00000000000000000000000000000e01","time":"2026-06-01T10:31:00Z",` +
			`"data":{"call_sid":"` + twice + `","account_sid":"` + acct + `","call_state":"completed","processing_state":"complete","tags":["silence"],` +
			`"properties":{"disconnected_by":"caller","last_sip_response_num":200}}}]`},
	}

	var want *callledgerv1.GetConferenceResponse
	for round := range 3 {
		s := newStack(t)
		var sends []signedCallback
		for _, cb := range cbs {
			for range 1 + rand.IntN(3) {
				sends = append(sends, cb)
			}
		}
		rand.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })
		for _, cb := range sends {
			s.postSigned(t, cb)
		}
		ctx, cancel := context.WithTimeout(context.Background(), failBound)
		defer cancel()

		got, err := s.client.GetConference(ctx, &callledgerv1.GetConferenceRequest{ConferenceSid: conf, MinPosition: uint64(s.seen())})
		if err != nil {
			t.Fatal(err)
		}
		cv := got.GetConference()
		if cv.GetStatus() != callledgerv1.ConferenceStatus_CONFERENCE_STATUS_COMPLETED || cv.GetReasonEnded() != "last-participant-left" || len(cv.GetParticipants()) != 3 || cv.GetEventCount() != 8 {
			t.Errorf("round %d: conference %v", round, cv)
		}
		for i, p := range cv.GetParticipants() {
			if len(got.GetCalls()) != 3 || !proto.Equal(got.GetCalls()[i].GetConferences()[0], p) {
				t.Errorf("round %d: participant %s differs on its call", round, p.GetCallSid())
			}
		}
		byCall := map[string]*callledgerv1.ConferenceParticipant{}
		for _, p := range cv.GetParticipants() {
			byCall[p.GetCallSid()] = p
		}
		if p := byCall[customer]; p.GetHold() || p.GetPresent() || p.GetReasonLeft() != "participant_hung_up" || p.GetLabel() != "customer" {
			t.Errorf("round %d: customer %v", round, p)
		}
		if p := byCall[coach]; !p.GetCoaching() || !p.GetMuted() || p.GetCallSidToCoach() != agent {
			t.Errorf("round %d: supervisor %v", round, p)
		}
		if p := byCall[agent]; p.GetPresent() || p.GetLeftAt() != nil || p.GetJoinedAt() == nil {
			t.Errorf("round %d: agent %v (not present once the conference ended, never left)", round, p)
		}
		// Every order gives the same answer, positions aside.
		got.Position, got.Conference.LastPosition = 0, 0
		for _, call := range got.GetCalls() {
			call.LastPosition = 0
		}
		if want == nil {
			want = got
		} else if !proto.Equal(got, want) {
			t.Errorf("round %d: another order gives another conference:\n%v\nwant\n%v", round, got, want)
		}

		call := func(sid string) *callledgerv1.Call {
			t.Helper()
			resp, err := s.getCall(ctx, sid)
			if err != nil {
				t.Fatalf("%s: %v", sid, err)
			}
			return resp.GetCall()
		}
		for sid, verdict := range map[string]string{amdRoute: "machine_end_beep", amdSt: "human", amdES: "machine_start"} {
			if c := call(sid); c.GetAnsweredBy() != verdict || c.MachineDetectionDurationMs == nil {
				t.Errorf("round %d: %s: answered_by %q (%v), want %q", round, sid, c.GetAnsweredBy(), c.MachineDetectionDurationMs, verdict)
			}
		}
		if c := call(vm); c.GetAccountSid() != acct || len(c.GetRecordings()) != 1 {
			t.Errorf("round %d: voicemail %v", round, c)
		}
		if c := call(child); !c.GetTerminal() || c.GetStatusSource() != callledgerv1.Source_SOURCE_INFERRED || !c.GetEndedAt().AsTime().Equal(at.Add(5*time.Minute)) {
			t.Errorf("round %d: child of an ended parent %v", round, c)
		}
		c := call(twice)
		if c.GetDurationSeconds() != 42 || c.GetInsights().GetDisconnectedBy() != "caller" || !slices.Equal(c.GetInsights().GetTags(), []string{"silence"}) ||
			c.GetStatusSource() != callledgerv1.Source_SOURCE_STATUS_CALLBACK {
			t.Errorf("round %d: two terminal reports and a summary: %v", round, c)
		}
		hist, err := s.client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: twice})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(hist.GetEvents(), func(e *callledgerv1.StoredEvent) bool { return e.GetType() == "CallSummaryReported" }) {
			t.Errorf("round %d: the Voice Insights summary is not in its call's history", round)
		}
		s.projection.checkExactlyOnce(ctx, t, s.events)
	}
}
