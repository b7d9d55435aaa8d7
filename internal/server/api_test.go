package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/callledger/callledger/internal/server"
)

// TestAPIAddrChecked: without a Twilio auth token the API listener, like
// the webhooks', binds loopback only; bad CORS origins stop the start.
func TestAPIAddrChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  server.Config
		want string
	}{
		{"development mode beyond loopback", server.Config{API: server.API{Addr: "0.0.0.0:0"}}, "--api-addr 0.0.0.0:0"},
		{"CORS origin with a path", server.Config{API: server.API{Addr: "127.0.0.1:0", CORSOrigins: []string{"https://ops.example.com/board"}}}, "https://ops.example.com/board"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.DataDir = t.TempDir()
			cfg.HTTP.Addr, cfg.GRPC.Addr = "127.0.0.1:0", "127.0.0.1:0"
			srv, err := server.New(context.Background(), cfg)
			if err == nil {
				srv.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

// TestAPILocalAccess: in development mode (as after `make run`) the API
// takes this machine's requests without a token — from a program, or from
// the board's own page — and refuses what another site's page sends, or a
// request that names another host (DNS rebinding); with a Twilio auth token
// every request needs a token.
func TestAPILocalAccess(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, srv *server.Server, header http.Header, host string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+srv.Addrs().API+"/v1/stats", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	dev, _ := startAsIs(t, server.Config{API: server.API{Addr: "127.0.0.1:0"}})
	own := "http://" + dev.Addrs().API
	for _, tc := range []struct {
		name   string
		header http.Header
		host   string
		want   int
	}{
		{"a program (curl)", http.Header{}, "", http.StatusOK},
		{"the board's own page", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {own}}, "", http.StatusOK},
		{"typed in the address bar", http.Header{"Sec-Fetch-Site": {"none"}}, "", http.StatusOK},
		{"localhost by name", http.Header{}, "localhost:1", http.StatusOK},
		{"another site's page", http.Header{"Sec-Fetch-Site": {"cross-site"}}, "", http.StatusUnauthorized},
		{"another origin", http.Header{"Origin": {"http://evil.example"}}, "", http.StatusUnauthorized},
		{"a rebound name", http.Header{}, "evil.example:8081", http.StatusUnauthorized},
		{"a wrong token", http.Header{"Authorization": {"Bearer wrong"}}, "", http.StatusUnauthorized},
	} {
		if got := get(t, dev, tc.header, tc.host); got != tc.want {
			t.Errorf("development mode, %s: HTTP %d, want %d", tc.name, got, tc.want)
		}
	}
	prodDir := t.TempDir()
	prod, _ := start(t, server.Config{DataDir: prodDir, API: server.API{Addr: "127.0.0.1:0"}})
	if got := get(t, prod, http.Header{}, ""); got != http.StatusUnauthorized {
		t.Errorf("with a Twilio auth token, no token: HTTP %d, want 401", got)
	}
	tok, err := server.ReadLocalAPIToken(prodDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, prod, http.Header{"Authorization": {"Bearer " + tok}}, ""); got != http.StatusOK {
		t.Errorf("with a Twilio auth token and the local token: HTTP %d, want 200", got)
	}
}
