package e2e_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/instrument"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/server/servertest"
	"github.com/callledger/callledger/services/webhook"
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

// stack is callledger on loopback, built through the composition root as
// serve builds it: webhooks over HTTP and queries over gRPC, on one event
// store, with the read model fed by the projection.
type stack struct {
	srv    *server.Server
	url    string // base URL of the HTTP listener
	httpc  *http.Client
	client callledgerv1.CallQueryServiceClient
	events eventstore.Store
	// projection records every batch the call-state projection applied.
	projection *projectionRecorder

	// On the kurrentDB backend, the stand-in server and the adapter, for
	// fault injection and the adapter's counters.
	kdb    *kurrentdbtest.Server
	kstore *kurrentdb.Store

	mu      sync.Mutex
	maxSeen eventstore.Position // highest Callledger-Position answered
}

// newStack runs the stack on the embedded store.
func newStack(t testing.TB) *stack { return newStackOn(t, embedded) }

// newStackOn runs the stack on backend b, wired as serve wires it: on
// KurrentDB, the stand-in's connection string is the store URL, as
// `serve --store esdb://…` is given it.
func newStackOn(t testing.TB, b backend) *stack {
	t.Helper()
	return newStackWith(t, b, server.Config{})
}

// newStackWith is newStackOn with cfg's settings (the test's own data
// directory, disk, seams) on top of the stack's.
func newStackWith(t testing.TB, b backend, cfg server.Config) *stack {
	t.Helper()
	s := &stack{projection: newProjectionRecorder()}
	cfg.Seams.ProjectionSubscription = s.projection.wrap
	switch b {
	case embedded:
	case kurrentDB:
		kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kdb.Close) // registered first: runs after the server has stopped
		s.kdb, cfg.StoreURL = kdb, kdb.ConnString()
	default:
		t.Fatalf("unknown backend %q", b)
	}
	s.srv = runServer(t, cfg)
	s.events = s.srv.Store()
	if b == kurrentDB {
		s.kstore = instrument.Unwrap(s.events).(*kurrentdb.Store)
	}
	s.url, s.httpc = "http://"+s.srv.Addrs().HTTP, &http.Client{Timeout: failBound}
	s.client = callledgerv1.NewCallQueryServiceClient(dialServer(t, s.srv))
	return s
}

// runServer builds the server cfg describes through the composition root,
// on loopback ports, in a data directory of the test's own, with the
// corpus's token and public URL and a quiet log (unless cfg says
// otherwise), and runs it until the test ends; it must then stop cleanly.
func runServer(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	cfg.HTTP.AuthToken = cmp.Or(cfg.HTTP.AuthToken, corpus.Token)
	cfg.HTTP.PublicURL = cmp.Or(cfg.HTTP.PublicURL, corpus.PublicURL)
	return startServer(t, cfg)
}

// startServer runs the server cfg describes on loopback ports, as it is:
// without a Twilio auth token it is in development mode, as `make run` is.
func startServer(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	cfg.HTTP.Addr, cfg.GRPC.Addr = "127.0.0.1:0", "127.0.0.1:0"
	srv, _ := servertest.Start(t, cfg)
	return srv
}

// dialServer opens a gRPC connection to srv that authenticates with its
// local API token, as a client on the same machine does.
func dialServer(t testing.TB, srv *server.Server) *grpc.ClientConn {
	t.Helper()
	tok, err := server.ReadLocalAPIToken(srv.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	return grpctest.Dial(t, srv.Addrs().GRPC, grpctest.Token(tok))
}

// readyz returns the status code of the stack's GET /readyz.
func (s *stack) readyz() (int, error) {
	resp, err := s.httpc.Get(s.url + "/readyz")
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
	req, err := http.NewRequest(r.Method, s.url+r.URI(), strings.NewReader(r.Body))
	if err != nil {
		return 0, 0, err
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.httpc.Do(req)
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
