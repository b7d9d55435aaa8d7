package twilio_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"google.golang.org/protobuf/proto"

	"github.com/callledger/callledger/internal/golden"
	"github.com/callledger/callledger/internal/realcorpus"
	"github.com/callledger/callledger/twilio"
)

// realRequest is the Request the HTTP adapter builds for a payload of the
// real-world corpus (testdata/twilio-real).
func realRequest(p realcorpus.Payload) (twilio.Kind, *twilio.Request) {
	kind, ok := twilio.KindOfPath(p.Route)
	if !ok {
		panic("unknown route " + p.Route)
	}
	req := &twilio.Request{Method: p.Method, URL: corpusPublicURL + p.Route, ContentType: p.ContentType, ReceivedAt: receivedAt,
		Header: http.Header{"Content-Type": {p.ContentType}}, RemoteAddr: "203.0.113.7:40000"}
	switch {
	case p.Kind == realcorpus.KindEvents:
		req.Body = []byte(p.Body)
	case p.Method == http.MethodGet:
		req.RawQuery = p.Encode()
		req.URL += "?" + req.RawQuery
	default:
		req.Body = []byte(p.Encode())
	}
	return kind, req
}

// TestDeriveRealCorpus runs testdata/derive-real: every payload of the
// real-world corpus, derived, each event's stream then the event as JSON
// without its verbatim request and the CloudEvent's raw bytes. It is what
// callledger makes of requests it did not generate, oddities included
// (the corpus README lists them); every payload must have its case.
// Regenerate with -rewrite after a deliberate change, and read the diff.
//
//	derive-real id=<payload id>
func TestDeriveRealCorpus(t *testing.T) {
	t.Parallel()
	payloads, err := realcorpus.Load(realcorpus.Path())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]realcorpus.Payload{}
	for _, p := range payloads {
		byID[p.ID] = p
	}
	seen := map[string]bool{}
	datadriven.RunTest(t, "testdata/derive-real", func(t *testing.T, td *datadriven.TestData) string {
		if td.Cmd != "derive-real" {
			td.Fatalf(t, "unknown command %q", td.Cmd)
		}
		var id string
		td.ScanArgs(t, "id", &id)
		p, ok := byID[id]
		if !ok {
			td.Fatalf(t, "no payload %q in the real-world corpus", id)
		}
		seen[id] = true
		kind, req := realRequest(p)
		ds := twilio.Derive(kind, req)
		checkDerived(t, kind, req, ds)
		var out strings.Builder
		for i, d := range ds {
			got := proto.CloneOf(d.Event)
			got.Request = nil
			if ce := got.GetCloudEvent(); ce != nil {
				if !json.Valid(ce.GetRaw()) || !bytes.Contains(req.Body, bytes.TrimSpace(ce.GetRaw())[:1]) {
					t.Errorf("%s: event %d: raw CloudEvent %q", id, i, ce.GetRaw())
				}
				ce.Raw = nil
			}
			js, err := golden.JSON(got)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "%s\n%s\n", d.Stream, js)
		}
		return out.String()
	})
	for _, p := range payloads {
		if !seen[p.ID] {
			t.Errorf("payload %q has no case in testdata/derive-real: add `derive-real id=%s`", p.ID, p.ID)
		}
	}
}
