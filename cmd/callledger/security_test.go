package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/grpctest"
)

// TestServeRefusesOpenGRPCBeyondLoopback: serve with a gRPC address beyond
// loopback and neither TLS nor API tokens exits with a message that says
// what to configure, in development mode and with a Twilio token alike.
func TestServeRefusesOpenGRPCBeyondLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"with a Twilio token", []string{"--auth-token", "tok", "--public-url", "https://hooks.example.com"},
			[]string{"--grpc-addr 0.0.0.0:9090 is not a loopback address", "--grpc-tls-cert", "--api-tokens", "--grpc-insecure"}},
		{"development mode", nil, []string{"development mode", "--grpc-addr 0.0.0.0:9090"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--grpc-addr", "0.0.0.0:9090"}, tc.args...)
			_, err := runCLI(t, args...)
			if err == nil {
				t.Fatal("serve started")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q: want %q", err, want)
				}
			}
		})
	}
}

// TestServeReloadsOnSIGHUP: a serve process re-reads its API tokens file
// when it gets SIGHUP, and keeps running.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	read := []grpcauth.Scope{grpcauth.ScopeCallsRead}
	tokens := writeAPITokens(t, dir, grpcauth.TokenEntry{Principal: "first", SHA256: grpcauth.HashToken("first-token"), Scopes: read})
	srv := startServer(t, dir, nil, "--api-tokens", tokens)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list := func(tok string) error {
		_, err := callledgerv1.NewCallQueryServiceClient(grpctest.Dial(t, srv.grpcAddr, grpctest.Token(tok))).ListCalls(ctx, &callledgerv1.ListCallsRequest{})
		return err
	}
	if err := list("first-token"); err != nil {
		t.Fatal(err)
	}
	writeAPITokens(t, dir, grpcauth.TokenEntry{Principal: "second", SHA256: grpcauth.HashToken("second-token"), Scopes: read})
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for {
		err := list("second-token")
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unauthenticated || ctx.Err() != nil {
			t.Fatalf("the new token after SIGHUP: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := list("first-token"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the removed token after SIGHUP: %v, want UNAUTHENTICATED", err)
	}
}
