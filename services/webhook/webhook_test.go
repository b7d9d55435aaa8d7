package webhook_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/eventstore/pebblestore/pebblestoretest"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/keystore/keystoretest"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/twilio"
)

func newServer(t *testing.T, store webhook.Appender, mod func(*webhook.Config)) *httptest.Server {
	t.Helper()
	v, err := twilio.NewVerifier(corpus.PublicURL, corpus.Token)
	if err != nil {
		t.Fatal(err)
	}
	cfg := webhook.Config{Verifier: v, Store: store}
	if mod != nil {
		mod(&cfg)
	}
	h, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// send sends a captured request unchanged; safe from any goroutine.
func send(srv *httptest.Server, r corpus.Request) (*http.Response, error) {
	req, err := http.NewRequest(r.Method, srv.URL+r.URI(), strings.NewReader(r.Body))
	if err != nil {
		return nil, err
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// do is send for the test goroutine.
func do(t *testing.T, srv *httptest.Server, r corpus.Request) *http.Response {
	t.Helper()
	resp, err := send(srv, r)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// code is send for other goroutines: 0 on a transport error.
func code(t *testing.T, srv *httptest.Server, r corpus.Request) int {
	resp, err := send(srv, r)
	if err != nil {
		t.Errorf("seq %d: %v", r.Seq, err)
		return 0
	}
	return resp.StatusCode
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

func readAll(t *testing.T, s eventstore.Store) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	from := eventstore.Start
	for {
		batch, err := s.ReadAll(context.Background(), from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			return out
		}
		out = append(out, batch...)
		from = batch[len(batch)-1].Position
	}
}

func streamLen(t *testing.T, s eventstore.Store, stream string) int {
	t.Helper()
	evs, err := s.ReadStream(context.Background(), stream, 0, 10_000)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// checkLedger asserts the store holds exactly what the corpus says: each
// call's own events, the quarantined requests, and nothing of the forged.
func checkLedger(t *testing.T, store eventstore.Store, reqs []corpus.Request, exp []corpus.Expected, abs []corpus.Absent) {
	t.Helper()
	total := 0
	for _, e := range exp {
		if got := streamLen(t, store, eventcodec.CallStream(e.CallSid)); got != e.OwnEvents {
			t.Errorf("%s (%s): %d events stored, want %d", e.CallSid, e.Scenario, got, e.OwnEvents)
		}
		total += e.OwnEvents
	}
	for _, a := range abs {
		if got := streamLen(t, store, eventcodec.CallStream(a.CallSid)); got != 0 {
			t.Errorf("forged %s (%s): %d events stored, want none", a.CallSid, a.Reason, got)
		}
	}
	quarantined := map[string]bool{}
	for _, r := range reqs {
		if r.Kind == "quarantine" {
			quarantined[r.Body+"?"+r.Query] = true
		}
	}
	total += len(quarantined)
	if got := len(readAll(t, store)); got != total {
		t.Errorf("log holds %d events, want %d (calls' own events plus %d quarantined)", got, total, len(quarantined))
	}
}

func TestCorpusAnswersAndStoresEachFactOnce(t *testing.T) {
	t.Parallel()
	reqs, exp, abs := mustCorpus(t)
	store := pebblestoretest.Open(t)
	srv := newServer(t, store, nil)

	lastPos := map[int]string{}
	for _, r := range reqs {
		resp := do(t, srv, r)
		if resp.StatusCode != r.ExpectHTTP {
			t.Fatalf("seq %d (%s %s): got %d, want %d", r.Seq, r.Kind, r.Scenario, resp.StatusCode, r.ExpectHTTP)
		}
		pos := resp.Header.Get(webhook.PositionHeader)
		if r.ExpectHTTP == http.StatusForbidden {
			if pos != "" {
				t.Errorf("seq %d: forged request answered with a position %q", r.Seq, pos)
			}
			continue
		}
		if n, err := strconv.ParseUint(pos, 10, 64); err != nil || n == 0 {
			t.Errorf("seq %d: %s = %q, want a commit position", r.Seq, webhook.PositionHeader, pos)
		}
		if r.DupOf != nil && r.Kind != "events" {
			if want := lastPos[*r.DupOf]; pos != want {
				t.Errorf("seq %d retries seq %d: position %s, want the original's %s", r.Seq, *r.DupOf, pos, want)
			}
		}
		lastPos[r.Seq] = pos
		if r.Kind == "dial" && resp.Header.Get("Content-Type") != "text/xml; charset=utf-8" {
			t.Errorf("seq %d: Dial action answered %q, want TwiML", r.Seq, resp.Header.Get("Content-Type"))
		}
	}
	checkLedger(t, store, reqs, exp, abs)

	// Twilio retrying everything a second time stores nothing new.
	before := len(readAll(t, store))
	for _, r := range reqs {
		if resp := do(t, srv, r); resp.StatusCode != r.ExpectHTTP {
			t.Fatalf("replay of seq %d: got %d, want %d", r.Seq, resp.StatusCode, r.ExpectHTTP)
		}
	}
	if after := len(readAll(t, store)); after != before {
		t.Errorf("replaying the corpus grew the log from %d to %d events", before, after)
	}
}

func TestCorpusShuffledConcurrentWithDuplicates(t *testing.T) {
	t.Parallel()
	reqs, exp, abs := mustCorpus(t)
	store := pebblestoretest.Open(t)
	srv := newServer(t, store, nil)

	rng := rand.New(rand.NewPCG(7, 11))
	var sends []corpus.Request
	for _, r := range reqs {
		for n := 1 + rng.IntN(3); n > 0; n-- {
			sends = append(sends, r)
		}
	}
	rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })

	work := make(chan corpus.Request)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				if got := code(t, srv, r); got != r.ExpectHTTP {
					t.Errorf("seq %d: got %d, want %d", r.Seq, got, r.ExpectHTTP)
				}
			}
		}()
	}
	for _, r := range sends {
		work <- r
	}
	close(work)
	wg.Wait()
	checkLedger(t, store, reqs, exp, abs)
}

func firstOfKind(t *testing.T, kind string) corpus.Request {
	t.Helper()
	reqs, _, _ := mustCorpus(t)
	for _, r := range reqs {
		if r.Kind == kind {
			return r
		}
	}
	t.Fatalf("corpus has no %s request", kind)
	return corpus.Request{}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	status := firstOfKind(t, "status")
	signed := func(r corpus.Request) corpus.Request {
		r.Headers = map[string]string{
			"Content-Type":       "application/x-www-form-urlencoded",
			"X-Twilio-Signature": twilio.Sign(corpus.Token, corpus.PublicURL+r.URI(), []byte(r.Body)),
		}
		return r
	}
	big := status
	big.Body = status.Body + "&Padding=" + strings.Repeat("x", webhook.DefaultMaxBodyBytes)
	tampered := status
	tampered.Body = strings.Replace(status.Body, "CallStatus=", "CallStatus=x", 1)
	unsigned := status
	unsigned.Headers = map[string]string{"Content-Type": status.Headers["Content-Type"]}
	put := status
	put.Method = http.MethodPut
	eventsGet := signed(corpus.Request{Method: http.MethodGet, Path: "/twilio/events"})

	for _, tc := range []struct {
		name string
		req  corpus.Request
		want int
	}{
		{"tampered body", tampered, http.StatusForbidden},
		{"missing signature", unsigned, http.StatusForbidden},
		{"body over 64 KiB", signed(big), http.StatusRequestEntityTooLarge},
		{"wrong method", put, http.StatusMethodNotAllowed},
		{"GET on the Event Streams sink", eventsGet, http.StatusMethodNotAllowed},
		{"unknown route", signed(corpus.Request{Method: http.MethodPost, Path: "/twilio/voice/nope"}), http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := pebblestoretest.Open(t)
			srv := newServer(t, store, nil)
			if resp := do(t, srv, tc.req); resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.want)
			}
			if n := len(readAll(t, store)); n != 0 {
				t.Errorf("a refused request stored %d events", n)
			}
		})
	}
}

func TestStoreFailureAnswers503NeverSuccess(t *testing.T) {
	t.Parallel()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, store, nil)
	for _, kind := range []string{"status", "dial", "recording", "events", "quarantine"} {
		resp := do(t, srv, firstOfKind(t, kind))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s with the store closed: got %d, want 503", kind, resp.StatusCode)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", kind)
		}
	}
}

// gate is an Appender that holds appends until released, to observe what
// the handler does while appends are in flight.
type gate struct {
	next    webhook.Appender
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Append(ctx context.Context, stream string, exp eventstore.StreamState, evs ...eventstore.EventData) (eventstore.AppendResult, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.next.Append(ctx, stream, exp, evs...)
}

func TestSaturationAnswers503(t *testing.T) {
	t.Parallel()
	store := pebblestoretest.Open(t)
	g := &gate{next: store, entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := newServer(t, g, func(c *webhook.Config) { c.MaxInFlight = 1 })
	statuses := uniqueStatuses(t)

	first := make(chan int)
	go func() { first <- code(t, srv, statuses[0]) }()
	<-g.entered // the only slot is taken

	resp := do(t, srv, statuses[1])
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request while saturated: got %d (Retry-After %q), want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(g.release)
	if code := <-first; code != http.StatusNoContent {
		t.Errorf("first request: got %d, want 204", code)
	}
	if n := len(readAll(t, store)); n != 1 {
		t.Errorf("store holds %d events, want only the first request's", n)
	}
}

// uniqueStatuses are the corpus's status callbacks that are not retries.
func uniqueStatuses(t *testing.T) []corpus.Request {
	reqs, _, _ := mustCorpus(t)
	var statuses []corpus.Request
	for _, r := range reqs {
		if r.Kind == "status" && r.DupOf == nil {
			statuses = append(statuses, r)
		}
	}
	return statuses
}

// TestAppendWaitAnswers503: while the oldest append in flight has waited
// longer than MaxAppendWait, a new webhook is refused 503 at once, though
// far fewer than MaxInFlight are in flight; within the bound it is taken,
// and once the store has caught up, webhooks are taken again.
func TestAppendWaitAnswers503(t *testing.T) {
	t.Parallel()
	store := pebblestoretest.Open(t)
	g := &gate{next: store, entered: make(chan struct{}, 1), release: make(chan struct{})}
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC).UnixNano())
	v, err := twilio.NewVerifier(corpus.PublicURL, corpus.Token)
	if err != nil {
		t.Fatal(err)
	}
	h, err := webhook.New(webhook.Config{Verifier: v, Store: g, MaxAppendWait: time.Second,
		Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	statuses := uniqueStatuses(t)

	answers := make(chan int, 2)
	go func() { answers <- code(t, srv, statuses[0]) }()
	<-g.entered
	now.Add(int64(500 * time.Millisecond))
	go func() { answers <- code(t, srv, statuses[1]) }()
	<-g.entered // within the bound: taken, and waiting behind the first

	now.Add(int64(time.Second))
	if w := h.OldestAppendWait(); w != 1500*time.Millisecond {
		t.Errorf("OldestAppendWait %v, want the first append's 1.5s", w)
	}
	resp := do(t, srv, statuses[2])
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("request while appends wait past the bound: got %d (Retry-After %q), want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(g.release)
	for range 2 {
		if code := <-answers; code != http.StatusNoContent {
			t.Errorf("request taken before: got %d, want 204", code)
		}
	}
	if w := h.OldestAppendWait(); w != 0 {
		t.Errorf("OldestAppendWait %v with nothing in flight, want 0", w)
	}
	if code := code(t, srv, statuses[3]); code != http.StatusNoContent {
		t.Errorf("request once the store caught up: got %d, want 204", code)
	}
	if n := len(readAll(t, store)); n != 3 {
		t.Errorf("store holds %d events, want those of the three requests taken", n)
	}
}

func TestShutdownFinishesAppendsInFlight(t *testing.T) {
	t.Parallel()
	store := pebblestoretest.Open(t)
	g := &gate{next: store, entered: make(chan struct{}, 1), release: make(chan struct{})}
	v, err := twilio.NewVerifier(corpus.PublicURL, corpus.Token)
	if err != nil {
		t.Fatal(err)
	}
	h, err := webhook.New(webhook.Config{Verifier: v, Store: g})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Start()
	defer srv.Close()

	answered := make(chan int)
	status := firstOfKind(t, "status")
	go func() { answered <- code(t, srv, status) }()
	<-g.entered

	h.Drain()
	shut := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- srv.Config.Shutdown(ctx)
	}()
	// Shutdown waits for the handler, which waits for the append.
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned (%v) before the append in flight finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(g.release)
	if code := <-answered; code != http.StatusNoContent {
		t.Errorf("request in flight during shutdown: got %d, want 204", code)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if n := len(readAll(t, store)); n != 1 {
		t.Errorf("store holds %d events after shutdown, want 1", n)
	}
}

func TestProbes(t *testing.T) {
	t.Parallel()
	store := pebblestoretest.Open(t)
	ready := errors.New("store down")
	var mu sync.Mutex
	h, srv := func() (*webhook.Handler, *httptest.Server) {
		v, _ := twilio.NewVerifier(corpus.PublicURL, corpus.Token)
		h, err := webhook.New(webhook.Config{Verifier: v, Store: store, Ready: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			return ready
		}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return h, srv
	}()
	get := func(path string) int {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz: %d", got)
	}
	if got := get("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the store down: %d, want 503", got)
	}
	mu.Lock()
	ready = nil
	mu.Unlock()
	if got := get("/readyz"); got != http.StatusOK {
		t.Errorf("/readyz with the store up: %d, want 200", got)
	}
	h.Drain()
	if got := get("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d, want 503", got)
	}
}

// TestCorpusSealed: with a Sealer, the corpus stores the same events under
// the same IDs (retries still deduplicate), each with its personal fields
// sealed, and opening every one gives the event stored without sealing.
func TestCorpusSealed(t *testing.T) {
	t.Parallel()
	reqs, exp, abs := mustCorpus(t)
	keys := keystoretest.Open(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return at }
	sealedStore, plainStore := pebblestoretest.Open(t), pebblestoretest.Open(t)
	sealed := newServer(t, sealedStore, func(c *webhook.Config) { c.Sealer = seal.NewEvents(keys); c.Now = clock })
	plain := newServer(t, plainStore, func(c *webhook.Config) { c.Now = clock })
	for _, r := range reqs {
		for _, srv := range []*httptest.Server{sealed, plain} {
			if resp := do(t, srv, r); resp.StatusCode != r.ExpectHTTP {
				t.Fatalf("seq %d (%s %s): got %d, want %d", r.Seq, r.Kind, r.Scenario, resp.StatusCode, r.ExpectHTTP)
			}
		}
	}
	checkLedger(t, sealedStore, reqs, exp, abs)
	got, want := readAll(t, sealedStore), readAll(t, plainStore)
	if len(got) != len(want) {
		t.Fatalf("%d events sealed, %d plain", len(got), len(want))
	}
	opener := seal.NewEvents(keys)
	n := 0
	for i := range got {
		ev, err := eventcodec.Decode(got[i])
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetSealedRequest() == nil {
			t.Errorf("%s@%d: the request is not sealed", got[i].Stream, got[i].Revision)
		}
		if ev.GetRequest().GetBody() != nil || ev.GetCloudEvent().GetRaw() != nil {
			t.Errorf("%s@%d: the verbatim request is stored in the clear", got[i].Stream, got[i].Revision)
		}
		if ev.GetSealed() != nil {
			n++
		}
		if _, err := opener.Open(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		w, err := eventcodec.Decode(want[i])
		if err != nil {
			t.Fatal(err)
		}
		// The two servers' clients connect from different ports.
		for _, e := range []*callledgerv1.Event{ev, w} {
			if e.GetRequest() != nil {
				e.Request.RemoteAddr = ""
			}
		}
		if !proto.Equal(ev, w) || got[i].ID != want[i].ID || got[i].Stream != want[i].Stream {
			t.Fatalf("%s@%d opened:\n%v\nwant\n%v", got[i].Stream, got[i].Revision, ev, w)
		}
	}
	if n == 0 {
		t.Error("no event has sealed facts")
	}
}
