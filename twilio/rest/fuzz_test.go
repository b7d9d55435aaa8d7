package rest_test

import (
	"encoding/json"
	"testing"
	"time"

	api "github.com/twilio/twilio-go/rest/api/v2010"
	"google.golang.org/protobuf/proto"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/twilio/rest"
)

// FuzzReconciled feeds Call resources as Twilio's REST API could answer
// them (any JSON twilio-go accepts) to Reconciled: the event it makes must
// encode and decode back unchanged, and its ID must depend on the resource
// alone, so that reading an unchanged call again stores nothing new.
func FuzzReconciled(f *testing.F) {
	f.Add([]byte(`{"sid":"CA0123456789abcdef0123456789abcdef","account_sid":"AC0123456789abcdef0123456789abcdef",` +
		`"status":"completed","duration":"42","direction":"outbound-api","from":"+15550000001","to":"+15550000002",` +
		`"start_time":"Sun, 01 Mar 2026 10:00:00 +0000","end_time":"Sun, 01 Mar 2026 10:00:42 +0000",` +
		`"date_updated":"Sun, 01 Mar 2026 10:00:43 +0000","parent_call_sid":null,"answered_by":"human"}`))
	f.Add([]byte(`{"sid":"CA0123456789abcdef0123456789abcdef","status":"no-such-status","duration":"-3","start_time":"Sun, 1 Mar 2026 10:00:00 +0000"}`))
	f.Add([]byte(`{"sid":"CA0123456789abcdef0123456789abcdef","status":"ringing","duration":"99999999999999999999","end_time":"yesterday","from":"\ud800"}`))
	f.Add([]byte(`{"sid":"not a call sid","status":"completed"}`))
	f.Add([]byte(`{}`))
	fetched := time.Date(2026, 3, 1, 10, 1, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		var c api.ApiV2010Call
		if err := json.Unmarshal(body, &c); err != nil {
			return // twilio-go would refuse it too
		}
		ev := rest.Reconciled(&c, fetched)
		if ev == nil {
			if c.Sid != nil && eventcodec.ValidCallSid(*c.Sid) {
				t.Fatalf("no event for a resource of call %s", *c.Sid)
			}
			return
		}
		if again := rest.Reconciled(&c, fetched.Add(time.Hour)); again.GetEventId() != ev.GetEventId() {
			t.Fatalf("the same resource read later has ID %s, first %s", again.GetEventId(), ev.GetEventId())
		}
		data, err := eventcodec.Encode(ev)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		back, err := eventcodec.Decode(eventstore.RecordedEvent{ID: data.ID, Type: data.Type, Stream: eventcodec.CallStream(ev.GetCallSid()), Position: 1, Data: data.Data, Metadata: data.Metadata})
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !proto.Equal(back, ev) {
			t.Fatalf("round trip changed the event:\n got %v\nwant %v", back, ev)
		}
		if d := ev.GetCallReconciled().DurationSeconds; d != nil && *d < 0 {
			t.Fatalf("negative duration %d", *d)
		}
	})
}
