package httpapi_test

import (
	"bufio"
	"bytes"
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/server/servertest"
	"github.com/callledger/callledger/services/httpapi"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/twilio"
)

// failBound bounds every wait: reaching it is a failure.
const failBound = 30 * time.Second

const (
	token     = "httpapi-test-token"
	publicURL = "https://hooks.example.com"
	account   = "AC0123456789abcdef0123456789abcdef"
)

// api is callledger on loopback with its API listener.
type api struct {
	srv   *server.Server
	base  string // the API listener
	hooks string // the webhook listener
	stop  func() error
	// auth is the Authorization requests carry unless they set their own:
	// the local API token (the server guards its API with it on loopback).
	auth string
}

// authorize sets a.auth on req unless its header names an Authorization of
// its own; an empty one means none at all.
func (a *api) authorize(req *http.Request) {
	if v, set := req.Header["Authorization"]; set {
		if len(v) == 0 || v[0] == "" {
			req.Header.Del("Authorization")
		}
		return
	}
	if a.auth != "" {
		req.Header.Set("Authorization", a.auth)
	}
}

// start runs a server built from cfg on loopback ports.
func start(t *testing.T, cfg server.Config) *api {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr, cfg.GRPC.Addr, cfg.API.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.HTTP.AuthToken, cfg.HTTP.PublicURL = token, publicURL
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, stop := servertest.Start(t, cfg)
	a := &api{srv: srv, base: "http://" + srv.Addrs().API, hooks: "http://" + srv.Addrs().HTTP, stop: stop}
	if cfg.GRPC.APITokens == "" {
		tok, err := server.ReadLocalAPIToken(cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		a.auth = "Bearer " + tok
	}
	return a
}

// status sends a signed status callback and returns its position.
func (a *api) status(t *testing.T, sid, callStatus string, seq int) uint64 {
	t.Helper()
	f := url.Values{
		"CallSid": {sid}, "AccountSid": {account}, "CallStatus": {callStatus}, "SequenceNumber": {strconv.Itoa(seq)},
		"Timestamp": {time.Now().UTC().Format("Mon, 2 Jan 2006 15:04:05 -0700")}, "Direction": {"outbound-api"},
		"From": {"+14155550100"}, "To": {"+14155550199"}, "CallbackSource": {"call-progress-events"},
	}
	body := []byte(f.Encode())
	req, err := http.NewRequest(http.MethodPost, a.hooks+"/twilio/voice/status", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilio.Sign(token, publicURL+"/twilio/voice/status", body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("webhook: HTTP %d", resp.StatusCode)
	}
	pos, err := strconv.ParseUint(resp.Header.Get(webhook.PositionHeader), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// call sends a request to the API and decodes a JSON answer into out (if
// not nil); it returns the answer with its body read.
func (a *api) call(t *testing.T, method, path string, body string, header http.Header, out any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	a.authorize(req)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: HTTP %d, %v: %s", method, path, resp.StatusCode, err, data)
		}
	}
	return resp
}

// rpcStatus is the JSON of an error answer.
type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type call struct {
	CallSid     string `json:"callSid"`
	Status      string `json:"status"`
	Ending      bool   `json:"ending"`
	Terminal    bool   `json:"terminal"`
	LastPositon string `json:"lastPosition"`
}

// TestRoutes: every REST route answers from the server's read model and
// log, and the hang-up route records the request, which the queries then
// show (read-your-writes with min_position).
func TestRoutes(t *testing.T) {
	t.Parallel()
	a := start(t, server.Config{})
	const sid = "CA1000000000000000000000000000000a"
	a.status(t, sid, "ringing", 1)
	pos := a.status(t, sid, "in-progress", 2)

	var got struct {
		Call     call   `json:"call"`
		Legs     []call `json:"legs"`
		Position string `json:"position"`
	}
	resp := a.call(t, "GET", "/v1/calls/"+sid+"?minPosition="+strconv.FormatUint(pos, 10), "", nil, &got)
	if resp.StatusCode != http.StatusOK || got.Call.CallSid != sid || got.Call.Status != "CALL_STATUS_IN_PROGRESS" || len(got.Legs) != 1 {
		t.Fatalf("GET /v1/calls/%s: HTTP %d %+v", sid, resp.StatusCode, got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}

	var list struct {
		Calls []call `json:"calls"`
	}
	a.call(t, "GET", "/v1/calls?filter.activeOnly=true&filter.statuses=CALL_STATUS_IN_PROGRESS&pageSize=10", "", nil, &list)
	if len(list.Calls) != 1 || list.Calls[0].CallSid != sid {
		t.Errorf("in-progress calls: %+v", list.Calls)
	}
	a.call(t, "GET", "/v1/calls?filter.statuses=CALL_STATUS_RINGING", "", nil, &list)
	if len(list.Calls) != 0 {
		t.Errorf("ringing calls: %+v", list.Calls)
	}

	var hung struct {
		Position      string `json:"position"`
		HangupRequest struct {
			RequestedBy string `json:"requestedBy"`
			RequestID   string `json:"requestId"`
		} `json:"hangupRequest"`
	}
	resp = a.call(t, "POST", "/v1/calls/"+sid+":hangup", `{"requestId":"r-1"}`, nil, &hung)
	if resp.StatusCode != http.StatusOK || hung.HangupRequest.RequestedBy != server.LocalPrincipal || hung.HangupRequest.RequestID != "r-1" || hung.Position == "" {
		t.Fatalf("POST :hangup: HTTP %d %+v", resp.StatusCode, hung)
	}
	a.call(t, "GET", "/v1/calls/"+sid+"?minPosition="+hung.Position, "", nil, &got)
	if !got.Call.Ending || got.Call.Terminal {
		t.Errorf("after the hang-up request: %+v", got.Call)
	}

	var events struct {
		Events []struct {
			Position string `json:"position"`
			Type     string `json:"type"`
			Event    struct {
				Source  string `json:"source"`
				Request *struct {
					Method string `json:"method"`
					URL    string `json:"url"`
					Body   []byte `json:"body"`
				} `json:"request"`
			} `json:"event"`
		} `json:"events"`
	}
	a.call(t, "GET", "/v1/calls/"+sid+"/events", "", nil, &events)
	var types []string
	for _, e := range events.Events {
		types = append(types, e.Type+"/"+e.Event.Source)
	}
	want := []string{"CallStatusReported/SOURCE_STATUS_CALLBACK", "CallStatusReported/SOURCE_STATUS_CALLBACK", "HangupRequested/SOURCE_HANGUP_REQUEST"}
	if !slices.Equal(types, want) {
		t.Errorf("events %v, want %v", types, want)
	}
	if r := events.Events[0].Event.Request; r == nil || r.Method != "POST" || r.URL != publicURL+"/twilio/voice/status" || !bytes.Contains(r.Body, []byte("CallStatus=ringing")) {
		t.Errorf("the first event's raw request: %+v", r)
	}

	var stats struct {
		ActiveCalls   string `json:"activeCalls"`
		Window        string `json:"window"`
		DeliveryDelay struct {
			Samples string `json:"samples"`
		} `json:"deliveryDelay"`
	}
	a.call(t, "GET", "/v1/stats?window=60s", "", nil, &stats)
	if stats.ActiveCalls != "1" || stats.Window != "60s" || stats.DeliveryDelay.Samples != "2" {
		t.Errorf("stats %+v", stats)
	}
	var proj struct {
		CaughtUp bool   `json:"caughtUp"`
		Version  string `json:"version"`
	}
	a.call(t, "GET", "/v1/projections/callstate", "", nil, &proj)
	if !proj.CaughtUp || proj.Version == "" {
		t.Errorf("projection status %+v", proj)
	}
}

// TestErrors: bad input gets the gRPC status as JSON with its HTTP code,
// and nothing is recorded.
func TestErrors(t *testing.T) {
	t.Parallel()
	a := start(t, server.Config{})
	const sid = "CA2000000000000000000000000000000b"
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		grpc                     codes.Code
	}{
		{"malformed CallSid", "GET", "/v1/calls/CAnope", "", 400, codes.InvalidArgument},
		{"unknown call", "GET", "/v1/calls/" + sid, "", 404, codes.NotFound},
		{"bad filter status", "GET", "/v1/calls?filter.statuses=CALL_STATUS_DANCING", "", 400, codes.InvalidArgument},
		{"page too large", "GET", "/v1/calls?pageSize=5000", "", 400, codes.InvalidArgument},
		{"bad window", "GET", "/v1/stats?window=forever", "", 400, codes.InvalidArgument},
		{"hang-up without request_id", "POST", "/v1/calls/" + sid + ":hangup", `{}`, 400, codes.InvalidArgument},
		{"hang-up with an unknown field", "POST", "/v1/calls/" + sid + ":hangup", `{"requestedBy":"ops","requestId":"r","endcall":true}`, 400, codes.InvalidArgument},
		{"hang-up that is not JSON", "POST", "/v1/calls/" + sid + ":hangup", `requestedBy=ops`, 400, codes.InvalidArgument},
		{"end_call without REST credentials", "POST", "/v1/calls/" + sid + ":hangup", `{"requestId":"r","endCall":true}`, 400, codes.FailedPrecondition},
		{"body over the limit", "POST", "/v1/calls/" + sid + ":hangup", `{"requestedBy":"` + strings.Repeat("x", httpapi.MaxBodyBytes) + `","requestId":"r"}`, 400, codes.InvalidArgument},
		{"no such route", "GET", "/v1/nothing", "", 404, codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st rpcStatus
			resp := a.call(t, tc.method, tc.path, tc.body, nil, &st)
			if resp.StatusCode != tc.code || codes.Code(st.Code) != tc.grpc || st.Message == "" {
				t.Errorf("HTTP %d %+v, want HTTP %d with %v", resp.StatusCode, st, tc.code, tc.grpc)
			}
		})
	}
	// None of the refused hang-ups was recorded.
	var events struct {
		Events []json.RawMessage `json:"events"`
	}
	a.call(t, "GET", "/v1/calls/"+sid+"/events", "", nil, &events)
	if len(events.Events) != 0 {
		t.Errorf("refused requests left %d events", len(events.Events))
	}
}

// TestOpenAPI: /openapi.json is the generated document, and it documents
// exactly the routes the protos declare.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	a := start(t, server.Config{})
	var doc struct {
		Info struct {
			Title string `json:"title"`
		} `json:"info"`
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	resp := a.call(t, "GET", "/openapi.json", "", nil, &doc)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("HTTP %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if doc.Info.Title != "callledger" {
		t.Errorf("info.title %q: a proto file is missing from proto/openapi.config.yaml", doc.Info.Title)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			// The document names path variables by their JSON names.
			documented = append(documented, strings.ToUpper(method)+" "+strings.NewReplacer("{callSid}", "{call_sid}", "{conferenceSid}", "{conference_sid}").Replace(path))
		}
	}
	slices.Sort(documented)
	routes := httpapi.Routes()
	want := []string{
		"GET /v1/calls", "GET /v1/calls/{call_sid}", "GET /v1/calls/{call_sid}/events", "GET /v1/calls:watch",
		"GET /v1/conferences", "GET /v1/conferences/{conference_sid}", "GET /v1/conferences:watch",
		"GET /v1/projections/callstate", "GET /v1/stats", "POST /v1/calls/{call_sid}:hangup",
	}
	if !slices.Equal(routes, want) {
		t.Errorf("routes %v, want %v", routes, want)
	}
	if !slices.Equal(documented, routes) {
		t.Errorf("documented %v, declared %v: run make proto", documented, routes)
	}
}

// watchLine is one line of the watch stream.
type watchLine struct {
	Result *struct {
		Call     *call `json:"call"`
		Snapshot bool  `json:"snapshot"`
		CaughtUp bool  `json:"caughtUp"`
	} `json:"result"`
	Error *rpcStatus `json:"error"`
}

// openWatch opens GET /v1/calls:watch and returns a reader of its lines.
func openWatch(t *testing.T, ctx context.Context, a *api, header http.Header) (*http.Response, func() watchLine) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/v1/calls:watch?filter.activeOnly=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	a.authorize(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	lines := bufio.NewScanner(resp.Body)
	return resp, func() watchLine {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the watch stream ended: %v", lines.Err())
		}
		var l watchLine
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("watch line %q: %v", lines.Bytes(), err)
		}
		return l
	}
}

// TestWatchStreamsEachChange: WatchCalls reaches an HTTP client as
// newline-delimited JSON, each message flushed as it is sent: a change
// arrives while the stream stays open, before anything else is sent.
func TestWatchStreamsEachChange(t *testing.T) {
	t.Parallel()
	a := start(t, server.Config{})
	const before = "CA3000000000000000000000000000000c"
	pos := a.status(t, before, "ringing", 1)
	// The snapshot is the read model's: wait until it holds the call.
	if resp := a.call(t, "GET", fmt.Sprintf("/v1/calls/%s?minPosition=%d", before, pos), "", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GetCall at position %d: HTTP %d", pos, resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	resp, next := openWatch(t, ctx, a, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("HTTP %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if l := next(); l.Result == nil || !l.Result.Snapshot || l.Result.Call.CallSid != before {
		t.Fatalf("first line %+v, want the snapshot of %s", l, before)
	}
	if l := next(); l.Result == nil || !l.Result.CaughtUp || l.Result.Call != nil {
		t.Fatalf("second line %+v, want caughtUp", l)
	}
	// Each change is readable on its own, while nothing more is sent: a
	// stream buffered until a larger write or its end would block here.
	for i, step := range []struct{ sid, status string }{
		{"CA3000000000000000000000000000000d", "ringing"},
		{"CA3000000000000000000000000000000d", "in-progress"},
		{before, "completed"},
	} {
		a.status(t, step.sid, step.status, i+2)
		l := next()
		if l.Result == nil || l.Result.Call == nil || l.Result.Call.CallSid != step.sid || l.Result.Snapshot {
			t.Fatalf("after %s %s: %+v", step.sid, step.status, l)
		}
		if step.status == "completed" && !l.Result.Call.Terminal {
			t.Errorf("the change that ends %s: %+v", step.sid, l.Result.Call)
		}
	}
}

// TestShutdownEndsWatches: a graceful stop does not wait for open watch
// streams, which never end on their own; the client sees its stream end.
func TestShutdownEndsWatches(t *testing.T) {
	t.Parallel()
	a := start(t, server.Config{ShutdownTimeout: 10 * time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	_, next := openWatch(t, ctx, a, nil)
	if l := next(); l.Result == nil || !l.Result.CaughtUp {
		t.Fatalf("first line %+v", l)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- a.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the server waited for an open watch stream to end before stopping")
	}
}

// TestThroughInterceptors: a REST request passes the gRPC server's
// authentication with the Authorization header as `authorization`
// metadata, and reaches the services as the token's principal with the
// method's full name and nothing else a browser could set; a refusal is 401
// with a Bearer challenge, for unary routes and streams alike.
func TestThroughInterceptors(t *testing.T) {
	t.Parallel()
	type seen struct {
		method    string
		principal string
		md        metadata.MD
	}
	var mu sync.Mutex
	var calls []seen
	record := func(ctx context.Context, method string) {
		md, _ := metadata.FromIncomingContext(ctx)
		p, _ := grpcauth.PrincipalFrom(ctx)
		mu.Lock()
		calls = append(calls, seen{method, p.Name, md})
		mu.Unlock()
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "api-tokens.json")
	file := fmt.Sprintf(`{"tokens":[{"principal":"board-test","sha256":%q,"scopes":["calls:read"]}]}`, grpcauth.HashToken("good"))
	if err := os.WriteFile(tokens, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	a := start(t, server.Config{GRPC: server.GRPC{APITokens: tokens}, Seams: server.Seams{GRPCInterceptors: &server.Interceptors{
		Unary: func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			record(ctx, info.FullMethod)
			return h(ctx, req)
		},
		Stream: func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			record(ss.Context(), info.FullMethod)
			return h(srv, ss)
		},
	}}})

	var st rpcStatus
	resp := a.call(t, "GET", "/v1/stats", "", http.Header{"Grpc-Metadata-Authorization": {"Bearer good"}, "X-Role": {"admin"}}, &st)
	if resp.StatusCode != http.StatusUnauthorized || codes.Code(st.Code) != codes.Unauthenticated || resp.Header.Get("WWW-Authenticate") != `Bearer realm="callledger"` {
		t.Errorf("without Authorization (a token in Grpc-Metadata-Authorization only): HTTP %d %+v, WWW-Authenticate %q", resp.StatusCode, st, resp.Header.Get("WWW-Authenticate"))
	}
	resp = a.call(t, "GET", "/v1/stats", "", http.Header{"Authorization": {"Bearer wrong"}}, &st)
	if resp.StatusCode != http.StatusUnauthorized || codes.Code(st.Code) != codes.Unauthenticated {
		t.Errorf("with a wrong token: HTTP %d %+v", resp.StatusCode, st)
	}
	resp = a.call(t, "GET", "/v1/stats", "", http.Header{"Authorization": {"Bearer good"}, "X-Role": {"admin"}, "Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with the token: HTTP %d", resp.StatusCode)
	}
	resp = a.call(t, "POST", "/v1/calls/CA1000000000000000000000000000000a:hangup", `{"requestId":"r1"}`, http.Header{"Authorization": {"Bearer good"}}, &st)
	if resp.StatusCode != http.StatusForbidden || codes.Code(st.Code) != codes.PermissionDenied {
		t.Errorf("hang-up with a calls:read token: HTTP %d %+v, want 403 PermissionDenied", resp.StatusCode, st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	resp, _ = openWatch(t, ctx, a, http.Header{"Authorization": {""}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("watch without a token: HTTP %d", resp.StatusCode)
	}
	_, next := openWatch(t, ctx, a, http.Header{"Authorization": {"Bearer good"}})
	if l := next(); l.Result == nil || !l.Result.CaughtUp {
		t.Errorf("watch with the token: %+v", l)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("%d calls passed authentication, want 2: %+v", len(calls), calls)
	}
	for i, want := range []string{"/callledger.v1.CallQueryService/GetStats", "/callledger.v1.CallQueryService/WatchCalls"} {
		if calls[i].method != want || calls[i].principal != "board-test" {
			t.Errorf("call %d: %s as %q, want %s as board-test", i, calls[i].method, calls[i].principal, want)
		}
	}
	if v := calls[0].md.Get("x-role"); len(v) != 0 {
		t.Errorf("an arbitrary header reached the services: %q", v)
	}
	if v := calls[0].md.Get("traceparent"); len(v) != 1 {
		t.Errorf("traceparent not forwarded: %v", calls[0].md)
	}
}

// TestCORS: off unless origins are configured; then preflights of those
// origins may send Authorization, and others get no CORS headers.
func TestCORS(t *testing.T) {
	t.Parallel()
	preflight := func(a *api, origin string) *http.Response {
		return a.call(t, "OPTIONS", "/v1/calls", "", http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"},
		}, nil)
	}
	closed := start(t, server.Config{})
	if h := preflight(closed, "https://ops.example.com").Header.Get("Access-Control-Allow-Origin"); h != "" {
		t.Errorf("without --api-cors-origins: Access-Control-Allow-Origin %q", h)
	}
	open := start(t, server.Config{API: server.API{CORSOrigins: []string{"https://ops.example.com"}}})
	resp := preflight(open, "https://ops.example.com")
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Errorf("preflight of a configured origin: HTTP %d %v", resp.StatusCode, resp.Header)
	}
	if h := preflight(open, "https://evil.example.net").Header.Get("Access-Control-Allow-Origin"); h != "" {
		t.Errorf("another origin: Access-Control-Allow-Origin %q", h)
	}
	resp = open.call(t, "GET", "/v1/stats", "", http.Header{"Origin": {"https://ops.example.com"}}, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://ops.example.com" {
		t.Errorf("GET from a configured origin: HTTP %d %v", resp.StatusCode, resp.Header)
	}
}

func TestValidateOrigins(t *testing.T) {
	t.Parallel()
	for _, ok := range [][]string{nil, {"*"}, {"https://a.example.com", "http://127.0.0.1:5173"}} {
		if err := httpapi.ValidateOrigins(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range []string{"a.example.com", "ftp://a.example.com", "https://a.example.com/path", "https://", "https://a.example.com?x=1"} {
		if err := httpapi.ValidateOrigins([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v, want an error naming it", bad, err)
		}
	}
}
