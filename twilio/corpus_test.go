package twilio_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/callledger/callledger/twilio"
)

// The capture corpus (testdata/twilio/README.md) and how it was signed.
const (
	corpusToken     = "visible-test-token"
	corpusPublicURL = "https://ledger.test"
)

// capture is one line of requests.jsonl.
type capture struct {
	Scenario    string            `json:"scenario"`
	Seq         int               `json:"seq"`
	Method      string            `json:"method"`
	Path        string            `json:"path"`
	Query       string            `json:"query"`
	ContentType string            `json:"content_type"`
	Headers     map[string]string `json:"headers"`
	Body        string            `json:"body"`
	ExpectHTTP  int               `json:"expect_http"`
	Tree        int               `json:"tree"`
	Kind        string            `json:"kind"`
	CallSid     string            `json:"call_sid"`
	DupOf       *int              `json:"dup_of"`
}

// expectedCall is one line of expected.jsonl (the fields this package can
// check: the rest is the projection's business).
type expectedCall struct {
	CallSid   string `json:"call_sid"`
	OwnEvents int    `json:"own_events"`
}

func (c capture) uri() string {
	if c.Query == "" {
		return c.Path
	}
	return c.Path + "?" + c.Query
}

// kind is the route the request was sent to.
func (c capture) kind(t testing.TB) twilio.Kind {
	t.Helper()
	switch c.Path {
	case "/twilio/voice/status":
		return twilio.KindStatus
	case "/twilio/voice/dial":
		return twilio.KindDial
	case "/twilio/voice/recording":
		return twilio.KindRecording
	case "/twilio/events":
		return twilio.KindEvents
	}
	t.Fatalf("seq %d: unknown path %q", c.Seq, c.Path)
	return ""
}

// receivedAt is a fixed server clock: derived events do not depend on it
// beyond received_at.
var receivedAt = time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)

// request is the Request the HTTP adapter builds for c.
func (c capture) request() *twilio.Request {
	h := http.Header{}
	for k, v := range c.Headers {
		h.Add(k, v)
	}
	return &twilio.Request{
		Method:      c.Method,
		URL:         corpusPublicURL + c.uri(),
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

// corpus loads the capture corpus once per test binary.
func corpus(t testing.TB) ([]capture, []expectedCall) {
	t.Helper()
	corpusOnce.Do(func() {
		dir := filepath.Join("..", "testdata", "twilio")
		corpusOnce.requests, corpusOnce.err = loadJSONL[capture](filepath.Join(dir, "requests.jsonl"))
		if corpusOnce.err == nil {
			corpusOnce.expected, corpusOnce.err = loadJSONL[expectedCall](filepath.Join(dir, "expected.jsonl"))
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

func loadJSONL[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// bySeq returns the corpus request with sequence number seq.
func bySeq(t testing.TB, seq int) capture {
	t.Helper()
	reqs, _ := corpus(t)
	for _, r := range reqs {
		if r.Seq == seq {
			return r
		}
	}
	t.Fatalf("no corpus request with seq %d", seq)
	return capture{}
}
