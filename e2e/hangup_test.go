package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

const (
	account    = "AC0123456789abcdef0123456789abcdef"
	agentToken = "agent-42-token"
	// accountToken is the auth token of account in --twilio-accounts.
	accountToken = "resttoken"
)

// commandStack is callledger as serve builds it with REST credentials:
// webhooks over HTTP, queries and commands over gRPC, the reconciler, and
// a fake Twilio REST API reached through the REST client's transport.
type commandStack struct {
	url      string // base URL of the HTTP listener
	httpc    *http.Client
	query    callledgerv1.CallQueryServiceClient
	commands callledgerv1.CallCommandServiceClient
	twilio   *resttest.Fake
}

func newCommandStack(t *testing.T, idleAfter time.Duration) *commandStack {
	t.Helper()
	// The account's auth token authenticates its REST calls and signs its
	// webhooks (post signs them with it).
	creds := rest.Account{AccountSid: account, AuthToken: accountToken}
	fake := resttest.New(t, creds)
	// The credentials reach the server as in production, through the
	// file of --twilio-accounts.
	accounts := filepath.Join(t.TempDir(), "accounts.json")
	file, err := json.Marshal(map[string]any{"accounts": []map[string]string{{"account_sid": creds.AccountSid, "auth_token": creds.AuthToken}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(accounts, file, 0o600); err != nil {
		t.Fatal(err)
	}
	// The client is the principal agent-42: its hang-ups are recorded as
	// requested by it.
	tokens := filepath.Join(t.TempDir(), "api-tokens.json")
	tokensFile, err := json.Marshal(grpcauth.TokensFile{Tokens: []grpcauth.TokenEntry{{Principal: "agent-42", SHA256: grpcauth.HashToken(agentToken), Scopes: grpcauth.Scopes()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokens, tokensFile, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &errorLog{}
	t.Cleanup(func() { // registered first: runs after the server has stopped
		for _, msg := range logs.messages() {
			if strings.HasPrefix(msg, "reconciler stopped") {
				t.Errorf("reconciler: %s", msg)
			}
		}
	})
	srv := runServer(t, server.Config{
		Twilio:    server.Twilio{AccountsFile: accounts},
		GRPC:      server.GRPC{APITokens: tokens},
		Reconcile: server.Reconcile{IdleAfter: idleAfter, Interval: 20 * time.Millisecond},
		Logger:    slog.New(logs),
		Seams:     server.Seams{RESTTransport: fake.Transport()},
	})
	conn := grpctest.Dial(t, srv.Addrs().GRPC, grpctest.Token(agentToken))
	return &commandStack{
		url: "http://" + srv.Addrs().HTTP, httpc: &http.Client{Timeout: failBound},
		query: callledgerv1.NewCallQueryServiceClient(conn), commands: callledgerv1.NewCallCommandServiceClient(conn), twilio: fake,
	}
}

// errorLog is a log handler that keeps the server's error records (message
// and error), for checks of what must never fail.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelError }

func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			msg += ": " + a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, msg)
	return nil
}

func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

func (l *errorLog) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

var start = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// callback is one status callback's form, as Twilio posts it.
func callback(sid, status string, seq int, extra ...string) url.Values {
	f := url.Values{
		"CallSid": {sid}, "AccountSid": {account}, "CallStatus": {status}, "SequenceNumber": {strconv.Itoa(seq)},
		"Timestamp":      {start.Add(time.Duration(seq) * 10 * time.Second).Format("Mon, 2 Jan 2006 15:04:05 -0700")},
		"CallbackSource": {"call-progress-events"}, "From": {"+15550000001"}, "To": {"+15550000002"}, "Direction": {"outbound-api"},
		"ApiVersion": {"2010-04-01"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

// post sends a signed request as Twilio would and returns its position.
func (s *commandStack) post(t *testing.T, uri, contentType string, body []byte) uint64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+uri, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	// Twilio signs a callback with the auth token of the account it names;
	// the Event Streams sink, which names none, is the main account's.
	token := corpus.Token
	if f, err := url.ParseQuery(string(body)); err == nil && contentType == "application/x-www-form-urlencoded" && f.Get("AccountSid") == account {
		token = accountToken
	}
	req.Header.Set("X-Twilio-Signature", twilio.Sign(token, corpus.PublicURL+uri, body))
	resp, err := s.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: HTTP %d", uri, resp.StatusCode)
	}
	pos, err := strconv.ParseUint(resp.Header.Get(webhook.PositionHeader), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func (s *commandStack) status(t *testing.T, f url.Values) uint64 {
	t.Helper()
	return s.post(t, "/twilio/voice/status", "application/x-www-form-urlencoded", []byte(f.Encode()))
}

// eventStreams delivers the Event Streams copy of a callback, data as an
// object or as a JSON string.
func (s *commandStack) eventStreams(t *testing.T, id string, f url.Values, dataAsString bool) uint64 {
	t.Helper()
	params := map[string]string{}
	for k := range f {
		params[k] = f.Get(k)
	}
	data, err := json.Marshal(map[string]any{
		"sid": f.Get("CallSid"), "timestamp": start.Format(time.RFC3339),
		"request": map[string]any{"method": "POST", "url": corpus.PublicURL + "/twilio/voice/status", "parameters": params},
	})
	if err != nil {
		t.Fatal(err)
	}
	event := f.Get("CallStatus")
	if event == "in-progress" {
		event = "answered"
	}
	var dataField any = json.RawMessage(data)
	if dataAsString {
		dataField = string(data)
	}
	body, err := json.Marshal([]map[string]any{{
		"specversion": "1.0", "type": "com.twilio.voice.status-callback.call." + event,
		"source": "/2010-04-01/Accounts/" + account + "/Calls/" + f.Get("CallSid"), "id": id, "time": start.Format(time.RFC3339),
		"dataschema": "https://events-schemas.twilio.com/Voice.WebhookEvent/2", "datacontenttype": "application/json", "data": dataField,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s.post(t, "/twilio/events?bodySHA256="+twilio.BodySHA256(body), "application/json", body)
}

func (s *commandStack) getCall(t *testing.T, sid string, pos uint64) *callledgerv1.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	resp, err := s.query.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid, MinPosition: pos})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetCall()
}

// waitCall waits until sid is as ok says.
func (s *commandStack) waitCall(t *testing.T, sid string, ok func(*callledgerv1.Call) bool) *callledgerv1.Call {
	t.Helper()
	deadline := time.Now().Add(failBound)
	for {
		c := s.getCall(t, sid, 0)
		if ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached the expected state: %v", sid, c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHangupEndToEnd: a hang-up request shows as ending at once, while the
// REST update is still on its way to Twilio; Twilio receives it; the late
// completed callback then makes the call terminal.
func TestHangupEndToEnd(t *testing.T) {
	t.Parallel()
	s := newCommandStack(t, time.Hour)
	sid := "CA1000000000000000000000000000000a"
	s.status(t, callback(sid, "initiated", 0))
	s.status(t, callback(sid, "ringing", 1))
	pos := s.status(t, callback(sid, "in-progress", 2))
	s.twilio.Put(resttest.Call{Sid: sid, AccountSid: account, Status: "in-progress", StartTime: start.Add(20 * time.Second)})
	if c := s.getCall(t, sid, pos); c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS {
		t.Fatalf("before the hang-up: %v", c)
	}

	s.twilio.Hold() // the REST update waits at Twilio until we have looked
	type result struct {
		resp *callledgerv1.RequestHangupResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := s.commands.RequestHangup(context.Background(), &callledgerv1.RequestHangupRequest{
			CallSid: sid, RequestedBy: "agent-42", RequestId: "click-1", EndCall: true,
		})
		done <- result{resp, err}
	}()
	var update resttest.Request
	select {
	case update = <-s.twilio.Updates():
	case r := <-done:
		t.Fatalf("RequestHangup answered before its update reached Twilio: %v, %v", r.resp, r.err)
	case <-time.After(failBound):
		t.Fatalf("no REST update reached Twilio within %v", failBound)
	}
	// The update is at Twilio, not answered: the call already shows as
	// ending, to every reader (the request was recorded before it was
	// sent).
	c := s.waitCall(t, sid, func(c *callledgerv1.Call) bool { return c.GetHangupRequest() != nil })
	if !c.GetEnding() || c.GetTerminal() || c.GetHangupRequest().GetRequestedBy() != "agent-42" {
		t.Errorf("while the update is in flight: %v", c)
	}
	if update.Form.Get("Status") != "completed" || !strings.HasSuffix(update.Path, "/Calls/"+sid+".json") || update.User != account {
		t.Errorf("Twilio received %+v", update)
	}
	s.twilio.Release()
	var r result
	select {
	case r = <-done:
	case <-time.After(failBound):
		t.Fatalf("RequestHangup did not answer within %v of Twilio's", failBound)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	c = s.getCall(t, sid, r.resp.GetOutcomePosition())
	if !c.GetEnding() || c.GetHangupRequest().GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT {
		t.Errorf("after Twilio accepted: %v", c)
	}
	// The completed callback, late as usual, ends it.
	pos = s.status(t, callback(sid, "completed", 3, "CallDuration", "42"))
	c = s.getCall(t, sid, pos)
	if !c.GetTerminal() || c.GetEnding() || c.GetStatusSource() != callledgerv1.Source_SOURCE_STATUS_CALLBACK || c.GetDurationSeconds() != 42 {
		t.Errorf("after the completed callback: %v", c)
	}
}

// TestLostFinalCallbackIsReconciled: a call whose completed callback never
// came is terminal once the reconciler has asked Twilio.
func TestLostFinalCallbackIsReconciled(t *testing.T) {
	t.Parallel()
	s := newCommandStack(t, 200*time.Millisecond)
	sid := "CA2000000000000000000000000000000b"
	s.status(t, callback(sid, "initiated", 0))
	s.status(t, callback(sid, "in-progress", 2))
	s.twilio.Put(resttest.Call{Sid: sid, AccountSid: account, Status: "completed", Duration: "95",
		StartTime: start.Add(20 * time.Second), EndTime: start.Add(115 * time.Second)})
	c := s.waitCall(t, sid, func(c *callledgerv1.Call) bool { return c.GetTerminal() })
	if c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED || c.GetStatusSource() != callledgerv1.Source_SOURCE_RECONCILIATION ||
		c.GetDurationSeconds() != 95 || !c.GetEndedAt().AsTime().Equal(start.Add(115*time.Second)) {
		t.Errorf("after reconciliation: %v", c)
	}
}

// TestEventStreamsCopiesAddNoState: a call whose callbacks also arrive
// through Event Streams (data as an object and as a JSON string, one copy
// redelivered) has exactly the state of a call that got the callbacks
// alone; only its event count shows the copies.
func TestEventStreamsCopiesAddNoState(t *testing.T) {
	t.Parallel()
	s := newCommandStack(t, time.Hour)
	plain, copied := "CA3000000000000000000000000000000c", "CA3000000000000000000000000000000d"
	steps := func(sid string) []url.Values {
		return []url.Values{callback(sid, "ringing", 1), callback(sid, "in-progress", 2), callback(sid, "completed", 3, "CallDuration", "61")}
	}
	var last uint64
	for _, f := range steps(plain) {
		last = max(last, s.status(t, f))
	}
	for i, f := range steps(copied) {
		last = max(last, s.status(t, f))
		id := fmt.Sprintf("EZ%032x", i)
		first := s.eventStreams(t, id, f, i%2 == 1)
		if again := s.eventStreams(t, id, f, i%2 == 1); again != first {
			t.Errorf("redelivery of %s answered position %d, the original %d", id, again, first)
		}
		last = max(last, first)
	}
	want, got := s.getCall(t, plain, last), s.getCall(t, copied, last)
	if got.GetEventCount() != 6 {
		t.Errorf("%d events, want 3 callbacks and 3 copies", got.GetEventCount())
	}
	for _, c := range []*callledgerv1.Call{want, got} {
		c.CallSid, c.RootCallSid, c.EventCount, c.LastPosition = "", "", 0, 0
	}
	if !proto.Equal(want, got) {
		t.Errorf("Event Streams copies changed the state:\ncallbacks only: %v\nwith copies:    %v", want, got)
	}
}
