package server_test

import (
	"bytes"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/testpki"
	"github.com/callledger/callledger/twilio"
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
	replicaOf := func(principal string) *server.Server {
		tokenFile := filepath.Join(t.TempDir(), "token")
		testpki.WriteFile(t, tokenFile, []byte(tokenOf(principal)+"\n"))
		replica, _ := start(t, server.Config{Role: server.RoleWebhooks, StoreURL: kdb.ConnString(), Privacy: server.Privacy{
			KeyService: server.KeyService{Addr: s.srv.Addrs().GRPC, TokenFile: tokenFile, TLSCA: caFile},
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
	form := url.Values{
		"CallSid": {sid}, "AccountSid": {"AC0123456789abcdef0123456789abcdef"}, "CallStatus": {"ringing"},
		"Direction": {"inbound"}, "From": {from}, "To": {to}, "Caller": {from}, "Called": {to},
		"CallerName": {caller}, "ApiVersion": {"2010-04-01"},
	}
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
	body := form.Encode()
	path := twilio.KindStatus.Path()
	req, err := http.NewRequest(http.MethodPost, "http://"+unkeyed.Addrs().HTTP+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilio.Sign(token, publicURL+path, []byte(body)))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
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
	if len(info.Methods) != 2 {
		t.Fatalf("the key service is not served: %v", info)
	}
	for _, m := range info.Methods {
		name := grpcauth.Method("callledger.keystore.v1.KeyService", m.Name)
		t.Run(strings.TrimPrefix(name, "/"), func(t *testing.T) { checkByCredential(t, s.dial(t, "", nil), conns, name, m) })
	}
}
