package traffic_test

import (
	"bytes"
	"net/url"
	"testing"
	"time"

	"github.com/callledger/callledger/traffic"
	"github.com/callledger/callledger/twilio"
)

func TestStamp(t *testing.T) {
	cfg := traffic.Config{Calls: 30, Seed: 5, PublicURL: "https://hooks.example.com", Token: "tok", RetryRate: 0.2}
	reqs := traffic.Generate(cfg)
	s := traffic.NewStamper(cfg)
	v, err := twilio.NewVerifier(cfg.PublicURL, cfg.Token)
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	first := map[string][]byte{} // stamped body by original body
	stamped, retried := 0, 0
	for i, r := range reqs {
		at := sent.Add(time.Duration(i) * 10 * time.Millisecond)
		out := s.Stamp(r, at)
		if err := v.Verify(out.URI(), out.Body, out.Header.Get("X-Twilio-Signature")); err != nil {
			t.Fatalf("stamped request %d does not verify: %v", i, err)
		}
		form, err := url.ParseQuery(string(out.Body))
		if err != nil {
			t.Fatal(err)
		}
		if !form.Has("Timestamp") {
			if !bytes.Equal(out.Body, r.Body) {
				t.Errorf("request %d without a Timestamp was changed", i)
			}
			continue
		}
		ts, err := twilio.ParseTimestamp(form.Get("Timestamp"))
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := first[string(r.Body)]; ok {
			retried++
			if !bytes.Equal(prev, out.Body) {
				t.Errorf("retry %d differs from its original's stamp", i)
			}
			continue
		}
		stamped++
		first[string(r.Body)] = out.Body
		if delay := at.Sub(ts); delay < 0 || delay > 4*time.Second {
			t.Errorf("request %d: Timestamp %s is %s before sending, want 0–4s", i, ts, delay)
		}
	}
	if stamped == 0 || retried == 0 {
		t.Errorf("stamped %d originals and %d retries; the traffic should have both", stamped, retried)
	}
}
