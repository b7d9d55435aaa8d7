package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/internal/golden"
	"github.com/callledger/callledger/internal/realcorpus"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/twilio"
)

var updateReal = flag.Bool("update-real", false,
	"rewrite testdata/twilio-real/folded.json, what the real-world corpus folds into: only after a deliberate change, and read the diff")

// realClock is the webhooks' clock while the real-world corpus is
// replayed: received_at, the time of every fact whose request carries
// none, must not depend on when the test runs.
var realClock = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)

// realFolded is what the real-world corpus folds into, as committed.
type realFolded struct {
	// Payloads says where each payload was filed: its streams and, when
	// quarantined, why.
	Payloads []realFiled `json:"payloads"`
	// Calls and Conferences are every call and conference the payloads
	// name, as GetCall and GetConference serve them (without last_position,
	// which depends on the order of delivery).
	Calls       []json.RawMessage `json:"calls"`
	Conferences []json.RawMessage `json:"conferences"`
}

type realFiled struct {
	ID      string   `json:"id"`
	Streams []string `json:"streams"`
	Reasons []string `json:"quarantined,omitempty"`
}

// signedRequest is a payload as Twilio sends it to the stack: signed with
// the corpus's token for its public URL (an Event Streams delivery with
// bodySHA256 in its query).
func signedRequest(t *testing.T, s *stack, p realcorpus.Payload) *http.Request {
	t.Helper()
	uri, body := p.Route, ""
	var signedBody []byte
	switch {
	case p.Kind == realcorpus.KindEvents:
		body = p.Body
		uri += "?bodySHA256=" + twilio.BodySHA256([]byte(body))
	case p.Method == http.MethodGet:
		uri += "?" + p.Encode()
	default:
		body = p.Encode()
		signedBody = []byte(body)
	}
	req, err := http.NewRequest(p.Method, s.url+uri, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", p.ContentType)
	req.Header.Set("X-Twilio-Signature", twilio.Sign(corpus.Token, corpus.PublicURL+uri, signedBody))
	return req
}

// TestRealWorldCorpus replays every payload of the real-world corpus
// (testdata/twilio-real: requests other people wrote or captured, not our
// generator's), each signed and sent twice as Twilio retries, in a random
// order, over HTTP to the server serve runs; then reads back over gRPC
// every call and conference they name and compares them field by field
// with testdata/twilio-real/folded.json, together with where each payload
// was filed (its call's or conference's stream, or quarantine and why).
// Every payload filed under a call is in that call's history. The
// corpus's README says what callledger makes of each oddity.
func TestRealWorldCorpus(t *testing.T) {
	t.Parallel()
	payloads, err := realcorpus.Load(realcorpus.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(payloads) < 30 {
		t.Fatalf("%d payloads in the real-world corpus, want at least 30", len(payloads))
	}
	s := &stack{projection: newProjectionRecorder()}
	s.srv = runServer(t, server.Config{Seams: server.Seams{ProjectionSubscription: s.projection.wrap, WebhookClock: func() time.Time { return realClock }}})
	s.events = s.srv.Store()
	s.url, s.httpc = "http://"+s.srv.Addrs().HTTP, &http.Client{Timeout: failBound}
	s.client = callledgerv1.NewCallQueryServiceClient(dialServer(t, s.srv))

	// Every payload twice, shuffled.
	var order []int
	for i := range payloads {
		order = append(order, i, i)
	}
	seed := rand.Uint64()
	t.Logf("shuffle seed %d", seed)
	rand.New(rand.NewPCG(seed, seed)).Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
	for _, i := range order {
		p := payloads[i]
		resp, err := s.httpc.Do(signedRequest(t, s, p))
		if err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want := http.StatusNoContent
		switch p.Kind {
		case realcorpus.KindDial, realcorpus.KindEvents:
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("%s: HTTP %d, want %d", p.ID, resp.StatusCode, want)
		}
		var pos uint64
		if _, err := fmt.Sscan(resp.Header.Get("Callledger-Position"), &pos); err != nil || pos == 0 {
			t.Errorf("%s: no Callledger-Position (%v)", p.ID, err)
		}
		s.mu.Lock()
		s.maxSeen = max(s.maxSeen, eventstore.Position(pos))
		s.mu.Unlock()
	}

	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	var got realFolded
	calls, confs := map[string]bool{}, map[string]bool{}
	for _, p := range payloads {
		// Where the server filed it is where its derivation says.
		req := signedRequest(t, s, p)
		body, _ := io.ReadAll(req.Body)
		kind, _ := twilio.KindOfPath(p.Route)
		filed := realFiled{ID: p.ID}
		for _, d := range twilio.Derive(kind, &twilio.Request{Method: p.Method, URL: corpus.PublicURL + req.URL.RequestURI(), RawQuery: req.URL.RawQuery,
			ContentType: p.ContentType, Body: body}) {
			filed.Streams = append(filed.Streams, d.Stream)
			if q := d.Event.GetRequestQuarantined(); q != nil {
				filed.Reasons = append(filed.Reasons, q.GetReason())
			}
			checkStoredOnce(ctx, t, s, p.ID, d.Stream, d.Event.GetEventId())
			if sid, ok := eventcodec.CallSidOf(d.Stream); ok {
				calls[sid] = true
			}
			if c := d.Event.GetConferenceEventReported(); c != nil {
				confs[c.GetConferenceSid()] = true
				if eventcodec.ValidCallSid(c.GetCallSid()) {
					calls[c.GetCallSid()] = true
				}
			}
		}
		got.Payloads = append(got.Payloads, filed)
	}
	for _, sid := range sortedKeys(calls) {
		resp, err := s.getCall(ctx, sid)
		if err != nil {
			t.Fatalf("GetCall %s: %v", sid, err)
		}
		for _, leg := range resp.GetLegs() {
			calls[leg.GetCallSid()] = true // a placeholder parent, a dialled child
		}
	}
	for _, sid := range sortedKeys(calls) {
		resp, err := s.getCall(ctx, sid)
		if err != nil {
			t.Fatalf("GetCall %s: %v", sid, err)
		}
		c := proto.CloneOf(resp.GetCall())
		c.LastPosition = 0
		got.Calls = append(got.Calls, goldenJSON(t, c))
	}
	for _, sid := range sortedKeys(confs) {
		resp, err := s.client.GetConference(ctx, &callledgerv1.GetConferenceRequest{ConferenceSid: sid, MinPosition: uint64(s.seen())})
		if err != nil {
			t.Fatalf("GetConference %s: %v", sid, err)
		}
		c := proto.CloneOf(resp.GetConference())
		c.LastPosition = 0
		got.Conferences = append(got.Conferences, goldenJSON(t, c))
	}
	path := filepath.Join(realcorpus.Dir(), "folded.json")
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(got); err != nil {
		t.Fatal(err)
	}
	if *updateReal {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with -update-real)", err)
	}
	if !bytes.Equal(normalizeJSON(t, want), normalizeJSON(t, b.Bytes())) {
		t.Errorf("the real-world corpus folds differently from %s (rewrite with -update-real after a deliberate change, and read the diff):\n%s",
			path, firstDiff(string(normalizeJSON(t, want)), string(normalizeJSON(t, b.Bytes()))))
	}
	s.projection.checkExactlyOnce(ctx, t, s.events)
}

// checkStoredOnce checks that the event of a payload is stored in stream
// once (sent twice), and, in a call's stream, that it is in the call's
// history.
func checkStoredOnce(ctx context.Context, t *testing.T, s *stack, id, stream, eventID string) {
	t.Helper()
	recs, err := s.events.ReadStream(ctx, stream, 0, 10000)
	if err != nil {
		t.Fatalf("%s: read %s: %v", id, stream, err)
	}
	n := 0
	for _, r := range recs {
		if r.ID == uuid.MustParse(eventID) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%s: event %s stored %d times in %s, want once", id, eventID, n, stream)
	}
	sid, ok := eventcodec.CallSidOf(stream)
	if !ok {
		return
	}
	hist, err := s.client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: sid, PageSize: 1000})
	if err != nil {
		t.Fatalf("%s: ListCallEvents %s: %v", id, sid, err)
	}
	if !slices.ContainsFunc(hist.GetEvents(), func(e *callledgerv1.StoredEvent) bool { return e.GetEvent().GetEventId() == eventID }) {
		t.Errorf("%s: event %s is not in the history of %s", id, eventID, sid)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func goldenJSON(t *testing.T, m proto.Message) json.RawMessage {
	t.Helper()
	b, err := golden.JSON(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// normalizeJSON re-indents a JSON document, so that committed files
// compare by content.
func normalizeJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// firstDiff shows the first line where want and got differ, with some
// context.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		if i >= len(w) || i >= len(g) || w[i] != g[i] {
			lo := max(0, i-5)
			return fmt.Sprintf("want (line %d):\n%s\ngot:\n%s", i+1, strings.Join(w[lo:min(len(w), i+6)], "\n"), strings.Join(g[lo:min(len(g), i+6)], "\n"))
		}
	}
	return ""
}
