package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/secretfile"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/testpki"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// build runs server.New on cfg as given (no defaults of start's) and
// returns its error, closing a server that was built.
func build(t *testing.T, cfg server.Config) error {
	t.Helper()
	cfg.DataDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	srv, err := server.New(ctx, cfg)
	if err == nil {
		_ = srv.Close()
	}
	return err
}

// TestExposureRefused: settings that would expose the server unprotected
// stop it at start with a message that says what is missing and what to
// do.
func TestExposureRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	laxCert, laxKey := ca.Server(t).Write(t, dir, "lax")
	if err := os.Chmod(laxKey, 0o644); err != nil {
		t.Fatal(err)
	}
	real := func(c server.Config) server.Config {
		c.HTTP.AuthToken, c.HTTP.PublicURL = token, publicURL
		c.HTTP.Addr = "127.0.0.1:0"
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  server.Config
		has  []string
		is   error
	}{
		{"gRPC beyond loopback, plaintext and open", real(server.Config{GRPC: server.GRPC{Addr: "0.0.0.0:0"}}),
			[]string{"--grpc-addr 0.0.0.0:0 is not a loopback address", "TLS (--grpc-tls-cert, --grpc-tls-key)", "authentication (--api-tokens", "--grpc-insecure"}, nil},
		{"gRPC beyond loopback with TLS, open", real(server.Config{GRPC: server.GRPC{Addr: "0.0.0.0:0", TLSCert: certFile, TLSKey: keyFile}}),
			[]string{"needs authentication (--api-tokens"}, nil},
		{"development mode, gRPC beyond loopback", server.Config{HTTP: server.HTTP{Addr: "127.0.0.1:0"}, GRPC: server.GRPC{Addr: "0.0.0.0:0", Insecure: true}},
			[]string{"development mode", "--grpc-addr 0.0.0.0:0 is not one"}, nil},
		{"development mode, metrics beyond loopback", server.Config{HTTP: server.HTTP{Addr: "127.0.0.1:0"}, GRPC: server.GRPC{Addr: "127.0.0.1:0"}, Metrics: server.Metrics{Addr: "0.0.0.0:0"}},
			[]string{"development mode", "--metrics-addr 0.0.0.0:0"}, nil},
		{"client CA without tokens", real(server.Config{GRPC: server.GRPC{Addr: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile, ClientCA: certFile}}),
			[]string{"--grpc-client-ca needs --api-tokens"}, nil},
		{"client CA without TLS", real(server.Config{GRPC: server.GRPC{Addr: "127.0.0.1:0", ClientCA: certFile}}),
			[]string{"--grpc-client-ca needs TLS"}, nil},
		{"TLS key readable by others", real(server.Config{GRPC: server.GRPC{Addr: "127.0.0.1:0", TLSCert: laxCert, TLSKey: laxKey}}),
			[]string{"chmod 600"}, secretfile.ErrInsecure},
		{"API beyond loopback, plaintext and open", real(server.Config{GRPC: server.GRPC{Addr: "127.0.0.1:0"}, API: server.API{Addr: "0.0.0.0:0"}}),
			[]string{"--api-addr 0.0.0.0:0 is not a loopback address", "TLS (--api-tls-cert, --api-tls-key)", "authentication (--api-tokens)", "--grpc-insecure"}, nil},
		{"API beyond loopback with TLS, open", real(server.Config{GRPC: server.GRPC{Addr: "127.0.0.1:0"}, API: server.API{Addr: "0.0.0.0:0", TLSCert: certFile, TLSKey: keyFile}}),
			[]string{"--api-addr 0.0.0.0:0", "needs authentication (--api-tokens)"}, nil},
		{"API TLS key readable by others", real(server.Config{GRPC: server.GRPC{Addr: "127.0.0.1:0"}, API: server.API{Addr: "127.0.0.1:0", TLSCert: laxCert, TLSKey: laxKey}}),
			[]string{"--api-tls-cert", "chmod 600"}, secretfile.ErrInsecure},
		{"webhook TLS key readable by others", real(server.Config{GRPC: server.GRPC{Addr: "127.0.0.1:0"}, HTTP: server.HTTP{TLSCert: laxCert, TLSKey: laxKey}}),
			[]string{"--http-tls-cert", "chmod 600"}, secretfile.ErrInsecure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := build(t, tc.cfg)
			if err == nil {
				t.Fatal("the server started")
			}
			for _, want := range tc.has {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q: want %q", err, want)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v: want %v", err, tc.is)
			}
		})
	}
}

// TestGRPCInsecure: --grpc-insecure serves gRPC beyond loopback without TLS
// and authentication, and says so loudly at start and again at every
// interval.
func TestGRPCInsecure(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	srv, _ := start(t, server.Config{
		GRPC:   server.GRPC{Addr: "0.0.0.0:0", Insecure: true},
		Seams:  server.Seams{InsecureWarningInterval: 5 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	_, port, err := net.SplitHostPort(srv.Addrs().GRPC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	client := callledgerv1.NewCallQueryServiceClient(grpctest.Dial(t, net.JoinHostPort("127.0.0.1", port)))
	if _, err := client.ListCalls(ctx, &callledgerv1.ListCallsRequest{}); err != nil {
		t.Errorf("ListCalls without a credential: %v", err)
	}
	for strings.Count(logs.String(), "INSECURE: --grpc-insecure: the gRPC API serves without TLS and authentication") < 2 {
		if ctx.Err() != nil {
			t.Fatalf("the warning was not repeated:\n%s", logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLocalAPIToken: on loopback without another authentication method,
// the gRPC API takes the local token in the data directory (mode 0600),
// whose principal is "local", and nothing else.
func TestLocalAPIToken(t *testing.T) {
	t.Parallel()
	srv, _ := start(t, server.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	info, err := os.Stat(server.LocalAPITokenPath(srv.DataDir()))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("local token file mode %04o, want 0600", perm)
	}
	anonymous := callledgerv1.NewCallQueryServiceClient(grpctest.Dial(t, srv.Addrs().GRPC))
	if _, err := anonymous.ListCalls(ctx, &callledgerv1.ListCallsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListCalls without the token: %v, want UNAUTHENTICATED", err)
	}
	conn := dialLocal(t, srv)
	resp, err := callledgerv1.NewCallCommandServiceClient(conn).RequestHangup(ctx, &callledgerv1.RequestHangupRequest{CallSid: "CA0123456789abcdef0123456789abcdef", RequestId: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetHangupRequest().GetRequestedBy(); got != server.LocalPrincipal {
		t.Errorf("requested_by %q, want %q", got, server.LocalPrincipal)
	}
}

// TestMetricsApartBeyondLoopback: with the webhook listener beyond
// loopback and no --metrics-addr, /metrics is served on a listener of its
// own, never on the one Twilio reaches.
func TestMetricsApartBeyondLoopback(t *testing.T) {
	t.Parallel()
	probe, err := net.Listen("tcp", "0.0.0.0:"+server.DefaultMetricsPort)
	if err != nil {
		t.Skipf("port %s is taken: %v", server.DefaultMetricsPort, err)
	}
	probe.Close()
	srv, _ := start(t, server.Config{HTTP: server.HTTP{Addr: "0.0.0.0:0"}, Privacy: server.Privacy{KEKFile: writeKEK(t, 0o600)}})
	a := srv.Addrs()
	if !strings.HasSuffix(a.Metrics, ":"+server.DefaultMetricsPort) {
		t.Fatalf("metrics at %q, want port %s", a.Metrics, server.DefaultMetricsPort)
	}
	_, httpPort, _ := net.SplitHostPort(a.HTTP)
	resp, err := http.Get("http://127.0.0.1:" + httpPort + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the webhook listener: HTTP %d, want 404", resp.StatusCode)
	}
	if fams := scrape(t, "http://127.0.0.1:"+server.DefaultMetricsPort+"/metrics"); len(fams) == 0 {
		t.Error("nothing on the metrics listener")
	}
}

// TestHTTPLimits: a request whose headers pass 64 KiB is refused (431).
func TestHTTPLimits(t *testing.T) {
	t.Parallel()
	srv, _ := start(t, server.Config{})
	req, err := http.NewRequest(http.MethodGet, "http://"+srv.Addrs().HTTP+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Padding", strings.Repeat("x", 900<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("900 KiB of headers: HTTP %d, want 431", resp.StatusCode)
	}
}

// TestWebhookTLS: with --http-tls-cert the webhooks are served over HTTPS
// only.
func TestWebhookTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "webhook CA")
	certFile, keyFile := ca.Server(t).Write(t, dir, "http")
	srv, _ := start(t, server.Config{HTTP: server.HTTP{TLSCert: certFile, TLSKey: keyFile}})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}, Timeout: failBound}
	base := "https://" + srv.Addrs().HTTP
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz over HTTPS: %d", resp.StatusCode)
	}
	if code, err := statusCallbackVia(client, base, "", callSid(7), token); err != nil || code != http.StatusNoContent {
		t.Errorf("a signed webhook over HTTPS: %d %v", code, err)
	}
	plain, err := http.Get("http://" + srv.Addrs().HTTP + "/healthz")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered")
		}
	}
}

// TestHangupRateLimit: a principal's RequestHangup calls beyond its burst
// are refused (RESOURCE_EXHAUSTED); another principal's are not.
func TestHangupRateLimit(t *testing.T) {
	t.Parallel()
	s := startSecured(t, func(cfg *server.Config, _ *testpki.CA, _ string) {
		cfg.GRPC.HangupRate, cfg.GRPC.HangupBurst = 0.001, 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	hangup := func(principal, id string) error {
		_, err := callledgerv1.NewCallCommandServiceClient(s.dial(t, principal, nil)).RequestHangup(ctx,
			&callledgerv1.RequestHangupRequest{CallSid: "CA0123456789abcdef0123456789abcdef", RequestId: id})
		return err
	}
	for i, want := range []codes.Code{codes.OK, codes.OK, codes.ResourceExhausted} {
		if err := hangup("hanger", "h"+string(rune('0'+i))); status.Code(err) != want {
			t.Errorf("hanger's call %d: %v, want %v", i+1, err, want)
		}
	}
	if err := hangup("all-but-read", "other"); err != nil {
		t.Errorf("another principal: %v", err)
	}
}

// TestWatchCaps: WatchCalls streams beyond the cap of a principal, or of
// the server, are refused (RESOURCE_EXHAUSTED); a closed one frees its
// place.
func TestWatchCaps(t *testing.T) {
	t.Parallel()
	s := startSecured(t, func(cfg *server.Config, _ *testpki.CA, _ string) {
		cfg.GRPC.MaxWatches, cfg.GRPC.MaxWatchesPerPrincipal = 3, 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	open := func(principal string) (context.CancelFunc, error) {
		wctx, stop := context.WithCancel(ctx)
		w, err := callledgerv1.NewCallQueryServiceClient(s.dial(t, principal, nil)).WatchCalls(wctx, &callledgerv1.WatchCallsRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			stop()
		}
		return stop, err
	}
	a1, err := open("reader")
	if err != nil {
		t.Fatal(err)
	}
	defer a1()
	a2, err := open("reader")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open("reader"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a third stream of one principal: %v, want RESOURCE_EXHAUSTED", err)
	}
	b1, err := open("all-but-hangup")
	if err != nil {
		t.Fatal(err)
	}
	defer b1()
	if _, err := open("all-but-admin"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a fourth stream in all: %v, want RESOURCE_EXHAUSTED", err)
	}
	a2()
	deadline := time.Now().Add(failBound)
	for {
		stop, err := open("all-but-admin")
		if err == nil {
			stop()
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after a stream closed: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDataDirPrivate: everything the server writes in its data directory
// (the stores, the read model, the tokens) is its owner's only, whatever
// the umask (Pebble's own files would be 0644 under the usual 022).
func TestDataDirPrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	srv, stop := start(t, server.Config{DataDir: dir})
	dialLocal(t, srv) // the server is up and its read model open
	if code, err := statusCallback("http://"+srv.Addrs().HTTP, "", callSid(9), token); err != nil || code != http.StatusNoContent {
		t.Fatalf("webhook: %d %v", code, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		if d.IsDir() && perm != 0o700 || !d.IsDir() && perm&0o077 != 0 {
			t.Errorf("%s has mode %04o", path, perm)
		}
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Errorf("only %d entries in the data directory", files)
	}
}

// failingTransport fails every REST request as an unreachable resolver
// does.
type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, &net.DNSError{Err: "no such host", Name: "api.twilio.com", Server: "10.1.2.3:53"}
}

// TestHangupFailureHidesTransport: when Twilio cannot be reached, the
// client learns that, not the REST URL or the resolver's address (which
// go to the log).
func TestHangupFailureHidesTransport(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	srv, _ := start(t, server.Config{
		Twilio: server.Twilio{AccountSid: "AC0123456789abcdef0123456789abcdef", APIKeySid: "SK0123456789abcdef0123456789abcdef", APIKeySecret: "secret1"},
		Seams:  server.Seams{RESTTransport: failingTransport{}},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	resp, err := callledgerv1.NewCallCommandServiceClient(dialLocal(t, srv)).RequestHangup(ctx,
		&callledgerv1.RequestHangupRequest{CallSid: "CA0123456789abcdef0123456789abcdef", RequestId: "r", EndCall: true})
	if err != nil {
		t.Fatal(err)
	}
	h := resp.GetHangupRequest()
	if h.GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED || !strings.Contains(h.GetErrorMessage(), "not reached") {
		t.Fatalf("hang-up %v: want a failure saying Twilio was not reached", h)
	}
	for _, leak := range []string{"10.1.2.3", "api.twilio.com", "https://", "/Calls/"} {
		if strings.Contains(h.GetErrorMessage(), leak) {
			t.Errorf("the client sees %q in %q", leak, h.GetErrorMessage())
		}
	}
	if !strings.Contains(logs.String(), "10.1.2.3") {
		t.Error("the log lost the details")
	}
}
