package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/grpctest"
)

// TestServeRecordsHangupsWithoutCredentials: without REST credentials
// serve still takes hang-up requests (the call shows as ending at once,
// requested by the caller's principal) and refuses end_call, which could
// never succeed.
func TestServeRecordsHangupsWithoutCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokens := writeAPITokens(t, dir, grpcauth.TokenEntry{Principal: "ops", SHA256: grpcauth.HashToken("ops-token"), Scopes: grpcauth.Scopes()})
	srv := startServer(t, dir, nil, "--api-tokens", tokens)
	conn := grpctest.Dial(t, srv.grpcAddr, grpctest.Token("ops-token"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	commands := callledgerv1.NewCallCommandServiceClient(conn)
	const sid = "CA0123456789abcdef0123456789abcdef"
	resp, err := commands.RequestHangup(ctx, &callledgerv1.RequestHangupRequest{CallSid: sid, RequestedBy: "ops", RequestId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := callledgerv1.NewCallQueryServiceClient(conn).GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid, MinPosition: resp.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	if !got.GetCall().GetEnding() || got.GetCall().GetHangupRequest().GetRequestedBy() != "ops" {
		t.Errorf("after RequestHangup: %v", got.GetCall())
	}
	_, err = commands.RequestHangup(ctx, &callledgerv1.RequestHangupRequest{CallSid: sid, RequestedBy: "ops", RequestId: "r2", EndCall: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("end_call without credentials: %v, want FAILED_PRECONDITION", err)
	}
}

// TestServeRefusesBadCredentials: credentials that can never work stop
// serve at start, and the error quotes no secret.
func TestServeRefusesBadCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "accounts.json")
	if err := os.WriteFile(file, []byte(`{"accounts":[{"account_sid":"AC0123456789abcdef0123456789abcdef","auth_token":"not-alnum-secret"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"accounts file", []string{"--twilio-accounts", file}},
		{"account without a secret", []string{"--twilio-account-sid", "AC0123456789abcdef0123456789abcdef"}},
		{"API key without its secret", []string{"--twilio-account-sid", "AC0123456789abcdef0123456789abcdef", "--twilio-api-key", "SK0123456789abcdef0123456789abcdef"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, tc.args...)
			_, err := cli(t, args...)
			if err == nil {
				t.Fatal("serve started")
			}
			if strings.Contains(err.Error(), "not-alnum-secret") {
				t.Errorf("error quotes the secret: %v", err)
			}
		})
	}
}

// writeAPITokens writes an API tokens file of entries into dir, mode 0600,
// and returns its path.
func writeAPITokens(t *testing.T, dir string, entries ...grpcauth.TokenEntry) string {
	t.Helper()
	raw, err := json.Marshal(grpcauth.TokensFile{Tokens: entries})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "api-tokens.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
