package eventcodec_test

import (
	"net/http"
	"testing"
	"time"

	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
)

// The IDs below were computed once and must never change: stored ledgers
// deduplicate redeliveries by them, so a changed kind, canonical form or
// namespace would store every redelivered fact a second time. A failure
// here is a broken storage format, not a test to update.

const pinSid = "CA0123456789abcdef0123456789abcdef"

// TestEventIDKindsArePinned pins the ID of one content under every kind.
func TestEventIDKindsArePinned(t *testing.T) {
	t.Parallel()
	quarantine := func(route string) eventcodec.IDKind {
		return eventcodec.QuarantineIDKind(eventcodec.QuarantineStream(route))
	}
	for _, tc := range []struct {
		kind    eventcodec.IDKind
		content string
		want    string
	}{
		{eventcodec.IDKindStatus, "CallSid=CA1", "f6c12429-9580-5375-95a1-20b9bd50aedc"},
		{eventcodec.IDKindDial, "CallSid=CA1", "f5aececd-fbd9-53db-aca9-17902bb65520"},
		{eventcodec.IDKindRecording, "CallSid=CA1", "c9049b38-0319-5745-b94f-28cae9543058"},
		{eventcodec.IDKindEvents, "EV1", "cda2b99f-654c-5649-86c4-51e0c1029803"},
		{eventcodec.IDKindReconciled, "not-found\x00AC1\x00CA1", "d6f12a47-338f-592f-b697-62de181c59dc"},
		{eventcodec.IDKindHangupRequest, pinSid + "\x00req-1", "ddc726e0-c0f8-5cdf-8411-d27ac226c4f0"},
		{eventcodec.IDKindHangupOutcome, pinSid + "\x00req-1\x00sent", "5019b75a-ab77-5371-ad8d-51b1366211db"},
		{eventcodec.IDKindHangupRequest, "CA00000000000000000000000000000002\x00req-2", "d053714b-573a-522d-a7de-cef242c048ac"},
		{eventcodec.IDKindHangupOutcome, "CA00000000000000000000000000000002\x00req-2\x00failed\x00503\x0020503", "fe1e0601-0eed-588f-86e2-c3547181c712"},
		{quarantine("status"), "raw", "49ad6b54-7708-5c74-a64e-032bdb01e7f4"},
		{quarantine("dial"), "raw", "80f3ddbc-0486-5ca6-b292-c18b788f7781"},
		{quarantine("recording"), "raw", "3036a7fa-b0dd-5430-89de-3654f6fcd409"},
		{quarantine("events"), "raw", "169629df-0cfe-5021-83a6-4095b81e2d46"},
		{quarantine("unknown"), "raw", "413b7688-45a0-5af1-a4a2-5fd46dd18c66"},
		{eventcodec.IDKindAMD, "CallSid=CA1", "d86f4197-b291-533c-9359-140dbcc3270e"},
		{eventcodec.IDKindConference, "CallSid=CA1", "76f9c940-2981-5f5c-829b-3b8a74f0360b"},
		{eventcodec.IDKindCloudEvent, "CallSid=CA1", "ab77ccb1-cfae-550f-8806-d99e53568571"},
		{quarantine("amd"), "raw", "921cd196-2161-5253-968d-02cd29f8d61c"},
		{quarantine("conference"), "raw", "64c3a314-7907-5a76-b6ea-bcdd0aa75246"},
	} {
		if got := eventcodec.EventID(tc.kind, []byte(tc.content)).String(); got != tc.want {
			t.Errorf("EventID(%q, %q) = %s, want %s", tc.kind, tc.content, got, tc.want)
		}
	}
}

// TestProducedEventIDsArePinned pins the IDs the webhook path and the
// reconciler derive from known inputs, through their own code: a changed
// canonical form fails here even when the kinds stay the same. The
// hang-up command's IDs are pinned by its own package's tests, which
// record them through the command.
func TestProducedEventIDsArePinned(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	form := func(kind twilio.Kind, body string) string {
		ds := twilio.Derive(kind, &twilio.Request{
			Method: http.MethodPost, URL: "https://example.com/twilio/voice/" + string(kind),
			ContentType: "application/x-www-form-urlencoded", Body: []byte(body), ReceivedAt: at,
		})
		if len(ds) != 1 {
			t.Fatalf("%s %q: %d events, want 1", kind, body, len(ds))
		}
		return ds[0].Event.GetEventId()
	}
	events := func(body string) string {
		ds := twilio.Derive(twilio.KindEvents, &twilio.Request{
			Method: http.MethodPost, URL: "https://example.com/twilio/events",
			ContentType: "application/json", Body: []byte(body), ReceivedAt: at,
		})
		if len(ds) != 1 {
			t.Fatalf("events %q: %d events, want 1", body, len(ds))
		}
		return ds[0].Event.GetEventId()
	}
	ce := func(id, typ string) string {
		return `[{"specversion":"1.0","type":"` + typ + `","source":"/x","id":"` + id + `","time":"2026-03-10T13:52:49.002Z",` +
			`"data":{"sid":"` + pinSid + `","request":{"method":"POST","url":"https://example.com/s","parameters":{"CallSid":"` + pinSid + `","CallStatus":"ringing"}}}}]`
	}
	str := func(s string) *string { return &s }
	resource := &api.ApiV2010Call{
		Sid: str(pinSid), AccountSid: str("AC0123456789abcdef0123456789abcdef"), Status: str("completed"),
		Direction: str("inbound"), From: str("+14155550100"), To: str("+14155550199"), Duration: str("42"),
		StartTime: str("Wed, 01 Apr 2026 11:59:00 +0000"), EndTime: str("Wed, 01 Apr 2026 11:59:42 +0000"),
	}
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"status callback", form(twilio.KindStatus, "CallSid="+pinSid+"&CallStatus=ringing&SequenceNumber=1"), "8f05519f-41f5-55e5-8c91-41170e0f5a1b"},
		{"Dial action", form(twilio.KindDial, "CallSid="+pinSid+"&DialCallStatus=completed&DialCallSid=CA00000000000000000000000000000001"), "b431db2b-869e-5741-90fc-b6113c869c27"},
		{"recording callback", form(twilio.KindRecording, "CallSid="+pinSid+"&RecordingSid=RE1&RecordingStatus=completed"), "5c02228b-20af-50e2-8fb4-531d35152282"},
		{"Event Streams", events(ce("EV0123456789abcdef0123456789abcdef", "com.twilio.voice.status-callback.call.ringing")), "f6377733-737e-585f-a3d1-cfd0a857856c"},
		{"quarantined status callback", form(twilio.KindStatus, "CallStatus=ringing"), "262ae2a5-e674-57b4-8a83-00891be71ec4"},
		{"quarantined Dial action", form(twilio.KindDial, "CallSid=CA123"), "7f03e52f-d007-5db2-b099-fcec566c41dc"},
		{"quarantined recording callback", form(twilio.KindRecording, "CallSid="), "824453ee-6170-5897-abba-b51dd4acc197"},
		{"quarantined delivery", events("not json"), "39992e4d-b5c0-5e49-b9b9-6be056a8a94d"},
		{"quarantined CloudEvent", events(ce("EV1", "com.twilio.messaging.message.sent")), "54da7c19-91c5-5946-9335-10d2f96d76fc"},
		{"quarantined CloudEvent without id", events(ce("", "com.twilio.voice.status-callback.call.ringing")), "bd8bd5be-e26d-5295-af88-9baef595923c"},
		{"unknown route", form("bogus", "CallSid="+pinSid), "8d54c69b-82d1-50f5-9feb-b2e2334bfd3b"},
		{"AMD callback", form(twilio.KindAMD, "CallSid="+pinSid+"&AnsweredBy=human&MachineDetectionDuration=2100"), "7df93a8a-3c01-59b1-9ae8-7959c569d878"},
		{"conference callback", form(twilio.KindConference, "ConferenceSid=CF0123456789abcdef0123456789abcdef&StatusCallbackEvent=participant-join&CallSid="+pinSid), "0cb35dca-1df9-51aa-a46d-9bbd2460858f"},
		{"Voice Insights call summary", events(`[{"specversion":"1.0","type":"com.twilio.voice.insights.call-summary.complete","source":"/v1/Voice/` + pinSid + `/Summary","id":"EZ0123456789abcdef0123456789abcdef","data":{"call_sid":"` + pinSid + `","call_state":"completed"}}]`), "21fe22c4-64c3-54d5-93ad-1f1bc381ee13"},
		{"reconciled", rest.Reconciled(resource, at).GetEventId(), "168880aa-882d-5be9-a080-455c79a3278a"},
		{"reconciled not found", rest.NotFound("AC0123456789abcdef0123456789abcdef", pinSid, at).GetEventId(), "a2f96343-630f-5cd1-aae9-77a00aa9ddf0"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: event ID %s, want %s", tc.name, tc.got, tc.want)
		}
	}
}
