package callversions_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/twilio"
)

// storedV1 appends the events version 1 wrote (the stored-event corpus's
// first generation, eventcodec/testdata/stored/v1) to log, as they were
// stored: same streams, IDs, types, bytes.
func storedV1(t *testing.T, log *pebblestore.Store) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "eventcodec", "testdata", "stored", "v1", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("stored v1 corpus: %v (%d files)", err, len(paths))
	}
	slices.Sort(paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Stream, Type, ID, Metadata string
			Data                       []byte
		}
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		id, err := uuid.Parse(f.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := log.Append(context.Background(), f.Stream, eventstore.Any(),
			eventstore.EventData{ID: id, Type: f.Type, Data: f.Data, Metadata: []byte(f.Metadata)}); err != nil {
			t.Fatal(err)
		}
	}
}

// asVersion1 derives a form callback as this version does, then gives the
// event the shape derivation 0 (version 1) gave it: a status-route
// callback became a CallStatusReported of its CallSid with the fields of
// the time only, in the call's stream.
func asVersion1(t *testing.T, log *pebblestore.Store, body string, at time.Time) {
	t.Helper()
	req := &twilio.Request{Method: http.MethodPost, URL: "https://hooks.example.com/twilio/voice/status", ContentType: "application/x-www-form-urlencoded",
		Body: []byte(body), ReceivedAt: at}
	ds := twilio.Derive(twilio.KindStatus, req)
	ev := proto.CloneOf(ds[0].Event)
	vals, err := url.ParseQuery(body)
	if err != nil {
		t.Fatal(err)
	}
	sid := vals.Get("CallSid")
	st := ev.GetCallStatusReported()
	if st == nil { // a callback version 1 did not recognize: a status-less report
		st = &callledgerv1.CallStatusReported{AccountSid: vals.Get("AccountSid")}
	}
	old := &callledgerv1.CallStatusReported{Status: st.GetStatus(), StatusRaw: st.GetStatusRaw(), AccountSid: st.GetAccountSid(),
		ParentCallSid: st.GetParentCallSid(), Direction: st.GetDirection(), From: st.GetFrom(), To: st.GetTo(), CallDurationSeconds: st.CallDurationSeconds,
		SipResponseCode: st.SipResponseCode, AnsweredBy: st.GetAnsweredBy(), CallbackSource: st.GetCallbackSource()}
	ev.Body = &callledgerv1.Event_CallStatusReported{CallStatusReported: old}
	ev.CallSid, ev.Source, ev.Derivation = sid, callledgerv1.Source_SOURCE_STATUS_CALLBACK, 0
	var rec eventstore.EventData
	rec, err = eventcodec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := log.Append(context.Background(), eventcodec.CallStream(sid), eventstore.Any(), rec); err != nil {
		t.Fatal(err)
	}
}

// TestVersion2ServesALedgerOfVersion1 opens a ledger that version 1 wrote
// with the read model of version 1, then with code of version 2: the new
// version builds beside the old one from the same events and, once it
// serves, shows what version 2 reads of them: fields version 1 stored but
// did not show (CallbackSource, a recording's ErrorCode), fields only the
// stored requests held (ErrorCode, CallerName: events of derivation 0 are
// derived again from their requests), a conference callback version 1
// filed as a status-less report, and the end of a child whose final
// callback was lost.
func TestVersion2ServesALedgerOfVersion1(t *testing.T) {
	ctx := context.Background()
	log, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	storedV1(t, log)
	const (
		failed = "CA9b1d3f5a7c9e0b2d4f6a8c1e3b5d7f9a"
		agent  = "CAf582e797b5f92936564178e3fcd8b065" // in progress in the v1 corpus
		conf   = "CF7a1c3e5b9d0f2a4c6e8b1d3f5a7c9e0b"
		parent = "CA2c4e6a8b0d1f3e5c7a9b2d4f6e8a0c1b"
		child  = "CA4a6c8e0b2d3f5a7c9e1b3d5f7a9c0e2d"
	)
	at := time.Date(2026, 3, 30, 9, 0, 0, 0, time.UTC)
	asVersion1(t, log, "AccountSid=ACf42e06a462aa0c13b95dd4c7a152f73b&CallSid="+failed+"&CallStatus=failed&ErrorCode=13224&ErrorMessage=invalid+number&CallerName=ACME+CORP&CallDuration=0", at)
	asVersion1(t, log, "AccountSid=ACf42e06a462aa0c13b95dd4c7a152f73b&ConferenceSid="+conf+"&FriendlyName=support&StatusCallbackEvent=participant-join&CallSid="+agent+"&ParticipantLabel=agent&Muted=true", at)
	asVersion1(t, log, "AccountSid=ACf42e06a462aa0c13b95dd4c7a152f73b&CallSid="+parent+"&CallStatus=in-progress&Direction=inbound", at)
	asVersion1(t, log, "AccountSid=ACf42e06a462aa0c13b95dd4c7a152f73b&CallSid="+child+"&CallStatus=in-progress&ParentCallSid="+parent+"&Direction=outbound-dial", at.Add(time.Second))
	asVersion1(t, log, "AccountSid=ACf42e06a462aa0c13b95dd4c7a152f73b&CallSid="+parent+"&CallStatus=completed&CallDuration=60&Direction=inbound", at.Add(time.Minute))

	root := filepath.Join(t.TempDir(), "callstate")
	v1, err := callversions.Open(ctx, callversions.Config{Root: root, Log: log, Version: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	waitHead(t, v1, log)
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}

	v2, err := callversions.Open(ctx, callversions.Config{Root: root, Log: log, Version: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	select {
	case <-v2.Upgraded():
	case <-time.After(time.Minute):
		t.Fatal("version 2 never took over")
	}
	waitHead(t, v2, log)
	if v, name := v2.Version(), v2.CurrentName(); v != 2 || name == "v1" {
		t.Fatalf("serving %s (version %d)", name, v)
	}
	if _, err := os.Stat(filepath.Join(root, "v1")); !os.IsNotExist(err) {
		t.Errorf("the version 1 read model is still there: %v", err)
	}

	get := func(sid string) *callledgerv1.Call {
		t.Helper()
		tr, err := v2.Tree(ctx, sid)
		if err != nil {
			t.Fatalf("%s: %v", sid, err)
		}
		return tr.Call
	}
	if c := get("CAc088e8a85c1fb7af418617ca34e416b5"); c.GetCallbackSource() != "call-progress-events" {
		t.Errorf("CallbackSource of a version 1 status callback: %q", c.GetCallbackSource())
	}
	if c := get("CA3d6d6a91b4e8375767af8ac36c1246d1"); len(c.GetRecordings()) != 1 || c.GetRecordings()[0].GetErrorCode() != "0" {
		t.Errorf("recording of a version 1 callback: %v", c.GetRecordings())
	}
	if c := get(failed); c.GetErrorCode() != "13224" || c.GetErrorMessage() != "invalid number" || c.GetCallerName() != "ACME CORP" {
		t.Errorf("a version 1 failed callback, upcast: error %q %q, caller %q", c.GetErrorCode(), c.GetErrorMessage(), c.GetCallerName())
	}
	c := get(agent)
	if len(c.GetConferences()) != 1 || c.GetConferences()[0].GetConferenceSid() != conf || !c.GetConferences()[0].GetPresent() || !c.GetConferences()[0].GetMuted() {
		t.Errorf("a conference callback version 1 filed under the call: %v", c.GetConferences())
	}
	ct, err := v2.Conference(ctx, conf)
	if err != nil || len(ct.Conference.GetParticipants()) != 1 || ct.Conference.GetParticipants()[0].GetLabel() != "agent" {
		t.Errorf("the conference of that callback: %v, %v", ct.Conference, err)
	}
	if c := get(child); !c.GetTerminal() || c.GetStatusSource() != callledgerv1.Source_SOURCE_INFERRED || !c.GetEndedAt().AsTime().Equal(at.Add(time.Minute)) {
		t.Errorf("a child whose final callback was lost: %v", c)
	}
}
