package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/testpki"
)

// A principal per scope, one with every scope but one per scope, and one
// with none: the tokens of the tests of this file. A token is its
// principal's name followed by "-token".
var principals = map[string][]grpcauth.Scope{
	"reader":         {grpcauth.ScopeCallsRead},
	"hanger":         {grpcauth.ScopeCallsHangup},
	"admin":          {grpcauth.ScopeProjectionsAdmin},
	"eraser":         {grpcauth.ScopePersonalErase},
	"keys":           {grpcauth.ScopeKeysUse},
	"all-but-read":   allScopesBut(grpcauth.ScopeCallsRead),
	"all-but-hangup": allScopesBut(grpcauth.ScopeCallsHangup),
	"all-but-admin":  allScopesBut(grpcauth.ScopeProjectionsAdmin),
	"all-but-erase":  allScopesBut(grpcauth.ScopePersonalErase),
	"all-but-keys":   allScopesBut(grpcauth.ScopeKeysUse),
	"nobody":         {},
}

func allScopesBut(scope grpcauth.Scope) []grpcauth.Scope {
	return slices.DeleteFunc(grpcauth.Scopes(), func(s grpcauth.Scope) bool { return s == scope })
}

func tokenOf(principal string) string { return principal + "-token" }

// exactly and allBut name the principal holding scope alone, and the one
// holding every other scope.
var (
	exactly = map[grpcauth.Scope]string{grpcauth.ScopeCallsRead: "reader", grpcauth.ScopeCallsHangup: "hanger",
		grpcauth.ScopeProjectionsAdmin: "admin", grpcauth.ScopePersonalErase: "eraser", grpcauth.ScopeKeysUse: "keys"}
	allBut = map[grpcauth.Scope]string{grpcauth.ScopeCallsRead: "all-but-read", grpcauth.ScopeCallsHangup: "all-but-hangup",
		grpcauth.ScopeProjectionsAdmin: "all-but-admin", grpcauth.ScopePersonalErase: "all-but-erase", grpcauth.ScopeKeysUse: "all-but-keys"}
)

// writeTokens writes an API tokens file of entries into dir.
func writeTokens(t *testing.T, dir string, entries ...grpcauth.TokenEntry) string {
	t.Helper()
	raw, err := json.Marshal(grpcauth.TokensFile{Tokens: entries})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "api-tokens.json")
	testpki.WriteFile(t, path, raw)
	return path
}

// secured is a server with gRPC over TLS and the tokens of principals.
type secured struct {
	srv  *server.Server
	ca   *testpki.CA
	dir  string // of the TLS files and the tokens file
	stop func() error
}

// startSecured starts a server with gRPC TLS (a CA of the test's) and an
// API tokens file holding principals plus extra entries; mod adjusts the
// configuration before the start.
func startSecured(t *testing.T, mod func(*server.Config, *testpki.CA, string), extra ...grpcauth.TokenEntry) *secured {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "gRPC CA")
	certFile, keyFile := ca.Server(t).Write(t, dir, "grpc")
	var entries []grpcauth.TokenEntry
	for p, scopes := range principals {
		entries = append(entries, grpcauth.TokenEntry{Principal: p, SHA256: grpcauth.HashToken(tokenOf(p)), Scopes: scopes})
	}
	entries = append(entries, extra...)
	cfg := server.Config{GRPC: server.GRPC{TLSCert: certFile, TLSKey: keyFile, APITokens: writeTokens(t, dir, entries...)}}
	if mod != nil {
		mod(&cfg, ca, dir)
	}
	srv, stop := start(t, cfg)
	return &secured{srv: srv, ca: ca, dir: dir, stop: stop}
}

// dial connects over TLS trusting the test's CA, with the token of
// principal when it is not empty and the client certificate cert when set.
func (s *secured) dial(t *testing.T, principal string, cert *testpki.Leaf) *grpc.ClientConn {
	t.Helper()
	tc := &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{cert.TLS(t)}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
	if principal != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: tokenOf(principal)}))
	}
	return grpctest.Dial(t, s.srv.Addrs().GRPC, opts...)
}

// call calls method of info (its full name) with an empty request, as any
// client could, and returns the code of its answer (of the first message
// of a stream). Empty bytes decode as any request message.
func call(t *testing.T, conn *grpc.ClientConn, method string, info grpc.MethodInfo) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	if !info.IsClientStream && !info.IsServerStream {
		return status.Code(conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{}))
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: info.IsServerStream, ClientStreams: info.IsClientStream}, method)
	if err != nil {
		return status.Code(err)
	}
	if err := st.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
		return status.Code(err)
	}
	if err := st.CloseSend(); err != nil {
		return status.Code(err)
	}
	err = st.RecvMsg(&emptypb.Empty{})
	if errors.Is(err, io.EOF) {
		return codes.OK
	}
	return status.Code(err)
}

// refused reports whether code is a refusal of the authorizer's.
func refused(code codes.Code) bool {
	return code == codes.Unauthenticated || code == codes.PermissionDenied
}

// TestEveryMethodHasARule: every method the gRPC server registers (its
// service info, whatever services are added later) has a rule in the
// policy, so none can ship open; and the services expected are there.
func TestEveryMethodHasARule(t *testing.T) {
	t.Parallel()
	srv, _ := start(t, server.Config{})
	services := srv.GRPCServices()
	policy := server.Policy()
	n := 0
	for svc, info := range services {
		for _, m := range info.Methods {
			n++
			if _, ok := policy[grpcauth.Method(svc, m.Name)]; !ok {
				t.Errorf("%s has no rule in server.Policy", grpcauth.Method(svc, m.Name))
			}
		}
	}
	for _, want := range []string{"callledger.v1.CallQueryService", "callledger.v1.CallCommandService", "callledger.v1.ProjectionService",
		"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if _, ok := services[want]; !ok {
			t.Errorf("%s is not registered", want)
		}
	}
	if n < 10 {
		t.Errorf("only %d methods registered", n)
	}
	if missing := policy.Missing(services); len(missing) > 0 {
		t.Errorf("Missing = %v", missing)
	}
	// The contract of docs/SECURITY.md, for the methods it names.
	read, hangup, admin := grpcauth.Require(grpcauth.ScopeCallsRead), grpcauth.Require(grpcauth.ScopeCallsHangup), grpcauth.Require(grpcauth.ScopeProjectionsAdmin)
	for method, want := range map[string]grpcauth.Rule{
		"/callledger.v1.CallQueryService/GetCall":                        read,
		"/callledger.v1.CallQueryService/ListCalls":                      read,
		"/callledger.v1.CallQueryService/WatchCalls":                     read,
		"/callledger.v1.CallQueryService/ListCallEvents":                 read,
		"/callledger.v1.CallQueryService/GetStats":                       read,
		"/callledger.v1.CallCommandService/RequestHangup":                hangup,
		"/callledger.v1.ProjectionService/GetProjectionStatus":           admin,
		"/callledger.v1.ProjectionService/RebuildProjection":             admin,
		"/callledger.v1.AdminService/Backup":                             admin,
		"/grpc.health.v1.Health/Check":                                   grpcauth.Open(),
		"/grpc.health.v1.Health/Watch":                                   grpcauth.Open(),
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      grpcauth.Authenticated(),
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": grpcauth.Authenticated(),
	} {
		if got, ok := policy[method]; !ok || got != want {
			t.Errorf("%s: rule %v, want %v", method, got, want)
		}
	}
}

// TestEveryMethodByCredential calls every registered method through a real
// client over TLS with no credential, with a principal lacking the scope
// its rule asks for, and with one holding exactly that scope:
// UNAUTHENTICATED, PERMISSION_DENIED and through (whatever the handler
// then answers an empty request) unless the rule is open or asks for any
// principal.
func TestEveryMethodByCredential(t *testing.T) {
	t.Parallel()
	s := startSecured(t, nil)
	anonymous := s.dial(t, "", nil)
	conns := map[string]*grpc.ClientConn{}
	for p := range principals {
		conns[p] = s.dial(t, p, nil)
	}
	var methods []string
	infos := map[string]grpc.MethodInfo{}
	for svc, info := range s.srv.GRPCServices() {
		for _, m := range info.Methods {
			name := grpcauth.Method(svc, m.Name)
			methods = append(methods, name)
			infos[name] = m
		}
	}
	slices.Sort(methods)
	for _, m := range methods {
		t.Run(strings.TrimPrefix(m, "/"), func(t *testing.T) { checkByCredential(t, anonymous, conns, m, infos[m]) })
	}
}

// checkByCredential calls method with no credential, with a principal
// lacking the scope its rule asks for and with one holding exactly that
// scope (conns by principal).
func checkByCredential(t *testing.T, anonymous *grpc.ClientConn, conns map[string]*grpc.ClientConn, m string, info grpc.MethodInfo) {
	t.Helper()
	rule := server.Policy()[m]
	none := call(t, anonymous, m, info)
	switch rule {
	case grpcauth.Open():
		if refused(none) {
			t.Errorf("open method refused without a credential: %v", none)
		}
		return
	default:
		if none != codes.Unauthenticated {
			t.Errorf("no credential: %v, want UNAUTHENTICATED", none)
		}
	}
	if rule == grpcauth.Authenticated() {
		if got := call(t, conns["nobody"], m, info); refused(got) {
			t.Errorf("a principal without scopes: %v, want through", got)
		}
		return
	}
	var scope grpcauth.Scope
	for _, sc := range grpcauth.Scopes() {
		if rule == grpcauth.Require(sc) {
			scope = sc
		}
	}
	if scope == "" {
		t.Fatalf("rule %v is none of the known ones", rule)
	}
	if got := call(t, conns[allBut[scope]], m, info); got != codes.PermissionDenied {
		t.Errorf("every scope but %s: %v, want PERMISSION_DENIED", scope, got)
	}
	if got := call(t, conns["nobody"], m, info); got != codes.PermissionDenied {
		t.Errorf("no scope: %v, want PERMISSION_DENIED", got)
	}
	if got := call(t, conns[exactly[scope]], m, info); refused(got) {
		t.Errorf("scope %s: %v, want through", scope, got)
	}
}

// TestHangupRecordsThePrincipal: what a server with TLS and API tokens
// must do: refuse an unauthenticated ListCalls, answer it for a calls:read
// token, refuse RequestHangup to that token, and record the principal of a
// calls:hangup token as requested_by (refusing a requested_by naming
// another).
func TestHangupRecordsThePrincipal(t *testing.T) {
	t.Parallel()
	s := startSecured(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	const sid = "CA0123456789abcdef0123456789abcdef"

	if _, err := callledgerv1.NewCallQueryServiceClient(s.dial(t, "", nil)).ListCalls(ctx, &callledgerv1.ListCallsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListCalls without a credential: %v, want UNAUTHENTICATED", err)
	}
	reader := s.dial(t, "reader", nil)
	if _, err := callledgerv1.NewCallQueryServiceClient(reader).ListCalls(ctx, &callledgerv1.ListCallsRequest{}); err != nil {
		t.Errorf("ListCalls with calls:read: %v", err)
	}
	hangupReq := &callledgerv1.RequestHangupRequest{CallSid: sid, RequestId: "r1"}
	if _, err := callledgerv1.NewCallCommandServiceClient(reader).RequestHangup(ctx, hangupReq); status.Code(err) != codes.PermissionDenied {
		t.Errorf("RequestHangup with calls:read: %v, want PERMISSION_DENIED", err)
	}

	hanger := callledgerv1.NewCallCommandServiceClient(s.dial(t, "hanger", nil))
	impersonating := &callledgerv1.RequestHangupRequest{CallSid: sid, RequestId: "r0", RequestedBy: "someone-else"}
	if _, err := hanger.RequestHangup(ctx, impersonating); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"hanger"`) {
		t.Errorf("requested_by naming another principal: %v, want INVALID_ARGUMENT naming the principal", err)
	}
	resp, err := hanger.RequestHangup(ctx, hangupReq)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetHangupRequest().GetRequestedBy(); got != "hanger" {
		t.Errorf("answered requested_by %q, want the principal", got)
	}
	same := &callledgerv1.RequestHangupRequest{CallSid: sid, RequestId: "r2", RequestedBy: "hanger"}
	if _, err := hanger.RequestHangup(ctx, same); err != nil {
		t.Errorf("requested_by equal to the principal: %v", err)
	}
	got, err := callledgerv1.NewCallQueryServiceClient(reader).GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid, MinPosition: resp.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	if by := got.GetCall().GetHangupRequest().GetRequestedBy(); by != "hanger" {
		t.Errorf("recorded requested_by %q, want the principal", by)
	}
}

// TestClientCertificates: with --grpc-client-ca, a client certificate
// signed by it is the principal its URI SAN names, mapped to scopes by the
// tokens file; one of another CA, an expired one, or none is refused in the
// handshake.
func TestClientCertificates(t *testing.T) {
	t.Parallel()
	const spiffe = "spiffe://example.test/board"
	s := startSecured(t, func(cfg *server.Config, ca *testpki.CA, dir string) {
		caFile := filepath.Join(dir, "clients.pem")
		testpki.WriteFile(t, caFile, ca.PEM)
		cfg.GRPC.ClientCA = caFile
	}, grpcauth.TokenEntry{Principal: spiffe, ClientCert: true, Scopes: []grpcauth.Scope{grpcauth.ScopeCallsRead, grpcauth.ScopeCallsHangup}})
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	other := testpki.NewCA(t, "another CA")
	for _, tc := range []struct {
		name string
		cert *testpki.Leaf
		ok   bool
	}{
		{"signed by the client CA", s.ca.Issue(t, testpki.Options{Client: true, URIs: []string{spiffe}, DNSNames: []string{"board.example.test"}, CommonName: "board"}), true},
		{"of another CA", other.Issue(t, testpki.Options{Client: true, URIs: []string{spiffe}}), false},
		{"expired", s.ca.Issue(t, testpki.Options{Client: true, URIs: []string{spiffe}, Expired: true}), false},
		{"none", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := s.dial(t, "", tc.cert)
			_, err := callledgerv1.NewCallQueryServiceClient(conn).ListCalls(ctx, &callledgerv1.ListCallsRequest{})
			if tc.ok {
				if err != nil {
					t.Fatalf("ListCalls: %v", err)
				}
				resp, err := callledgerv1.NewCallCommandServiceClient(conn).RequestHangup(ctx, &callledgerv1.RequestHangupRequest{CallSid: "CA0123456789abcdef0123456789abcdef", RequestId: "cert"})
				if err != nil {
					t.Fatal(err)
				}
				if got := resp.GetHangupRequest().GetRequestedBy(); got != spiffe {
					t.Errorf("requested_by %q, want the certificate's URI SAN", got)
				}
				return
			}
			if code := status.Code(err); code != codes.Unavailable {
				t.Errorf("ListCalls: %v, want the handshake refused (UNAVAILABLE)", err)
			}
		})
	}
}

// TestTLSRotationKeepsStreams: new certificate files (of another CA) and a
// reload: a WatchCalls stream opened before goes on, a new connection gets
// the new certificate.
func TestTLSRotationKeepsStreams(t *testing.T) {
	t.Parallel()
	s := startSecured(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	watch, err := callledgerv1.NewCallQueryServiceClient(s.dial(t, "reader", nil)).WatchCalls(ctx, &callledgerv1.WatchCallsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := watch.Recv(); err != nil || !m.GetCaughtUp() {
		t.Fatalf("watch start: %v %v", m, err)
	}

	next := testpki.NewCA(t, "next gRPC CA")
	next.Server(t).Write(t, s.dir, "grpc")
	if err := s.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	rotated := &secured{srv: s.srv, ca: next}
	if _, err := callledgerv1.NewCallQueryServiceClient(rotated.dial(t, "reader", nil)).ListCalls(ctx, &callledgerv1.ListCallsRequest{}); err != nil {
		t.Fatalf("a connection trusting the new CA: %v", err)
	}
	if _, err := callledgerv1.NewCallQueryServiceClient(s.dial(t, "reader", nil)).ListCalls(ctx, &callledgerv1.ListCallsRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("a new connection trusting the old CA only: %v, want the handshake refused", err)
	}

	// The stream opened before the rotation still delivers.
	hang := callledgerv1.NewCallCommandServiceClient(rotated.dial(t, "hanger", nil))
	if _, err := hang.RequestHangup(ctx, &callledgerv1.RequestHangupRequest{CallSid: "CA0123456789abcdef0123456789abcdef", RequestId: "after"}); err != nil {
		t.Fatal(err)
	}
	m, err := watch.Recv()
	if err != nil {
		t.Fatalf("the stream opened before the rotation: %v", err)
	}
	if m.GetCall().GetCallSid() != "CA0123456789abcdef0123456789abcdef" {
		t.Errorf("watch got %v", m)
	}
}

// TestAPITokensReload: a token added to the file works after a reload, one
// removed does not, and a file that fails to load keeps the previous
// tokens.
func TestAPITokensReload(t *testing.T) {
	t.Parallel()
	s := startSecured(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	list := func(principal string) error {
		_, err := callledgerv1.NewCallQueryServiceClient(s.dial(t, principal, nil)).ListCalls(ctx, &callledgerv1.ListCallsRequest{})
		return err
	}
	path := filepath.Join(s.dir, "api-tokens.json")
	writeTokens(t, s.dir, grpcauth.TokenEntry{Principal: "newcomer", SHA256: grpcauth.HashToken(tokenOf("newcomer")), Scopes: []grpcauth.Scope{grpcauth.ScopeCallsRead}})
	if err := s.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := list("newcomer"); err != nil {
		t.Errorf("added token: %v", err)
	}
	if err := list("reader"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("removed token: %v, want UNAUTHENTICATED", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.srv.Reload(); err == nil {
		t.Error("a tokens file readable by others was reloaded")
	}
	if err := list("newcomer"); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
}
