package twilio_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/twilio"
)

// The capture corpus (testdata/twilio/README.md) and how it was signed.
const (
	corpusToken     = corpus.Token
	corpusPublicURL = corpus.PublicURL
)

type (
	capture      = corpus.Request
	expectedCall = corpus.Expected
)

// kindOf is the route the request was sent to.
func kindOf(t testing.TB, c capture) twilio.Kind {
	t.Helper()
	kind, ok := twilio.KindOfPath(c.Path)
	if !ok {
		t.Fatalf("seq %d: unknown path %q", c.Seq, c.Path)
	}
	return kind
}

// receivedAt is a fixed server clock: derived events do not depend on it
// beyond received_at.
var receivedAt = time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)

// requestOf is the Request the HTTP adapter builds for c.
func requestOf(c capture) *twilio.Request {
	h := http.Header{}
	for k, v := range c.Headers {
		h.Add(k, v)
	}
	return &twilio.Request{
		Method:      c.Method,
		URL:         corpusPublicURL + c.URI(),
		RawQuery:    c.Query,
		ContentType: c.ContentType,
		Header:      h,
		Body:        []byte(c.Body),
		RemoteAddr:  "203.0.113.7:40000",
		ReceivedAt:  receivedAt,
	}
}

var corpusOnce struct {
	sync.Once
	requests []capture
	expected []expectedCall
	err      error
}

// loadCorpus loads the capture corpus once per test binary.
func loadCorpus(t testing.TB) ([]capture, []expectedCall) {
	t.Helper()
	corpusOnce.Do(func() {
		corpusOnce.requests, corpusOnce.err = corpus.Requests()
		if corpusOnce.err == nil {
			corpusOnce.expected, corpusOnce.err = corpus.ExpectedCalls()
		}
	})
	if corpusOnce.err != nil {
		t.Fatal(corpusOnce.err)
	}
	if len(corpusOnce.requests) == 0 || len(corpusOnce.expected) == 0 {
		t.Fatal("empty capture corpus")
	}
	return corpusOnce.requests, corpusOnce.expected
}

// bySeq returns the corpus request with sequence number seq.
func bySeq(t testing.TB, seq int) capture {
	t.Helper()
	reqs, _ := loadCorpus(t)
	for _, r := range reqs {
		if r.Seq == seq {
			return r
		}
	}
	t.Fatalf("no corpus request with seq %d", seq)
	return capture{}
}
