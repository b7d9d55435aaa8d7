package server_test

import (
	"log/slog"
	"path/filepath"
	"testing"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/residue"
	"github.com/callledger/callledger/internal/server"
)

// TestSealLedgerThenErase: a ledger stored in the clear (--seal=false),
// then partly sealed (sealing turned on), is sealed offline by
// SealLedger; the server, started with sealing on,
// shows the calls as before; callledger erase --number then finds the
// calls of the number through the party index the pass filled, reports no
// event left in the clear, and afterwards no file under the data
// directory holds the number, the caller's name, the recording URL or the
// raw requests (docs/PRIVACY.md §7 and §9). A call erased before the
// pass (its events then still in the clear in the log) loses its personal
// fields in the pass and is in no file either. A second pass changes
// nothing. The control: another call's number is still found.
func TestSealLedgerThenErase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kek := writeKEK(t, 0o600)
	const (
		sid, kept        = "CA5eb1ed0000000000000000000000a5a5", "CA5eb1ed0000000000000000000000b0b0"
		from, to, caller = "+15555550142", "+15555550143", "Quentin Zarathustra"
		other            = "+15555550144"
		early, earlyNum  = "CA5eb1ed0000000000000000000000c1c1", "+15555550146"
	)
	srv, stop := start(t, server.Config{DataDir: dir, Privacy: server.Privacy{Unsealed: true, KEKFile: kek}})
	var bodies []string
	for _, st := range []string{"ringing", "in-progress"} {
		bodies = append(bodies, statusForm(t, srv, sid, st, from, to, caller))
	}
	statusForm(t, srv, kept, "completed", other, "+15555550145", "Other Person")
	earlyBody := statusForm(t, srv, early, "completed", earlyNum, "+15555550147", "Early Erased")
	applied(t, srv)
	resp, err := callledgerv1.NewAdminServiceClient(dialLocal(t, srv)).Erase(t.Context(), &callledgerv1.EraseRequest{CallSid: early})
	if err != nil || resp.GetPlaintextEvents() != 1 {
		t.Fatalf("erasure before the pass: %v, %v; want its one event counted as still in the clear", resp, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Sealing turned on: the call's last callback is sealed when stored,
	// its first two stay in the clear until the pass.
	srv, stop = start(t, server.Config{DataDir: dir, Privacy: server.Privacy{KEKFile: kek}})
	bodies = append(bodies, statusForm(t, srv, sid, "completed", from, to, caller))
	applied(t, srv)
	conn := dialLocal(t, srv)
	before := getCall(t, conn, sid, 0).GetCall()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if hits, err := residue.Find(filepath.Join(dir, "ledger"), residue.PhoneNumber(from)...); err != nil || len(hits) == 0 {
		t.Fatalf("the clear ledger does not hold the number (%v): the test proves nothing", err)
	}

	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := server.SealLedger(t.Context(), dir, kek, log)
	if err != nil {
		t.Fatal(err)
	}
	// Read: 5 webhooks and the erasure's event, which has no personal
	// data; one webhook was sealed when stored.
	if rep.Read != 6 || rep.Sealed != 3 || rep.AlreadySealed != 1 || rep.Redacted != 1 || rep.Clear != 1 || rep.Undecodable != 0 {
		t.Fatalf("first pass: %+v, want 3 webhooks sealed, 1 sealed already, the erased call's redacted", rep)
	}
	// The ledger alone (the read model shows numbers in the clear by
	// design) no longer holds them.
	if hits, err := residue.Find(filepath.Join(dir, "ledger"), residue.PhoneNumber(from)...); err != nil || len(hits) > 0 {
		t.Fatalf("the sealed ledger still holds the number: %v %v", hits, err)
	}
	if again, err := server.SealLedger(t.Context(), dir, kek, log); err != nil || again.Sealed != 0 || again.Redacted != 0 || again.AlreadySealed != 4 || again.Clear != 2 {
		t.Fatalf("second pass: %+v, %v; want nothing to do", again, err)
	}

	srv, stop = start(t, server.Config{DataDir: dir, Privacy: server.Privacy{KEKFile: kek}})
	conn = dialLocal(t, srv)
	if c := getCall(t, conn, sid, 0).GetCall(); c.GetFrom() != from || c.GetCallerName() != caller || c.GetStatus() != before.GetStatus() {
		t.Fatalf("after the pass: %v, want as before: %v", c, before)
	}
	resp, err = callledgerv1.NewAdminServiceClient(conn).Erase(t.Context(), &callledgerv1.EraseRequest{Number: from})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCalls() != 1 || resp.GetCallSids()[0] != sid || resp.GetPlaintextEvents() != 0 {
		t.Fatalf("Erase = %v", resp)
	}
	checkRedacted(t, getCall(t, conn, sid, resp.GetPosition()).GetCall(), before)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	needles := erasedCall(sid, from, to, caller, bodies)
	needles = append(needles, erasedCall(early, earlyNum, "+15555550147", "Early Erased", []string{earlyBody})...)
	assertNoResidue(t, dir, "after the pass and the erasure", other, needles...)
}
