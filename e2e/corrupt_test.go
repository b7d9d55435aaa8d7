package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"

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
	damageTables(t, filepath.Join(server.ProjectionRoot(dir), before))

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
	s.checkCorpus(t, exp, abs)
	if n, err := strconv.ParseFloat(s.metric(t, "callledger_read_model_corruptions_total"), 64); err != nil || n < 1 {
		t.Errorf("callledger_read_model_corruptions_total %v %v, want at least 1", n, err)
	}
	if got := s.metric(t, "callledger_read_model_damaged"); got != "0" {
		t.Errorf("callledger_read_model_damaged %s after the rebuild, want 0", got)
	}
}

// damageTables flips the bytes of the first three quarters (the data
// blocks) of every table in dir, in place, as a failing disk would.
func damageTables(t *testing.T, dir string) {
	t.Helper()
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("no tables in %s: %v", dir, err)
	}
	damaged := 0
	for _, path := range tables {
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue // a compaction replaced it meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(b) * 3 / 4 {
			b[i] ^= 0xa5
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged == 0 {
		t.Fatalf("no table of %s left to damage", dir)
	}
}
