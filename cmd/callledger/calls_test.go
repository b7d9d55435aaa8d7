package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/server/servertest"
	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

const (
	clientTestToken = "clienttesttoken"
	clientPublicURL = "https://hooks.example.com"
	clientAccount   = "AC0123456789abcdef0123456789abcdef"
)

// liveServer is a server running in the test process, for the client
// commands.
type liveServer struct {
	grpc    string
	hooks   string
	dataDir string
	twilio  *resttest.Fake
}

// The API tokens of the client tests' servers, and their principals.
const (
	agentToken  = "agent-secret" // agent-7: every scope
	readerToken = "cli-secret"   // reader: calls:read
	envToken    = "env-secret"   // env: calls:read
)

// startLive runs a server with REST credentials on a fake Twilio, with the
// API tokens above (or, when local, the local API token in its data
// directory), and with interceptors when given (after authentication).
func startLive(t *testing.T, local bool, ic *server.Interceptors) *liveServer {
	t.Helper()
	// The account's auth token signs its webhooks and authenticates REST.
	creds := rest.Account{AccountSid: clientAccount, AuthToken: clientTestToken}
	fake := resttest.New(t, creds)
	dir := t.TempDir()
	file := filepath.Join(dir, "accounts.json")
	body, _ := json.Marshal(map[string]any{"accounts": []map[string]string{{"account_sid": creds.AccountSid, "auth_token": creds.AuthToken}}})
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	grpcCfg := server.GRPC{Addr: "127.0.0.1:0"}
	if !local {
		grpcCfg.APITokens = filepath.Join(dir, "api-tokens.json")
		tokens := fmt.Sprintf(`{"tokens":[
			{"principal":"agent-7","sha256":%q,"scopes":["calls:read","calls:hangup","projections:admin"]},
			{"principal":"reader","sha256":%q,"scopes":["calls:read"]},
			{"principal":"env","sha256":%q,"scopes":["calls:read"]}]}`,
			grpcauth.HashToken(agentToken), grpcauth.HashToken(readerToken), grpcauth.HashToken(envToken))
		if err := os.WriteFile(grpcCfg.APITokens, []byte(tokens), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := server.Config{
		DataDir:   t.TempDir(),
		HTTP:      server.HTTP{Addr: "127.0.0.1:0", AuthToken: clientTestToken, PublicURL: clientPublicURL},
		GRPC:      grpcCfg,
		Twilio:    server.Twilio{AccountsFile: file},
		Reconcile: server.Reconcile{IdleAfter: time.Hour, HangupAfter: time.Hour},
		Logger:    slog.New(slog.DiscardHandler),
		Seams:     server.Seams{RESTTransport: fake.Transport(), GRPCInterceptors: ic},
	}
	srv, _ := servertest.Start(t, cfg)
	return &liveServer{grpc: srv.Addrs().GRPC, hooks: "http://" + srv.Addrs().HTTP, dataDir: cfg.DataDir, twilio: fake}
}

// status sends a signed status callback and returns its position.
func (s *liveServer) status(t *testing.T, sid, callStatus string, seq int, extra ...string) uint64 {
	t.Helper()
	f := url.Values{
		"CallSid": {sid}, "AccountSid": {clientAccount}, "CallStatus": {callStatus}, "SequenceNumber": {strconv.Itoa(seq)},
		"Timestamp": {time.Now().UTC().Format("Mon, 2 Jan 2006 15:04:05 -0700")}, "Direction": {"outbound-api"},
		"From": {"+14155550100"}, "To": {"+14155550199"}, "CallbackSource": {"call-progress-events"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	body := []byte(f.Encode())
	req, err := http.NewRequest(http.MethodPost, s.hooks+"/twilio/voice/status", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilio.Sign(clientTestToken, clientPublicURL+"/twilio/voice/status", body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("webhook: HTTP %d", resp.StatusCode)
	}
	pos, err := strconv.ParseUint(resp.Header.Get("Callledger-Position"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func mustContain(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}

// TestCallsCommands: list, get, events, hangup and stats against a running
// server, in both output formats.
func TestCallsCommands(t *testing.T) {
	t.Parallel()
	s := startLive(t, false, nil)
	const (
		active = "CA1000000000000000000000000000000a"
		child  = "CA1000000000000000000000000000000b"
		ended  = "CA1000000000000000000000000000000c"
	)
	s.status(t, active, "ringing", 1)
	s.status(t, active, "in-progress", 2)
	s.status(t, child, "in-progress", 1, "ParentCallSid", active, "Direction", "outbound-dial")
	last := s.status(t, ended, "completed", 3, "CallDuration", "42")
	s.twilio.Put(resttest.Call{Sid: active, AccountSid: clientAccount, Status: "in-progress", StartTime: time.Now()})
	addr := []string{"--addr", s.grpc, "--token", agentToken}
	// A list reads what the projection has applied: wait for the last webhook.
	if _, err := cli(t, append([]string{"calls", "get", ended, "--min-position", strconv.FormatUint(last, 10)}, addr...)...); err != nil {
		t.Fatal(err)
	}

	out, err := cli(t, append([]string{"calls", "list"}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "calls list", out, "CALLSID", active, child, ended, "in-progress", "completed", "42s")
	out, err = cli(t, append([]string{"calls", "list", "--active", "--status", "in-progress", "--output", "json"}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	var sids []string
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var c struct {
			CallSid string `json:"callSid"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("json line %q: %v", line, err)
		}
		sids = append(sids, c.CallSid)
	}
	if len(sids) != 2 || strings.Contains(out, ended) {
		t.Errorf("active in-progress calls %v", sids)
	}
	if out, err = cli(t, append([]string{"calls", "list", "--limit", "1"}, addr...)...); err != nil || strings.Count(out, "\nCA") != 1 {
		t.Errorf("--limit 1: %v\n%s", err, out)
	}

	out, err = cli(t, append([]string{"calls", "get", active}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "calls get", out, active, "in-progress", "status-callback", "legs of the tree", child)

	out, err = cli(t, append([]string{"calls", "hangup", active, "--requested-by", "agent-7", "--request-id", "r-1"}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "calls hangup", out, "hang-up of "+active+" recorded", "request r-1, by agent-7", "Twilio accepted Status=completed")
	// A retry answers the original and sends nothing again.
	out, err = cli(t, append([]string{"calls", "hangup", active, "--requested-by", "agent-7", "--request-id", "r-1"}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "the retried hang-up", out, "had already been recorded")
	if n := s.twilio.Count(func(r resttest.Request) bool { return r.Method == http.MethodPost }); n != 1 {
		t.Errorf("Twilio received %d updates, want 1", n)
	}
	out, err = cli(t, append([]string{"calls", "get", active, "--output", "json"}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Call struct {
			Ending bool `json:"ending"`
		} `json:"call"`
		Legs []json.RawMessage `json:"legs"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || !got.Call.Ending || len(got.Legs) != 2 {
		t.Errorf("calls get --output json after the hang-up: %v %s", err, out)
	}

	out, err = cli(t, append([]string{"calls", "events", active}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "calls events", out, "CallStatusReported", "status-callback", "ringing", "HangupRequested", "by agent-7, end call", "HangupSent", "Status=completed")

	out, err = cli(t, append([]string{"stats", "--window", "1m"}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "stats", out, "active calls    2", "delivery delay", "p99", "caught up: true")
	out, err = cli(t, append([]string{"stats", "--output", "json"}, addr...)...)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[0], `"activeCalls":"2"`) {
		t.Errorf("stats --output json:\n%s", out)
	}
}

// lineWriter hands the lines written to it to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- string(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

// TestCallsWatch: watch prints the active calls, then each change as it
// happens, until interrupted.
func TestCallsWatch(t *testing.T) {
	t.Parallel()
	s := startLive(t, true, nil)
	const before, later = "CA2000000000000000000000000000000a", "CA2000000000000000000000000000000b"
	pos := s.status(t, before, "ringing", 1)
	// The watch's snapshot is the read model's: wait until it holds the call.
	if out, err := cli(t, "calls", "get", before, "--min-position", strconv.FormatUint(pos, 10), "--addr", s.grpc, "--data-dir", s.dataDir); err != nil {
		t.Fatalf("calls get at position %d: %v\n%s", pos, err, out)
	}
	out := &lineWriter{lines: make(chan string, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"calls", "watch", "--addr", s.grpc, "--data-dir", s.dataDir}, out, io.Discard)
	}()
	next := func() string {
		t.Helper()
		select {
		case l := <-out.lines:
			return l
		case err := <-done:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("watch printed nothing for a minute")
		}
		return ""
	}
	for _, want := range []string{"CALLSID", before, "caught up"} {
		if l := next(); !strings.Contains(l, want) {
			t.Fatalf("line %q, want one with %q", l, want)
		}
	}
	s.status(t, later, "ringing", 1)
	if l := next(); !strings.Contains(l, later) || !strings.Contains(l, "ringing") {
		t.Errorf("change line %q", l)
	}
	s.status(t, before, "completed", 2)
	if l := next(); !strings.Contains(l, before) || !strings.Contains(l, "completed") {
		t.Errorf("change line %q", l)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("watch after an interrupt: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("watch did not stop when interrupted")
	}
}

// TestClientErrors: each failure says what to do.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	const secret = readerToken
	s := startLive(t, false, nil)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{"calls", "list", "--addr", nobody}, "cannot reach callledger at " + nobody},
		{"no token", []string{"calls", "list", "--addr", s.grpc}, "requires a token: pass --token or set CALLLEDGER_TOKEN"},
		{"wrong token", []string{"calls", "list", "--addr", s.grpc, "--token", "nope"}, "refused the token"},
		{"no such call", []string{"calls", "get", "CA3000000000000000000000000000000a", "--addr", s.grpc, "--token", secret}, "no call CA3000000000000000000000000000000a in the ledger"},
		{"not a CallSid", []string{"calls", "get", "CAxyz", "--addr", s.grpc}, `"CAxyz" is not a CallSid`},
		{"watch without a token", []string{"calls", "watch", "--addr", s.grpc}, "requires a token"},
		{"a token in clear beyond loopback", []string{"stats", "--addr", "192.0.2.1:9090", "--token", secret}, "refusing to send the token in clear"},
		{"TLS against plaintext", []string{"stats", "--addr", s.grpc, "--tls"}, "add --tls (or --tls-ca); if not, drop the --tls flags"},
		{"bad status", []string{"calls", "list", "--addr", s.grpc, "--status", "dancing"}, `--status "dancing"`},
		{"bad output", []string{"stats", "--output", "yaml"}, `--output "yaml"`},
		{"missing CallSid", []string{"calls", "hangup"}, "usage: callledger calls hangup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cli(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestClientTokenFromEnvironment: CALLLEDGER_TOKEN stands for --token.
func TestClientTokenFromEnvironment(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	s := startLive(t, false, &server.Interceptors{
		Unary: func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p, _ := grpcauth.PrincipalFrom(ctx)
			mu.Lock()
			seen = append(seen, p.Name)
			mu.Unlock()
			return h(ctx, req)
		},
		Stream: func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, ss)
		},
	})
	t.Setenv("CALLLEDGER_TOKEN", envToken)
	if out, err := cli(t, "stats", "--addr", s.grpc); err != nil || !strings.Contains(out, "active calls") {
		t.Fatalf("stats with CALLLEDGER_TOKEN: %v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[0] != "env" {
		t.Errorf("the server saw the call as %q, want env", seen)
	}
}

// TestClientLocalToken: without a token, a client on the server's machine
// calls with the local API token found in --data-dir, and without one it is
// told to pass a token.
func TestClientLocalToken(t *testing.T) {
	t.Parallel()
	s := startLive(t, true, nil)
	pos := s.status(t, "CA4000000000000000000000000000000a", "ringing", 1)
	// Read after the webhook's write: ListCalls has no min_position.
	if out, err := cli(t, "calls", "get", "CA4000000000000000000000000000000a", "--min-position", strconv.FormatUint(pos, 10),
		"--addr", s.grpc, "--data-dir", s.dataDir); err != nil {
		t.Fatalf("calls get with the local token: %v\n%s", err, out)
	}
	out, err := cli(t, "calls", "list", "--addr", s.grpc, "--data-dir", s.dataDir)
	if err != nil || !strings.Contains(out, "CA4000000000000000000000000000000a") {
		t.Fatalf("calls list with the local token: %v\n%s", err, out)
	}
	if _, err := cli(t, "calls", "list", "--addr", s.grpc, "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "requires a token") {
		t.Errorf("calls list without any token: %v, want one saying a token is required", err)
	}
}
