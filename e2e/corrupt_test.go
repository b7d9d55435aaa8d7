package e2e_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"

	"github.com/callledger/callledger/internal/diskdamage"
	"github.com/callledger/callledger/internal/server"
)

// TestCorruptReadModelKeepsIngesting damages the tables of a running
// server's read model: webhooks are acknowledged throughout, the query
// that meets the damage answers UNAVAILABLE (the process does not crash),
// and once the read model rebuilt from the ledger has taken over, queries
// answer exactly what the corpus expects.
func TestCorruptReadModelKeepsIngesting(t *testing.T) {
	t.Parallel()
	reqs, exp, abs := mustCorpus(t)
	dir := t.TempDir()
	s := newStackWith(t, embedded, server.Config{DataDir: dir})
	half := len(reqs) / 2
	s.deliverAll(t, reqs[:half])
	if t.Failed() {
		t.FailNow()
	}
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	if err := s.projection.waitFor(ctx, s.seen()); err != nil {
		t.Fatal(err)
	}
	calls := s.srv.Projection()
	before := calls.CurrentName()
	if err := calls.Current().Flush(); err != nil {
		t.Fatal(err)
	}
	diskdamage.FlipTables(t, filepath.Join(server.ProjectionRoot(dir), before))

	// The first query reads the damaged tables (nothing is cached yet):
	// UNAVAILABLE, never a crash or a wrong answer.
	_, err := s.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: exp[0].CallSid})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetCall on the damaged read model: %v, want UNAVAILABLE", err)
	}
	s.deliverAll(t, reqs) // Twilio's retries and the second half, all acknowledged
	if t.Failed() {
		t.FailNow()
	}
	deadline := time.Now().Add(failBound)
	for calls.Damaged() || calls.CurrentName() == before {
		if time.Now().After(deadline) {
			t.Fatalf("read model %s, damaged %v after %v: not rebuilt", calls.CurrentName(), calls.Damaged(), failBound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The replacement was rebuilt from the ledger while webhooks arrived:
	// which events reached it through the rebuild and which through a
	// subscription depends on when the rebuild read the head, which the
	// test cannot see. So every event up to the head may have come either
	// way; what the test holds to is the served state of every call, and
	// that no subscription delivered an event twice or one not in the log.
	rebuiltUpTo, err := s.events.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.checkCorpusRebuilt(t, exp, abs, rebuiltUpTo)
	if n, err := strconv.ParseFloat(s.metric(t, "callledger_read_model_corruptions_total"), 64); err != nil || n < 1 {
		t.Errorf("callledger_read_model_corruptions_total %v %v, want at least 1", n, err)
	}
	if got := s.metric(t, "callledger_read_model_damaged"); got != "0" {
		t.Errorf("callledger_read_model_damaged %s after the rebuild, want 0", got)
	}
}
