package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/internal/residue"
	"github.com/callledger/callledger/internal/server"
)

// TestCopyLedgerToKurrentDB moves a server from its embedded ledger,
// written in the clear, to KurrentDB: CopyLedger seals the events on the
// way with the data directory's key store and moves the old read model
// aside; the server started on the same data directory with --store shows
// every call as before (from a read model built from KurrentDB), no event
// in KurrentDB holds a number in the clear, and an erasure by number
// works there. A second copy writes nothing.
func TestCopyLedgerToKurrentDB(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kek := writeKEK(t, 0o600)
	const (
		sid, other = "CA5eb1ed0000000000000000000000d1d1", "CA5eb1ed0000000000000000000000d2d2"
		from, to   = "+15555550152", "+15555550153"
	)
	srv, stop := start(t, server.Config{DataDir: dir, Privacy: server.Privacy{Unsealed: true, KEKFile: kek}})
	for _, st := range []string{"ringing", "in-progress", "completed"} {
		statusForm(t, srv, sid, st, from, to, "Copy Person")
	}
	statusForm(t, srv, other, "completed", "+15555550154", "+15555550155", "Other Person")
	applied(t, srv)
	before := getCall(t, dialLocal(t, srv), sid, 0).GetCall()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kdb.Close)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	copyOnce := func() server.CopyReport {
		src, err := server.OpenStore(t.Context(), "", dir, server.StoreOptions{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		rep, err := server.CopyLedger(t.Context(), src, dir, kdb.ConnString(), kek, true, log)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := copyOnce()
	if rep.Read != 4 || rep.Written != 4 || rep.Seal.Sealed != 4 || !strings.Contains(rep.ReadModel, "projections.before-copy-") {
		t.Fatalf("copy: %+v", rep)
	}
	if again := copyOnce(); again.Written != 0 || again.Present != 4 || again.Seal.AlreadySealed != 0 || again.ReadModel != "" {
		t.Fatalf("second copy: %+v; want everything present", again)
	}

	dst, err := server.OpenStore(t.Context(), kdb.ConnString(), dir, server.StoreOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var copied int
	for pos := eventstore.Start; ; {
		evs, err := dst.ReadAll(context.Background(), pos, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			copied++
			for _, n := range residue.PhoneNumber(from) {
				if bytes.Contains(e.Data, n.Bytes) {
					t.Errorf("event %s in KurrentDB holds the number (%s) in the clear", e.ID, n.Name)
				}
			}
		}
		pos = evs[len(evs)-1].Position
	}
	dst.Close()
	if copied != 4 {
		t.Fatalf("%d events in KurrentDB, want 4", copied)
	}

	srv, _ = start(t, server.Config{DataDir: dir, StoreURL: kdb.ConnString(), Privacy: server.Privacy{KEKFile: kek}})
	applied(t, srv)
	conn := dialLocal(t, srv)
	after := getCall(t, conn, sid, 0).GetCall()
	if after.GetFrom() != from || after.GetStatus() != before.GetStatus() || after.GetDurationSeconds() != before.GetDurationSeconds() {
		t.Fatalf("on KurrentDB: %v, want as before: %v", after, before)
	}
	resp, err := callledgerv1.NewAdminServiceClient(conn).Erase(t.Context(), &callledgerv1.EraseRequest{Number: from})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCalls() != 1 || resp.GetPlaintextEvents() != 0 {
		t.Fatalf("Erase on KurrentDB = %v", resp)
	}
	checkRedacted(t, getCall(t, conn, sid, resp.GetPosition()).GetCall(), before)
}
