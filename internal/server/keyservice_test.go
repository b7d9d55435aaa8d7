package server_test

import (
	"bytes"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/residue"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/testpki"
)

// TestWebhookReplicaSealsWithKeyService: a webhook replica on KurrentDB
// seals with keys of the key service of the node that holds the key store,
// over TLS with a keys:use token: KurrentDB holds no number in the clear,
// the projection's node opens the call, and an erasure there redacts it,
// even for a late event the replica sealed under the key it had. A replica
// whose token lacks the scope stores nothing and answers 5xx. The key
// service's methods refuse every principal but one with keys:use.
func TestWebhookReplicaSealsWithKeyService(t *testing.T) {
	t.Parallel()
	kdb, s, caFile := keyNode(t)
	replicaOf := func(principal string) *server.Server {
		replica, _ := start(t, server.Config{Role: server.RoleWebhooks, StoreURL: kdb.ConnString(), Privacy: server.Privacy{
			KeyService: server.KeyService{Addr: s.srv.Addrs().GRPC, TokenFile: keysToken(t, principal), TLSCA: caFile},
		}})
		return replica
	}
	replica := replicaOf("keys")

	const (
		sid    = "CA5eb1ed0000000000000000000000beef"
		from   = "+15555550142"
		to     = "+15555550187"
		caller = "Quintessa Vandermeer"
	)
	form := callerForm(sid, "ringing", from, to, caller)
	_, pos := postStatus(t, replica, form)
	reader := s.dial(t, "reader", nil)
	if c := getCall(t, reader, sid, pos).GetCall(); c.GetFrom() != from || c.GetCallerName() != caller {
		t.Fatalf("the projection's node does not open what the replica sealed: %v", c)
	}
	events, err := s.srv.Store().ReadAll(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		for _, needle := range []string{"5555550142", caller} {
			if bytes.Contains(ev.Data, []byte(needle)) || bytes.Contains(ev.Metadata, []byte(needle)) {
				t.Errorf("event %d of %s holds %q in the clear", ev.Position, ev.Stream, needle)
			}
		}
	}

	resp, err := callledgerv1.NewAdminServiceClient(s.dial(t, "eraser", nil)).Erase(t.Context(), &callledgerv1.EraseRequest{Number: from})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCalls() != 1 {
		t.Fatalf("Erase = %v", resp)
	}
	checkRedacted(t, getCall(t, reader, sid, resp.GetPosition()).GetCall(), nil)
	// The replica still holds the key (its cache lives a minute): what it
	// seals now is under a destroyed key, and opens redacted.
	form.Set("CallStatus", "completed")
	form.Set("CallDuration", "17")
	_, pos = postStatus(t, replica, form)
	c := getCall(t, reader, sid, pos).GetCall()
	checkRedacted(t, c, nil)
	if c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED {
		t.Errorf("the late event's facts are lost: %v", c)
	}

	// A replica without keys:use stores nothing.
	unkeyed := replicaOf("reader")
	form.Set("CallSid", "CA5eb1ed0000000000000000000000f00d")
	res := sendStatus(t, unkeyed, form)
	if res.StatusCode/100 != 5 {
		t.Errorf("a replica refused its keys answered HTTP %d, want 5xx", res.StatusCode)
	}
	after, err := s.srv.Store().ReadAll(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range after {
		if strings.Contains(ev.Stream, "f00d") {
			t.Errorf("a replica refused its keys stored event %d of %s", ev.Position, ev.Stream)
		}
	}

	conns := map[string]*grpc.ClientConn{}
	for p := range principals {
		conns[p] = s.dial(t, p, nil)
	}
	info := s.srv.GRPCServices()["callledger.keystore.v1.KeyService"]
	if len(info.Methods) != 3 {
		t.Fatalf("the key service is not served: %v", info)
	}
	for _, m := range info.Methods {
		name := grpcauth.Method("callledger.keystore.v1.KeyService", m.Name)
		t.Run(strings.TrimPrefix(name, "/"), func(t *testing.T) { checkByCredential(t, s.dial(t, "", nil), conns, name, m) })
	}
}

// keyNode starts the node that holds the key store on a KurrentDB test
// server, with gRPC over TLS and the test principals; it returns the
// database, the node and its CA's file.
func keyNode(t *testing.T) (*kurrentdbtest.Server, *secured, string) {
	t.Helper()
	kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kdb.Close)
	s := startSecured(t, func(cfg *server.Config, _ *testpki.CA, _ string) {
		cfg.StoreURL = kdb.ConnString()
		cfg.Privacy.KEKFile = writeKEK(t, 0o600)
	})
	caFile := filepath.Join(s.dir, "ca.pem")
	testpki.WriteFile(t, caFile, s.ca.PEM)
	return kdb, s, caFile
}

// keysToken writes the token of principal into a file of its own.
func keysToken(t *testing.T, principal string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	testpki.WriteFile(t, path, []byte(tokenOf(principal)+"\n"))
	return path
}

// TestQueryReplicaWithKeyService: a second --role all node on the same
// KurrentDB reads its keys from the key store's node: it seals the
// webhooks it takes and opens every call, whichever node sealed it; it
// refuses erasures (they are made on the key store's node), and once it
// has applied one made there, its calls are redacted and its read model's
// files no longer hold the number.
func TestQueryReplicaWithKeyService(t *testing.T) {
	t.Parallel()
	kdb, s, caFile := keyNode(t)
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, StoreURL: kdb.ConnString(),
		Privacy: server.Privacy{KeyService: server.KeyService{Addr: s.srv.Addrs().GRPC, TokenFile: keysToken(t, "keys"), TLSCA: caFile}},
		Seams:   server.Seams{ScrubInterval: 20 * time.Millisecond}}
	replica, stop := start(t, cfg)
	const (
		erased = "CA5eb1ed00000000000000000000000e1a"
		kept   = "CA5eb1ed00000000000000000000000e1b"
		from   = "+15555550163"
		other  = "+15555550164"
	)
	statusForm(t, replica, erased, "completed", from, "+15555550100", "Ottoline Brackenbury")
	_, pos := postStatus(t, s.srv, url.Values{
		"CallSid": {kept}, "AccountSid": {"AC0123456789abcdef0123456789abcdef"}, "CallStatus": {"completed"},
		"Direction": {"inbound"}, "From": {other}, "To": {"+15555550100"}, "CallDuration": {"3"}, "ApiVersion": {"2010-04-01"},
	})
	local := dialLocal(t, replica)
	if c := getCall(t, local, kept, pos).GetCall(); c.GetFrom() != other {
		t.Fatalf("the replica does not open what the key store's node sealed: %v", c)
	}
	if c := getCall(t, s.dial(t, "reader", nil), erased, pos).GetCall(); c.GetFrom() != from {
		t.Fatalf("the key store's node does not open what the replica sealed: %v", c)
	}
	if c := getCall(t, local, erased, 0).GetCall(); c.GetFrom() != from {
		t.Fatalf("the replica does not open what it sealed: %v", c)
	}

	// The control: stopped, the replica's files hold the number (its read
	// model's WAL), so that their not holding it later is the scrub's doing.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	waitResidue(t, dir, from, true)
	replica, _ = start(t, cfg)
	local = dialLocal(t, replica)

	if _, err := callledgerv1.NewAdminServiceClient(local).Erase(t.Context(), &callledgerv1.EraseRequest{Number: from}); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "erase on that node") {
		t.Errorf("an erasure asked of the replica: %v, want FAILED_PRECONDITION naming the key store's node", err)
	}
	resp, err := callledgerv1.NewAdminServiceClient(s.dial(t, "eraser", nil)).Erase(t.Context(), &callledgerv1.EraseRequest{Number: from})
	if err != nil || resp.GetCalls() != 1 {
		t.Fatalf("Erase: %v, %v", resp, err)
	}
	checkRedacted(t, getCall(t, local, erased, resp.GetPosition()).GetCall(), nil)
	if c := getCall(t, local, kept, 0).GetCall(); c.GetFrom() != other {
		t.Errorf("the call not erased: %v", c)
	}
	// The replica scrubs its read model of the redacted call.
	waitResidue(t, dir, from, false)
	if hits, err := residue.Find(dir, residue.PhoneNumber(other)...); err != nil || len(hits) == 0 {
		t.Errorf("the number not erased is in no file of the replica (%v): the search proves nothing", err)
	}
}

// waitResidue waits until the files under dir hold number (in any
// encoding), or no longer hold it.
func waitResidue(t *testing.T, dir, number string, held bool) {
	t.Helper()
	deadline := time.Now().Add(failBound)
	for {
		hits, err := residue.Find(dir, residue.PhoneNumber(number)...)
		if err != nil {
			t.Fatal(err)
		}
		if (len(hits) > 0) == held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the files under %s hold %s: %v, want %v", failBound, dir, number, hits, held)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
