package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore/pebblestore/pebblestoretest"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/twilio"
)

// TestRepeatedParameterForgery: Twilio signs every distinct value of a
// repeated parameter. A captured callback with another value of one of its
// parameters appended verifies only under the first-value reading, and is
// refused; with one of its own pairs appended again it is the same signed
// request, and is stored once.
func TestRepeatedParameterForgery(t *testing.T) {
	t.Parallel()
	status := firstOfKind(t, "status")
	form, err := url.ParseQuery(status.Body)
	if err != nil {
		t.Fatal(err)
	}
	orig := form.Get("CallStatus")
	other := "completed"
	if orig == other {
		other = "busy"
	}
	store := pebblestoretest.Open(t)
	srv := newServer(t, store, nil)
	stream := eventcodec.CallStream(form.Get("CallSid"))

	forged := status
	forged.Body = status.Body + "&CallStatus=" + other
	if resp := do(t, srv, forged); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another CallStatus appended: HTTP %d, want 403", resp.StatusCode)
	}
	if n := len(readAll(t, store)); n != 0 {
		t.Fatalf("the forgery stored %d events", n)
	}

	if resp := do(t, srv, status); resp.StatusCode/100 != 2 {
		t.Fatalf("the captured callback: HTTP %d", resp.StatusCode)
	}
	again := status
	again.Body = status.Body + "&CallStatus=" + url.QueryEscape(orig)
	if resp := do(t, srv, again); resp.StatusCode/100 != 2 {
		t.Fatalf("its own pair appended: HTTP %d, want a 2xx (Twilio signs the value once)", resp.StatusCode)
	}
	if got := streamLen(t, store, stream); got != 1 {
		t.Errorf("%s holds %d events, want 1: the copy is the same fact", stream, got)
	}
}

// TestGETFragmentIgnored: what follows a '#' in a GET callback's request
// line is not signed, so it is neither derived from nor stored: the request
// is the same fact as without it.
func TestGETFragmentIgnored(t *testing.T) {
	t.Parallel()
	const sid = "CA0123456789abcdef0123456789abcdef"
	query := "AccountSid=AC0123456789abcdef0123456789abcdef&CallSid=" + sid + "&CallStatus=ringing&SequenceNumber=0"
	uri := "/twilio/voice/status?" + query
	sig := twilio.Sign(corpus.Token, corpus.PublicURL+uri, nil)
	store := pebblestoretest.Open(t)
	srv := newServer(t, store, nil)

	// http.Client never sends a fragment: write the request line by hand.
	rawGET := func(target string) int {
		t.Helper()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: " + sig + "\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := rawGET(uri + "#CallStatus=completed&X=1"); got != http.StatusNoContent {
		t.Fatalf("GET with a fragment: HTTP %d, want 204", got)
	}
	if got := rawGET(uri); got != http.StatusNoContent {
		t.Fatalf("GET: HTTP %d, want 204", got)
	}
	recs, err := store.ReadStream(context.Background(), eventcodec.CallStream(sid), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d events stored, want 1: the fragment made a second fact", len(recs))
	}
	ev, err := eventcodec.Decode(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.GetCallStatusReported().GetStatusRaw(); got != "ringing" {
		t.Errorf("status %q, want ringing", got)
	}
	if got, want := ev.GetRequest().GetUrl(), corpus.PublicURL+uri; got != want {
		t.Errorf("stored URL %q, want the signed %q", got, want)
	}
}

// TestRefusalLogsNoBody: the log line of a refused request holds no byte
// of its body, which nothing has authenticated: not of a malformed form,
// not of one with a bad signature.
func TestRefusalLogsNoBody(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	store := pebblestoretest.Open(t)
	srv := newServer(t, store, func(c *webhook.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	})
	for _, body := range []string{"CallSid=MARKER1%zz&CallStatus=MARKER2", "CallSid=MARKER1;x=MARKER2", "CallSid=MARKER1&CallStatus=MARKER2"} {
		r := corpus.Request{Method: http.MethodPost, Path: "/twilio/voice/status", Body: body, Headers: map[string]string{
			"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": twilio.Sign("wrong", corpus.PublicURL+"/twilio/voice/status", []byte(body)),
		}}
		if resp := do(t, srv, r); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%q: HTTP %d, want 403", body, resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "refused: signature") {
		t.Fatalf("no refusal logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "MARKER") {
		t.Errorf("the log holds bytes of an unauthenticated body:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
