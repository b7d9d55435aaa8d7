package webhook_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/eventstore/pebblestore/pebblestoretest"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/internal/logsink"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/twilio"
)

// recorder is an Observer that writes down what it is told.
type recorder struct {
	mu     sync.Mutex
	events []string
	delays map[string][]time.Duration
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) Answered(route string, code int, _ time.Duration) {
	r.add("answered %s %d", route, code)
}
func (r *recorder) Delivered(kind string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delays[kind] = append(r.delays[kind], d)
}
func (r *recorder) Duplicates(kind string, n int)  { r.add("duplicates %s %d", kind, n) }
func (r *recorder) SignatureFailed(kind, _ string) { r.add("signature %s", kind) }
func (r *recorder) Quarantined(kind string, n int) { r.add("quarantined %s %d", kind, n) }

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// logLines takes the JSON lines logged since the last call.
func logLines(t *testing.T, s *logsink.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.Take()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestObserverAndRefusalLogs(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 4, 7, 53, 0, time.UTC)
	rec := &recorder{delays: map[string][]time.Duration{}}
	var logs logsink.Buffer
	srv := newServer(t, pebblestoretest.Open(t), func(c *webhook.Config) {
		c.Observer = rec
		c.Now = func() time.Time { return now }
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})

	status := firstOfKind(t, "status")
	form, err := url.ParseQuery(status.Body)
	if err != nil {
		t.Fatal(err)
	}
	reported, err := twilio.ParseTimestamp(form.Get("Timestamp"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, want ...string) {
		t.Helper()
		if got := rec.take(); !slices.Equal(got, want) {
			t.Errorf("%s: observed %q, want %q", what, got, want)
		}
	}

	do(t, srv, status)
	check("first delivery", "answered /twilio/voice/status 204")
	if got := rec.delays["status"]; len(got) != 1 || got[0] != now.Sub(reported) {
		t.Errorf("delivery delays %v, want [%v]", got, now.Sub(reported))
	}
	do(t, srv, status)
	check("retry", "duplicates status 1", "answered /twilio/voice/status 204")

	q := firstOfKind(t, "quarantine")
	do(t, srv, q)
	check("quarantined", "quarantined recording 1", "answered /twilio/voice/recording 204")
	do(t, srv, q)
	check("quarantined retry", "duplicates recording 1", "answered /twilio/voice/recording 204")
	if n := len(logLines(t, &logs)); n != 0 {
		t.Errorf("accepted requests logged %d lines", n)
	}

	// Refusals: one log line each with a request ID, and never the
	// signature or the token.
	tampered := status
	tampered.Body = strings.Replace(status.Body, "CallStatus=", "CallStatus=x", 1)
	resp := do(t, srv, tampered)
	check("tampered", "signature status", "answered /twilio/voice/status 403")
	if got := resp.Header.Get(webhook.RequestIDHeader); got != status.Headers["I-Twilio-Idempotency-Token"] {
		t.Errorf("403 carries request ID %q, want Twilio's idempotency token %q", got, status.Headers["I-Twilio-Idempotency-Token"])
	}
	anonymous := tampered
	anonymous.Headers = map[string]string{"Content-Type": status.Headers["Content-Type"], "X-Twilio-Signature": status.Headers["X-Twilio-Signature"]}
	generated := do(t, srv, anonymous).Header.Get(webhook.RequestIDHeader)
	check("no request ID", "signature status", "answered /twilio/voice/status 403")
	if len(generated) < 16 {
		t.Errorf("refusal without an ID header got request ID %q, want a generated one", generated)
	}
	put := status
	put.Method = http.MethodPut
	if got := do(t, srv, put).Header.Get(webhook.RequestIDHeader); got != status.Headers["I-Twilio-Idempotency-Token"] {
		t.Errorf("405 carries request ID %q, want Twilio's idempotency token", got)
	}
	check("wrong method", "answered /twilio/voice/status 405")
	lines := logLines(t, &logs)
	if len(lines) != 3 {
		t.Fatalf("3 refusals logged %d lines: %v", len(lines), lines)
	}
	for i, want := range []string{status.Headers["I-Twilio-Idempotency-Token"], generated, status.Headers["I-Twilio-Idempotency-Token"]} {
		if lines[i]["request_id"] != want {
			t.Errorf("line %d: request_id %v, want %q", i, lines[i]["request_id"], want)
		}
	}
	all := fmt.Sprint(lines)
	for _, secret := range []string{corpus.Token, status.Headers["X-Twilio-Signature"]} {
		if strings.Contains(all, secret) {
			t.Errorf("logs contain a secret %q: %s", secret, all)
		}
	}
}

// TestRepeated503sLoggedOnce: a store that fails answers every webhook 503,
// each with its request ID on the answer, but the log gets one line per
// kind of failure per interval, naming the first request's ID, rather than
// a line per request (a full disk must not fill up with log lines).
func TestRepeated503sLoggedOnce(t *testing.T) {
	t.Parallel()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	var logs logsink.Buffer
	srv := newServer(t, store, func(c *webhook.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		c.LogEvery = time.Hour
	})
	reqs, _, _ := mustCorpus(t)
	var ids []string
	for _, r := range reqs {
		if r.ExpectHTTP/100 != 2 {
			continue
		}
		resp := do(t, srv, r)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("seq %d: %d, want 503 with Retry-After", r.Seq, resp.StatusCode)
		}
		id := resp.Header.Get(webhook.RequestIDHeader)
		if id == "" {
			t.Fatalf("seq %d: 503 without a request ID", r.Seq)
		}
		if ids = append(ids, id); len(ids) == 20 {
			break
		}
	}
	lines := logLines(t, &logs)
	if len(lines) != 1 {
		t.Fatalf("%d failures logged %d lines, want 1: %v", len(ids), len(lines), lines)
	}
	if lines[0]["request_id"] != ids[0] || lines[0]["level"] != "ERROR" {
		t.Errorf("the line %v does not name the first request %q", lines[0], ids[0])
	}
}
