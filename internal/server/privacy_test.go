package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/residue"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/keystore"
)

// writeKEK writes a key-encryption key file, as openssl rand -base64 32
// does, with mode.
func writeKEK(t *testing.T, mode os.FileMode) string {
	t.Helper()
	raw := make([]byte, keystore.KEKSize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKEKRefusals: a server that would seal with an unprotected key, or
// with keys the projection's node could not open, does not start, and
// says what to do.
func TestKEKRefusals(t *testing.T) {
	t.Parallel()
	usedDir := t.TempDir()
	_, stop := start(t, server.Config{DataDir: usedDir, Privacy: server.Privacy{KEKFile: writeKEK(t, 0o600)}})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  server.Config
		has  []string
		is   error
	}{
		{"beyond loopback without --kek-file", server.Config{HTTP: server.HTTP{Addr: "0.0.0.0:0"}, Metrics: server.Metrics{Addr: "127.0.0.1:0"}},
			[]string{"--kek-file is required", "openssl rand -base64 32"}, nil},
		{"a KEK file others may read", server.Config{Privacy: server.Privacy{KEKFile: writeKEK(t, 0o644)}},
			[]string{"--kek-file", "chmod 600"}, keystore.ErrInsecureFile},
		{"another KEK than the key store's", server.Config{DataDir: usedDir, Privacy: server.Privacy{KEKFile: writeKEK(t, 0o600)}},
			[]string{"another key-encryption key"}, keystore.ErrWrongKEK},
		{"webhook replicas on KurrentDB without a key service", server.Config{Role: server.RoleWebhooks, StoreURL: "esdb://127.0.0.1:1?tls=false"},
			[]string{"--role webhooks on KurrentDB", "--key-service-addr", "--seal=false"}, nil},
		{"a key service beyond loopback without TLS", server.Config{Role: server.RoleWebhooks, StoreURL: "esdb://127.0.0.1:1?tls=false",
			Privacy: server.Privacy{KeyService: server.KeyService{Addr: "10.0.0.7:9090"}}},
			[]string{"--key-service-addr 10.0.0.7:9090", "TLS"}, nil},
		{"a key service with the embedded store", server.Config{Privacy: server.Privacy{KeyService: server.KeyService{Addr: "127.0.0.1:9"}}},
			[]string{"--key-service-addr is for nodes that share a KurrentDB"}, nil},
		{"retention on a node whose keys are another's", server.Config{StoreURL: "esdb://127.0.0.1:1?tls=false",
			Erasure: server.Erasure{Retention: time.Hour}, Privacy: server.Privacy{KeyService: server.KeyService{Addr: "127.0.0.1:9"}}},
			[]string{"--retention", "the node that holds it"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.DataDir = cmpOr(cfg.DataDir, t.TempDir())
			cfg.HTTP.AuthToken, cfg.HTTP.PublicURL = token, publicURL
			cfg.HTTP.Addr = cmpOr(cfg.HTTP.Addr, "127.0.0.1:0")
			cfg.GRPC.Addr = "127.0.0.1:0"
			srv, err := server.New(context.Background(), cfg)
			if err == nil {
				srv.Close()
				t.Fatal("the server started")
			}
			for _, s := range tc.has {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestPersonalDataSealed: a webhook naming a caller is stored with the
// caller's numbers, name and the raw request sealed — no file of the log
// holds them in any encoding — while GetCall, ListCallEvents and its REST
// route show them opened.
func TestPersonalDataSealed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, stop := start(t, server.Config{DataDir: dir, API: server.API{Addr: "127.0.0.1:0"}, Privacy: server.Privacy{KEKFile: writeKEK(t, 0o600)}})
	const (
		sid    = "CA5eb1ed0000000000000000000000c0de"
		from   = "+15555550123"
		to     = "+15555550187"
		caller = "Zebulon Quuxley"
	)
	form := callerForm(sid, "completed", from, to, caller)
	form.Set("CallDuration", "42")
	body, pos := postStatus(t, srv, form)

	client := callledgerv1.NewCallQueryServiceClient(dialLocal(t, srv))
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	got, err := client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid, MinPosition: pos})
	if err != nil {
		t.Fatal(err)
	}
	if c := got.GetCall(); c.GetFrom() != from || c.GetTo() != to || c.GetCallerName() != caller {
		t.Errorf("GetCall: from %q to %q caller name %q, want them opened", c.GetFrom(), c.GetTo(), c.GetCallerName())
	}
	evs, err := client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: sid})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.GetEvents()) != 1 {
		t.Fatalf("ListCallEvents: %d events, want 1", len(evs.GetEvents()))
	}
	se := evs.GetEvents()[0]
	ev := se.GetEvent()
	if ev.GetCallStatusReported().GetFrom() != from || string(ev.GetRequest().GetBody()) != body || se.GetRedacted() {
		t.Errorf("ListCallEvents: %v, want it opened, the request's body included", se)
	}
	if ev.GetSealed() != nil || ev.GetSealedRequest() != nil {
		t.Error("ListCallEvents shows the sealed parts of an opened event")
	}

	tok, err := server.ReadLocalAPIToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.Addrs().API+"/v1/calls/"+sid+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	rest.Header.Set("Authorization", "Bearer "+tok)
	rresp, err := http.DefaultClient.Do(rest)
	if err != nil {
		t.Fatal(err)
	}
	rbody, _ := io.ReadAll(rresp.Body)
	rresp.Body.Close()
	if rresp.StatusCode != http.StatusOK || !strings.Contains(string(rbody), from) || !strings.Contains(string(rbody), caller) {
		t.Errorf("GET /v1/calls/%s/events: HTTP %d %s, want the event opened", sid, rresp.StatusCode, rbody)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	needles := append(residue.PhoneNumber(from), residue.PhoneNumber(to)...)
	needles = append(needles, residue.Bytes("caller name", []byte(caller)), residue.Bytes("request body", []byte(body)))
	for _, d := range []string{filepath.Join(dir, "ledger"), server.KeyStorePath(dir)} {
		hits, err := residue.Find(d, needles...)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			t.Errorf("%s: %v", d, h)
		}
	}
	// The control: the read model keeps the numbers in the clear
	// (docs/PRIVACY.md §6), and the search finds them there.
	hits, err := residue.Find(server.ProjectionRoot(dir), residue.PhoneNumber(from)...)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) == 0 {
		t.Error("the search finds the number nowhere, not even in the read model: it proves nothing")
	}
}
