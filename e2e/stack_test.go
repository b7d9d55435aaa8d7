package e2e_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/services/query"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/twilio"
)

// failBound bounds every wait: reaching it is a failure, never an expected
// outcome.
const failBound = 20 * time.Second

// backend is an event store the stack runs on.
type backend string

const (
	// embedded is the Pebble store, serve's default.
	embedded backend = "pebble"
	// kurrentDB is the KurrentDB adapter on the in-process stand-in.
	kurrentDB backend = "kurrentdb"
)

// backends are every store serve can run on: tests of the whole service
// run on each.
var backends = []backend{embedded, kurrentDB}

// stack is callledger on loopback: webhooks over HTTP and queries over
// gRPC, on one event store, with the read model fed by the runner.
type stack struct {
	http   *httptest.Server
	client callledgerv1.CallQueryServiceClient
	events eventstore.Store
	sink   *recordingSink

	// On the kurrentDB backend, the stand-in server and the adapter, for
	// fault injection and the adapter's counters.
	kdb    *kurrentdbtest.Server
	kstore *kurrentdb.Store

	mu      sync.Mutex
	maxSeen eventstore.Position // highest Callledger-Position answered
}

// newStack runs the stack on the embedded store.
func newStack(t testing.TB) *stack { return newStackOn(t, embedded) }

// newStackOn runs the stack on backend b, wired as serve wires it.
func newStackOn(t testing.TB, b backend) *stack {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	s := &stack{}
	switch b {
	case embedded:
		events, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		s.events = events
	case kurrentDB:
		kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kdb.Close) // registered first: runs after the store's Close
		ctx, cancel := context.WithTimeout(context.Background(), failBound)
		defer cancel()
		kstore, err := kurrentdb.Open(ctx, kdb.ConnString(), kurrentdb.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		s.events, s.kdb, s.kstore = kstore, kdb, kstore
	default:
		t.Fatalf("unknown backend %q", b)
	}
	events := s.events
	t.Cleanup(func() { events.Close() })
	calls, err := callstore.Open(t.TempDir(), callstore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { calls.Close() })
	s.sink = newRecordingSink(calls)

	ctx, cancel := context.WithCancel(context.Background())
	runner := projections.NewRunner(events, s.sink, eventstore.Filter{StreamPrefixes: []string{eventcodec.CallStreamPrefix}}, quiet)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = runner.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })

	verifier, err := twilio.NewVerifier(corpus.PublicURL, corpus.Token)
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := webhook.New(webhook.Config{Verifier: verifier, Store: events, Logger: quiet, Ready: ready(events)})
	if err != nil {
		t.Fatal(err)
	}
	httpSrv := httptest.NewServer(hooks)
	httpSrv.Client().Timeout = failBound
	t.Cleanup(httpSrv.Close)

	qs, err := query.New(query.Config{Calls: calls, History: events, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	conn := grpctest.Serve(t, qs.Register)

	s.http, s.client = httpSrv, callledgerv1.NewCallQueryServiceClient(conn)
	return s
}

// ready is serve's readiness check: a cheap read of the store.
func ready(events eventstore.Store) func(context.Context) error {
	if p, ok := events.(interface{ Ping(context.Context) error }); ok {
		return p.Ping
	}
	return func(ctx context.Context) error {
		_, err := events.Head(ctx)
		return err
	}
}

// readyz returns the status code of the stack's GET /readyz.
func (s *stack) readyz() (int, error) {
	resp, err := s.http.Client().Get(s.http.URL + "/readyz")
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// send delivers a captured request unchanged, as Twilio would, and returns
// the answer's status code and Callledger-Position (0 when absent). Safe
// from any goroutine.
func (s *stack) send(r corpus.Request) (int, eventstore.Position, error) {
	req, err := http.NewRequest(r.Method, s.http.URL+r.URI(), strings.NewReader(r.Body))
	if err != nil {
		return 0, 0, err
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.http.Client().Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("seq %d: %w", r.Seq, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var pos eventstore.Position
	if h := resp.Header.Get(webhook.PositionHeader); h != "" {
		n, err := strconv.ParseUint(h, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("seq %d: %s %q: %w", r.Seq, webhook.PositionHeader, h, err)
		}
		pos = eventstore.Position(n)
		s.mu.Lock()
		s.maxSeen = max(s.maxSeen, pos)
		s.mu.Unlock()
	}
	return resp.StatusCode, pos, nil
}

// deliver sends r and checks the answer is the one the corpus expects:
// its status code, and a commit position exactly on the successes.
func (s *stack) deliver(t *testing.T, r corpus.Request) {
	code, pos, err := s.send(r)
	if err != nil {
		t.Error(err)
		return
	}
	if code != r.ExpectHTTP {
		t.Errorf("seq %d (%s, %s): HTTP %d, want %d", r.Seq, r.Kind, r.Scenario, code, r.ExpectHTTP)
	}
	if success := code/100 == 2; success != (pos > 0) {
		t.Errorf("seq %d: HTTP %d with position %d", r.Seq, code, pos)
	}
}

// seen is the highest position answered so far: reading with it as
// min_position sees every acknowledged request.
func (s *stack) seen() eventstore.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxSeen
}

// getCall reads a call at least as recent as every acknowledged request.
func (s *stack) getCall(ctx context.Context, sid string) (*callledgerv1.GetCallResponse, error) {
	return s.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid, MinPosition: uint64(s.seen())})
}

func mustCorpus(t *testing.T) ([]corpus.Request, []corpus.Expected, []corpus.Absent) {
	t.Helper()
	reqs, err := corpus.Requests()
	if err != nil {
		t.Fatal(err)
	}
	exp, err := corpus.ExpectedCalls()
	if err != nil {
		t.Fatal(err)
	}
	abs, err := corpus.AbsentCalls()
	if err != nil {
		t.Fatal(err)
	}
	return reqs, exp, abs
}
