package traffic_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/traffic"
	"github.com/callledger/callledger/twilio"
)

func generate(seed uint64) []traffic.Request {
	return traffic.Generate(traffic.Config{
		Calls: 300, Seed: seed, PublicURL: "https://hooks.example.com", Token: "tok",
		Start: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	})
}

func TestRequestsVerifyAndDeriveIntoTheirCall(t *testing.T) {
	t.Parallel()
	v, err := twilio.NewVerifier("https://hooks.example.com", "tok")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range generate(1) {
		if err := v.Verify(r.URI(), r.Body, r.Header.Get("X-Twilio-Signature")); err != nil {
			t.Fatalf("%s %s: %v", r.Method, r.URI(), err)
		}
		ds := twilio.Derive(r.Kind, &twilio.Request{Method: r.Method, RawQuery: r.Query, Body: r.Body, Header: r.Header})
		if len(ds) != 1 || ds[0].Stream != eventcodec.CallStream(r.CallSid) {
			t.Fatalf("%s request for %s derived into %v", r.Kind, r.CallSid, ds)
		}
	}
}

func TestSameSeedSameTraffic(t *testing.T) {
	t.Parallel()
	a, b := generate(5), generate(5)
	if len(a) != len(b) {
		t.Fatalf("%d vs %d requests", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].Body, b[i].Body) || a[i].Path != b[i].Path {
			t.Fatalf("request %d differs", i)
		}
	}
	if c := generate(6); bytes.Equal(c[0].Body, a[0].Body) {
		t.Error("another seed gave the same first request")
	}
}

func TestRetriesAreByteIdenticalAndComeLater(t *testing.T) {
	t.Parallel()
	reqs := generate(2)
	seen := map[string]int{}
	retries := 0
	for i, r := range reqs {
		key := r.Path + "?" + r.Query + string(r.Body)
		first, ok := seen[key]
		if r.Retry {
			retries++
			if !ok {
				t.Errorf("request %d is a retry of nothing sent before", i)
				continue
			}
			if reqs[first].Header.Get("I-Twilio-Idempotency-Token") != r.Header.Get("I-Twilio-Idempotency-Token") {
				t.Errorf("retry %d carries another idempotency token", i)
			}
			continue
		}
		if ok {
			t.Errorf("request %d repeats request %d without being marked a retry", i, first)
		}
		seen[key] = i
	}
	if retries == 0 {
		t.Error("no retries generated at the default rate")
	}
}

func TestEveryScenarioAppears(t *testing.T) {
	t.Parallel()
	kinds := map[twilio.Kind]int{}
	for _, r := range generate(3) {
		kinds[r.Kind]++
	}
	for _, k := range []twilio.Kind{twilio.KindStatus, twilio.KindDial, twilio.KindRecording} {
		if kinds[k] == 0 {
			t.Errorf("no %s requests in 300 calls", k)
		}
	}
}
