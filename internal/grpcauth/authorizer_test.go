package grpcauth_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/logsink"
	"github.com/callledger/callledger/internal/testpki"
)

// policy guards the health service's methods as callledger guards its own:
// one needs a scope, one any principal, one nothing.
var policy = grpcauth.Policy{
	healthpb.Health_Check_FullMethodName: grpcauth.Require(grpcauth.ScopeCallsRead),
	healthpb.Health_List_FullMethodName:  grpcauth.Authenticated(),
	healthpb.Health_Watch_FullMethodName: grpcauth.Open(),
}

type authServer struct {
	addr string
	ca   *testpki.CA
	auth *grpcauth.Authorizer
	log  *logsink.Buffer
}

// serve runs the health service over mTLS on loopback behind an
// Authorizer with creds.
func serve(t *testing.T, creds *grpcauth.Credentials) *authServer {
	t.Helper()
	ca := testpki.NewCA(t, "test CA")
	srvCert := ca.Server(t).TLS(t)
	logs := &logsink.Buffer{}
	auth, err := grpcauth.New(grpcauth.Config{Policy: policy, Credentials: creds, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)), grpc.ChainUnaryInterceptor(auth.Unary()), grpc.ChainStreamInterceptor(auth.Stream()))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	if missing := policy.Missing(g.GetServiceInfo()); len(missing) > 0 {
		t.Fatalf("the test policy misses %v", missing)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return &authServer{addr: ln.Addr().String(), ca: ca, auth: auth, log: logs}
}

// client dials s over TLS, with a client certificate when cert is set and
// a bearer token when token is not empty.
func (s *authServer) client(t *testing.T, token string, cert *testpki.Leaf) healthpb.HealthClient {
	t.Helper()
	tc := &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{cert.TLS(t)}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: token}))
	}
	return healthpb.NewHealthClient(grpctest.Dial(t, s.addr, opts...))
}

func check(t *testing.T, c healthpb.HealthClient) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	return status.Code(err)
}

func list(t *testing.T, c healthpb.HealthClient) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.List(ctx, &healthpb.HealthListRequest{})
	return status.Code(err)
}

func watch(t *testing.T, c healthpb.HealthClient) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	return status.Code(err)
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	creds, err := grpcauth.NewCredentials(
		grpcauth.TokenEntry{Principal: "reader", SHA256: grpcauth.HashToken("reader-token"), Scopes: []grpcauth.Scope{grpcauth.ScopeCallsRead}},
		grpcauth.TokenEntry{Principal: "hanger", SHA256: grpcauth.HashToken("hanger-token"), Scopes: []grpcauth.Scope{grpcauth.ScopeCallsHangup}},
		grpcauth.TokenEntry{Principal: "spiffe://test/reader", ClientCert: true, Scopes: []grpcauth.Scope{grpcauth.ScopeCallsRead}},
	)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, creds)
	mapped := s.ca.Issue(t, testpki.Options{Client: true, URIs: []string{"spiffe://test/reader"}, DNSNames: []string{"ignored.test"}, CommonName: "ignored"})
	unmapped := s.ca.Issue(t, testpki.Options{Client: true, CommonName: "stranger"})

	for _, tc := range []struct {
		name                 string
		token                string
		cert                 *testpki.Leaf
		check, list, watchCd codes.Code
	}{
		{"no credential", "", nil, codes.Unauthenticated, codes.Unauthenticated, codes.OK},
		{"unknown token", "guess", nil, codes.Unauthenticated, codes.Unauthenticated, codes.OK},
		{"token without the scope", "hanger-token", nil, codes.PermissionDenied, codes.OK, codes.OK},
		{"token with the scope", "reader-token", nil, codes.OK, codes.OK, codes.OK},
		{"mapped certificate", "", mapped, codes.OK, codes.OK, codes.OK},
		{"certificate the file does not map", "", unmapped, codes.PermissionDenied, codes.OK, codes.OK},
		{"an unknown token beside a valid certificate", "guess", mapped, codes.Unauthenticated, codes.Unauthenticated, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.client(t, tc.token, tc.cert)
			if got := check(t, c); got != tc.check {
				t.Errorf("Check (scope calls:read): %v, want %v", got, tc.check)
			}
			if got := list(t, c); got != tc.list {
				t.Errorf("List (any principal): %v, want %v", got, tc.list)
			}
			if got := watch(t, c); got != tc.watchCd {
				t.Errorf("Watch (open): %v, want %v", got, tc.watchCd)
			}
		})
	}
	logs := s.log.String()
	for _, secret := range []string{"reader-token", "hanger-token", "guess"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the token %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{
		`msg="gRPC call refused" method=/grpc.health.v1.Health/Check code=PermissionDenied principal=hanger reason="missing scope calls:read"`,
		`method=/grpc.health.v1.Health/Check code=Unauthenticated principal="" reason="no credential"`,
		`method=/grpc.health.v1.Health/List code=Unauthenticated principal="" reason="unknown token"`,
		`principal=stranger reason="missing scope calls:read"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no refusal logged as %q:\n%s", want, logs)
		}
	}
}

// TestSetCredentials: replaced credentials apply to the next call.
func TestSetCredentials(t *testing.T) {
	t.Parallel()
	read := []grpcauth.Scope{grpcauth.ScopeCallsRead}
	old, err := grpcauth.NewCredentials(grpcauth.TokenEntry{Principal: "p", SHA256: grpcauth.HashToken("old"), Scopes: read})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, old)
	if got := check(t, s.client(t, "old", nil)); got != codes.OK {
		t.Fatalf("old token before: %v", got)
	}
	next, err := grpcauth.NewCredentials(grpcauth.TokenEntry{Principal: "p", SHA256: grpcauth.HashToken("new"), Scopes: read})
	if err != nil {
		t.Fatal(err)
	}
	s.auth.SetCredentials(next)
	if got := check(t, s.client(t, "old", nil)); got != codes.Unauthenticated {
		t.Errorf("old token after: %v, want UNAUTHENTICATED", got)
	}
	if got := check(t, s.client(t, "new", nil)); got != codes.OK {
		t.Errorf("new token after: %v", got)
	}
}

// TestWithoutAuthentication: an Authorizer without credentials lets every
// call through, with no principal.
func TestWithoutAuthentication(t *testing.T) {
	t.Parallel()
	s := serve(t, nil)
	c := s.client(t, "", nil)
	if got := check(t, c); got != codes.OK {
		t.Errorf("Check: %v", got)
	}
	if got := list(t, c); got != codes.OK {
		t.Errorf("List: %v", got)
	}
}

// TestMissing: a registered method without a rule is reported.
func TestMissing(t *testing.T) {
	t.Parallel()
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer())
	partial := grpcauth.Policy{healthpb.Health_Check_FullMethodName: grpcauth.Open()}
	got := partial.Missing(g.GetServiceInfo())
	want := []string{healthpb.Health_List_FullMethodName, healthpb.Health_Watch_FullMethodName}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Missing = %v, want %v", got, want)
	}
	if err := partial.Check(g.GetServiceInfo()); err == nil || !strings.Contains(err.Error(), healthpb.Health_Watch_FullMethodName) {
		t.Errorf("Check = %v", err)
	}
	if err := policy.Check(g.GetServiceInfo()); err != nil {
		t.Errorf("Check of a full policy: %v", err)
	}
}
