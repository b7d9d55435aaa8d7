package eventcodec_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
)

func TestEventIDIsDeterministicAndKindScoped(t *testing.T) {
	t.Parallel()
	a := eventcodec.EventID("status", []byte("CallSid=CA1"))
	if b := eventcodec.EventID("status", []byte("CallSid=CA1")); a != b {
		t.Errorf("same fact, different IDs: %s %s", a, b)
	}
	if c := eventcodec.EventID("dial", []byte("CallSid=CA1")); a == c {
		t.Error("different kinds with the same content share an ID")
	}
	// The separator keeps "ab"+"c" apart from "a"+"bc".
	if eventcodec.EventID("ab", []byte("c")) == eventcodec.EventID("a", []byte("bc")) {
		t.Error("kind and content boundaries collide")
	}
	if a.Version() != 5 {
		t.Errorf("event IDs are UUID version %d, want 5", a.Version())
	}
}

func TestValidCallSid(t *testing.T) {
	t.Parallel()
	for sid, want := range map[string]bool{
		"CA0123456789abcdef0123456789abcdef":  true,
		"CA0123456789ABCDEF0123456789abcdef":  false, // Twilio SIDs are lowercase hex
		"CA0123456789abcdef0123456789abcde":   false,
		"CA0123456789abcdef0123456789abcdef0": false,
		"CF0123456789abcdef0123456789abcdef":  false,
		"":                                    false,
	} {
		if got := eventcodec.ValidCallSid(sid); got != want {
			t.Errorf("ValidCallSid(%q) = %v, want %v", sid, got, want)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	received := time.Date(2026, 3, 1, 4, 7, 50, 123, time.UTC)
	ev := &callledgerv1.Event{
		EventId:    eventcodec.EventID("status", []byte("x")).String(),
		CallSid:    "CA0123456789abcdef0123456789abcdef",
		Source:     callledgerv1.Source_SOURCE_STATUS_CALLBACK,
		ReceivedAt: timestamppb.New(received),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			Status: callledgerv1.CallStatus_CALL_STATUS_RINGING, StatusRaw: "ringing",
		}},
		Request: &callledgerv1.HttpRequest{Method: "POST", Body: []byte("CallStatus=ringing")},
	}
	rec, err := eventcodec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Type != eventcodec.TypeCallStatusReported || rec.ID.String() != ev.GetEventId() {
		t.Errorf("record type %q id %s", rec.Type, rec.ID)
	}
	var meta map[string]string
	if err := json.Unmarshal(rec.Metadata, &meta); err != nil {
		t.Fatalf("metadata %s is not JSON: %v", rec.Metadata, err)
	}
	if meta["callSid"] != ev.GetCallSid() || meta["source"] != "SOURCE_STATUS_CALLBACK" || meta["receivedAt"] != "2026-03-01T04:07:50.000000123Z" {
		t.Errorf("metadata %v", meta)
	}
	back, err := eventcodec.Decode(eventstore.RecordedEvent{Data: rec.Data, Type: rec.Type})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, ev) {
		t.Errorf("round trip changed the event:\n%v\n%v", back, ev)
	}
}

func TestEncodeRefusesIncompleteEvents(t *testing.T) {
	t.Parallel()
	for name, ev := range map[string]*callledgerv1.Event{
		"no body": {EventId: eventcodec.EventID("k", nil).String()},
		"no id":   {Body: &callledgerv1.Event_RequestQuarantined{RequestQuarantined: &callledgerv1.RequestQuarantined{}}},
	} {
		if _, err := eventcodec.Encode(ev); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	t.Parallel()
	if _, err := eventcodec.Decode(eventstore.RecordedEvent{Data: []byte{0xff, 0xff, 0xff}}); !errors.Is(err, eventcodec.ErrUndecodable) {
		t.Errorf("Decode(garbage) = %v, want ErrUndecodable", err)
	}
}

func TestStreams(t *testing.T) {
	t.Parallel()
	sid := "CA0123456789abcdef0123456789abcdef"
	got, ok := eventcodec.CallSidOf(eventcodec.CallStream(sid))
	if !ok || got != sid {
		t.Errorf("CallSidOf(CallStream(sid)) = %q, %v", got, ok)
	}
	if _, ok := eventcodec.CallSidOf(eventcodec.QuarantineStream("status")); ok {
		t.Error("a quarantine stream was taken for a call stream")
	}
}

func TestDecodeFactsEqualsDecodeWithoutVerbatim(t *testing.T) {
	t.Parallel()
	ev := &callledgerv1.Event{
		EventId: eventcodec.EventID("events", []byte("ce")).String(), CallSid: "CA0123456789abcdef0123456789abcdef",
		Source: callledgerv1.Source_SOURCE_EVENT_STREAMS, ReceivedAt: timestamppb.Now(),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			Status: callledgerv1.CallStatus_CALL_STATUS_COMPLETED, StatusRaw: "completed"}},
		Request:       &callledgerv1.HttpRequest{Method: "POST", Body: []byte("[{}]"), Headers: []*callledgerv1.Header{{Name: "A", Value: "b"}}},
		CloudEvent:    &callledgerv1.CloudEvent{Id: "ce", Raw: []byte("{}")},
		Sealed:        &callledgerv1.Sealed{Subject: "CA0123456789abcdef0123456789abcdef", KeyId: 7, Nonce: []byte("n"), Ciphertext: []byte("facts")},
		SealedRequest: &callledgerv1.Sealed{Subject: "CA0123456789abcdef0123456789abcdef", KeyId: 7, Nonce: []byte("n"), Ciphertext: []byte("request")},
	}
	rec, err := eventcodec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	facts, err := eventcodec.DecodeFacts(eventstore.RecordedEvent{Data: rec.Data})
	if err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(ev).(*callledgerv1.Event)
	want.Request, want.CloudEvent, want.SealedRequest = nil, nil, nil
	if !proto.Equal(facts, want) {
		t.Errorf("DecodeFacts:\n%v\nwant\n%v", facts, want)
	}
	if _, err := eventcodec.DecodeFacts(eventstore.RecordedEvent{Data: []byte{0xa2, 0x01, 0xff}}); !errors.Is(err, eventcodec.ErrUndecodable) {
		t.Errorf("truncated field: %v, want ErrUndecodable", err)
	}
}

func FuzzDecodeFacts(f *testing.F) {
	ev := &callledgerv1.Event{EventId: "x", CallSid: "CA1", Request: &callledgerv1.HttpRequest{Method: "GET"}}
	data, _ := proto.Marshal(ev)
	f.Add(data)
	f.Add([]byte{0xa2, 0x01, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		facts, err := eventcodec.DecodeFacts(eventstore.RecordedEvent{Data: data})
		full, ferr := eventcodec.Decode(eventstore.RecordedEvent{Data: data})
		if ferr == nil && err != nil {
			t.Fatalf("Decode accepts what DecodeFacts refuses: %v", err)
		}
		if err == nil && ferr == nil {
			full.Request, full.CloudEvent, full.SealedRequest = nil, nil, nil
			// DecodeFacts skips fields 20, 21 and 26 whatever their wire type;
			// Decode keeps one of the wrong type as an unknown field.
			full.ProtoReflect().SetUnknown(withoutVerbatim(full.ProtoReflect().GetUnknown()))
			if !proto.Equal(facts, full) {
				t.Fatalf("DecodeFacts %v, Decode without verbatim %v", facts, full)
			}
		}
	})
}

// withoutVerbatim drops fields 20, 21 and 26 from unknown fields.
func withoutVerbatim(unknown []byte) []byte {
	var out []byte
	for len(unknown) > 0 {
		num, typ, n := protowire.ConsumeTag(unknown)
		n += protowire.ConsumeFieldValue(num, typ, unknown[n:])
		if num != 20 && num != 21 && num != 26 {
			out = append(out, unknown[:n]...)
		}
		unknown = unknown[n:]
	}
	return out
}

// TestTypeOfCommandAndReconciliationEvents: every body has its stable
// stored type name, and an event of each survives the round trip.
func TestTypeOfCommandAndReconciliationEvents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ev   *callledgerv1.Event
		want string
	}{
		{&callledgerv1.Event{Body: &callledgerv1.Event_HangupRequested{HangupRequested: &callledgerv1.HangupRequested{RequestId: "r1"}}}, "HangupRequested"},
		{&callledgerv1.Event{Body: &callledgerv1.Event_HangupSent{HangupSent: &callledgerv1.HangupSent{RequestId: "r1", Status: "completed"}}}, "HangupSent"},
		{&callledgerv1.Event{Body: &callledgerv1.Event_HangupFailed{HangupFailed: &callledgerv1.HangupFailed{RequestId: "r1", ErrorCode: 21220}}}, "HangupFailed"},
		{&callledgerv1.Event{Body: &callledgerv1.Event_CallReconciled{CallReconciled: &callledgerv1.CallReconciled{StatusRaw: "completed"}}}, "CallReconciled"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			ev := tc.ev
			ev.EventId = eventcodec.EventID(eventcodec.IDKind(tc.want), []byte("x")).String()
			ev.CallSid = "CA0123456789abcdef0123456789abcdef"
			ev.ReceivedAt = timestamppb.Now()
			rec, err := eventcodec.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Type != tc.want {
				t.Errorf("type %q, want %q", rec.Type, tc.want)
			}
			back, err := eventcodec.Decode(eventstore.RecordedEvent{Data: rec.Data, Type: rec.Type})
			if err != nil || !proto.Equal(back, ev) {
				t.Errorf("round trip: %v, %v", back, err)
			}
		})
	}
}
