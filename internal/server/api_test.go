package server_test

import (
	"context"
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
