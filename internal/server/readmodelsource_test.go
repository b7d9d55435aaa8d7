package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/internal/server"
)

func TestStoreIdentity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"", "embedded"},
		{"esdb://localhost:2113?tls=false", "kurrentdb esdb://localhost:2113"},
		{"esdb://admin:changeit@DB2:2113,db1:2113?tls=true&tlsCAFile=/ca.crt", "kurrentdb esdb://db1:2113,db2:2113"},
		{"esdb+discover://cluster.example.com/?tls=true", "kurrentdb esdb+discover://cluster.example.com"},
	} {
		if got := server.StoreIdentity(tc.url); got != tc.want {
			t.Errorf("StoreIdentity(%q) = %q, want %q", tc.url, got, tc.want)
		}
	}
}

// TestReadModelOfAnotherStore: a data directory whose read model folded
// the embedded ledger, started with --store on a KurrentDB database, does
// not resume at the embedded ledger's positions: the read model is moved
// aside and one of the new store is built (the call stored in the old
// ledger is not there, one sent now is); started again on the same store,
// it is kept.
func TestReadModelOfAnotherStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const old, fresh = "CA5eb1ed0000000000000000000000e1e1", "CA5eb1ed0000000000000000000000e2e2"
	srv, stop := start(t, server.Config{DataDir: dir})
	statusForm(t, srv, old, "completed", "+15555550160", "+15555550161", "Old Store")
	applied(t, srv)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "projections", "store")); err != nil || strings.TrimSpace(string(b)) != "embedded" {
		t.Fatalf("the read model's store: %q, %v", b, err)
	}

	kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kdb.Close)
	for round := range 2 {
		srv, stop = start(t, server.Config{DataDir: dir, StoreURL: kdb.ConnString()})
		if round == 0 {
			statusForm(t, srv, fresh, "completed", "+15555550162", "+15555550163", "New Store")
		}
		applied(t, srv)
		conn := dialLocal(t, srv)
		if _, err := callledgerv1.NewCallQueryServiceClient(conn).GetCall(t.Context(), &callledgerv1.GetCallRequest{CallSid: old}); status.Code(err) != codes.NotFound {
			t.Fatalf("round %d: the call of the old store: %v, want NotFound", round, err)
		}
		if c := getCall(t, conn, fresh, 0).GetCall(); c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED {
			t.Fatalf("round %d: the call of the new store: %v", round, c)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	aside, err := filepath.Glob(filepath.Join(dir, "projections.other-store-*"))
	if err != nil || len(aside) != 1 {
		t.Fatalf("read models moved aside: %v, %v; want the old one, once", aside, err)
	}
}
