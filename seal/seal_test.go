package seal

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/keystore/keystoretest"
)

const (
	callA  = "CA00000000000000000000000000000001"
	callB  = "CA00000000000000000000000000000002"
	event1 = "0b7c3f2e-5a1d-5c6e-8f90-1a2b3c4d5e6f"
	event2 = "1c8d4a3f-6b2e-5d7f-9a01-2b3c4d5e6f70"
)

// facts is the personal part of a status callback, as the write path will
// split it off.
func facts() *callledgerv1.PersonalData {
	return &callledgerv1.PersonalData{Event: &callledgerv1.Event{
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			From: "+15555550100", To: "+15555550199",
		}},
	}}
}

// request is the verbatim request of a status callback: ~1.2 KB, most of
// an event's bytes.
func request() *callledgerv1.PersonalData {
	body := "AccountSid=AC0123456789abcdef0123456789abcdef&ApiVersion=2010-04-01&CallDuration=14" +
		"&CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=completed&CallbackSource=call-progress-events" +
		"&Called=%2B15555550199&CalledCity=&CalledCountry=US&CalledState=CA&CalledZip=&Caller=%2B15555550100" +
		"&CallerCity=SAN+FRANCISCO&CallerCountry=US&CallerState=CA&CallerZip=94105&Direction=outbound-api" +
		"&Duration=1&From=%2B15555550100&FromCity=SAN+FRANCISCO&FromCountry=US&FromState=CA&FromZip=94105" +
		"&SequenceNumber=3&SipResponseCode=200&Timestamp=Tue%2C+24+Nov+2026+10%3A00%3A14+%2B0000" +
		"&To=%2B15555550199&ToCity=&ToCountry=US&ToState=CA&ToZip="
	return &callledgerv1.PersonalData{Event: &callledgerv1.Event{
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{}},
		Request: &callledgerv1.HttpRequest{
			Url:  "https://hooks.example.com/twilio/voice/status",
			Body: []byte(body),
			Headers: []*callledgerv1.Header{
				{Name: "User-Agent", Value: "TwilioProxy/1.1"},
				{Name: "X-Twilio-Signature", Value: "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
				{Name: "I-Twilio-Idempotency-Token", Value: "a3c1e2f0-9d7b-4c5a-8e6f-1b2c3d4e5f60"},
				{Name: "X-Home-Region", Value: "us1"},
				{Name: "Accept", Value: "*/*"},
				{Name: "Cache-Control", Value: "max-age=259200"},
				{Name: "Content-Type", Value: "application/x-www-form-urlencoded; charset=utf-8"},
				{Name: "X-Forwarded-For", Value: "54.172.60.1"},
			},
			RemoteAddr: "10.0.0.7:51234",
		},
	}}
}

func TestSealOpen(t *testing.T) {
	ctx := context.Background()
	keys := keystoretest.Open(t)
	a, err := keys.Key(ctx, callA)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		part Part
		pd   *callledgerv1.PersonalData
	}{{Facts, facts()}, {Request, request()}} {
		s, err := Seal(a, tc.part, event1, tc.pd)
		if err != nil {
			t.Fatal(err)
		}
		if s.GetSubject() != callA || s.GetKeyId() != a.ID() || len(s.GetNonce()) != NonceSize {
			t.Errorf("sealed: subject %q key %016x nonce %d bytes", s.GetSubject(), s.GetKeyId(), len(s.GetNonce()))
		}
		var got callledgerv1.PersonalData
		if err := OpenWith(ctx, keys, tc.part, event1, s, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, tc.pd) {
			t.Errorf("%s: opened %v, want %v", tc.part, &got, tc.pd)
		}
		again, err := Seal(a, tc.part, event1, tc.pd)
		if err != nil {
			t.Fatal(err)
		}
		if string(again.GetNonce()) == string(s.GetNonce()) {
			t.Error("two seals used the same nonce")
		}
	}
}

// TestBinding: a ciphertext opens for its own event, subject, key and part
// only.
func TestBinding(t *testing.T) {
	ctx := context.Background()
	keys := keystoretest.Open(t)
	a, err := keys.Key(ctx, callA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keys.Key(ctx, callB)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Seal(a, Facts, event1, facts())
	if err != nil {
		t.Fatal(err)
	}
	var pd callledgerv1.PersonalData
	if err := Open(a, Facts, event2, s, &pd); !errors.Is(err, ErrOpen) {
		t.Errorf("moved to another event: %v, want ErrOpen", err)
	}
	if err := Open(a, Request, event1, s, &pd); !errors.Is(err, ErrOpen) {
		t.Errorf("read as another part: %v, want ErrOpen", err)
	}
	if err := Open(b, Facts, event1, s, &pd); err == nil {
		t.Error("opened with another subject's key")
	}
	// Relabelled to another subject or key: the named key does not open it.
	moved := proto.Clone(s).(*callledgerv1.Sealed)
	moved.Subject, moved.KeyId = callB, b.ID()
	if err := OpenWith(ctx, keys, Facts, event1, moved, &pd); !errors.Is(err, ErrOpen) {
		t.Errorf("relabelled to another subject: %v, want ErrOpen", err)
	}
	// Erased and missing keys are told apart.
	unknown := proto.Clone(s).(*callledgerv1.Sealed)
	unknown.KeyId++
	if err := OpenWith(ctx, keys, Facts, event1, unknown, &pd); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("a key the store never had: %v, want ErrNotFound", err)
	}
	if _, err := keys.Destroy(ctx, callA); err != nil {
		t.Fatal(err)
	}
	if err := OpenWith(ctx, keys, Facts, event1, s, &pd); !errors.Is(err, keystore.ErrDestroyed) {
		t.Errorf("after erasure: %v, want ErrDestroyed", err)
	}
}

// TestRoundTripAndTamper: any personal data opens to itself, and any one
// flipped bit of the nonce or ciphertext makes it fail.
func TestRoundTripAndTamper(t *testing.T) {
	ctx := context.Background()
	keys := keystoretest.Open(t)
	key, err := keys.Key(ctx, callA)
	if err != nil {
		t.Fatal(err)
	}
	rapid.Check(t, func(t *rapid.T) {
		pd := &callledgerv1.PersonalData{Event: &callledgerv1.Event{
			Body: &callledgerv1.Event_DialCompleted{DialCompleted: &callledgerv1.DialCompleted{
				From:         rapid.String().Draw(t, "from"),
				To:           rapid.String().Draw(t, "to"),
				RecordingUrl: rapid.String().Draw(t, "recording_url"),
			}},
			Request: &callledgerv1.HttpRequest{Body: rapid.SliceOf(rapid.Byte()).Draw(t, "body")},
		}}
		part := rapid.SampledFrom([]Part{Facts, Request}).Draw(t, "part")
		eventID := rapid.StringN(0, 40, -1).Draw(t, "event")
		s, err := Seal(key, part, eventID, pd)
		if err != nil {
			t.Fatal(err)
		}
		var got callledgerv1.PersonalData
		if err := Open(key, part, eventID, s, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, pd) {
			t.Fatalf("opened %v, want %v", &got, pd)
		}
		bad := proto.Clone(s).(*callledgerv1.Sealed)
		field := rapid.SampledFrom([]string{"nonce", "ciphertext"}).Draw(t, "field")
		b := bad.Ciphertext
		if field == "nonce" {
			b = bad.Nonce
		}
		i := rapid.IntRange(0, len(b)-1).Draw(t, "byte")
		b[i] ^= 1 << rapid.IntRange(0, 7).Draw(t, "bit")
		if err := Open(key, part, eventID, bad, &got); !errors.Is(err, ErrOpen) {
			t.Fatalf("a flipped bit in the %s: %v, want ErrOpen", field, err)
		}
	})
}

// FuzzOpen feeds stored Sealed messages of any shape to Open: it never
// panics, and what it does not open is ErrOpen or a key mismatch.
func FuzzOpen(f *testing.F) {
	keys := keystoretest.Open(f)
	key, err := keys.Key(context.Background(), callA)
	if err != nil {
		f.Fatal(err)
	}
	s, err := Seal(key, Facts, event1, facts())
	if err != nil {
		f.Fatal(err)
	}
	good, _ := proto.Marshal(s)
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		var s callledgerv1.Sealed
		if proto.Unmarshal(b, &s) != nil {
			return
		}
		var pd callledgerv1.PersonalData
		err := Open(key, Facts, event1, &s, &pd)
		if err == nil && proto.Equal(&s, &callledgerv1.Sealed{}) {
			t.Fatal("an empty Sealed opened")
		}
	})
}

// TestOpenInto: merging the opened facts into the stored event gives the
// event as it was before the personal fields were split off.
func TestOpenInto(t *testing.T) {
	ctx := context.Background()
	keys := keystoretest.Open(t)
	key, err := keys.Key(ctx, callA)
	if err != nil {
		t.Fatal(err)
	}
	rapid.Check(t, func(t *rapid.T) {
		whole := &callledgerv1.Event{
			EventId: event1,
			CallSid: callA,
			Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
				StatusRaw:    rapid.SampledFrom([]string{"ringing", "completed"}).Draw(t, "status"),
				AccountSid:   "AC0123456789abcdef0123456789abcdef",
				From:         rapid.String().Draw(t, "from"),
				To:           rapid.String().Draw(t, "to"),
				RecordingUrl: rapid.String().Draw(t, "url"),
			}},
		}
		stored := proto.Clone(whole).(*callledgerv1.Event)
		csr := stored.GetCallStatusReported()
		personal := &callledgerv1.PersonalData{Event: &callledgerv1.Event{
			Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
				From: csr.From, To: csr.To, RecordingUrl: csr.RecordingUrl,
			}},
		}}
		csr.From, csr.To, csr.RecordingUrl = "", "", ""
		s, err := Seal(key, Facts, event1, personal)
		if err != nil {
			t.Fatal(err)
		}
		if err := OpenInto(key, Facts, event1, s, stored); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(stored, whole) {
			t.Fatalf("opened into %v, want %v", stored, whole)
		}
		if err := OpenInto(key, Facts, event2, s, stored); !errors.Is(err, ErrOpen) {
			t.Fatalf("another event: %v", err)
		}
	})
}
