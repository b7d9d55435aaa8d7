package main

import (
	"strings"
	"testing"

	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
)

// TestCopyCommand copies a ledger that load wrote in the clear into
// KurrentDB, sealing it on the way; a second run finds everything there.
// --to is required and may not be the ledger copied.
func TestCopyCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := cli(t, "load", "--data-dir", dir, "--events", "500", "--seed", "5"); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	if _, err := cli(t, "copy", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "--to") {
		t.Fatalf("copy without --to: %v", err)
	}
	kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kdb.Close)
	if _, err := cli(t, "copy", "--store", kdb.ConnString(), "--to", kdb.ConnString()); err == nil || !strings.Contains(err.Error(), "another database") {
		t.Fatalf("copy into itself: %v", err)
	}
	kek := testKEKFile(t)
	out, err := cli(t, "copy", "--data-dir", dir, "--to", kdb.ConnString(), "--kek-file", kek)
	if err != nil {
		t.Fatalf("copy: %v\n%s", err, out)
	}
	read := count(t, out, "events read")
	if read < 500 || count(t, out, "events written") != read || count(t, out, "sealed on the way") != read ||
		!strings.Contains(out, "still holds the events") {
		t.Fatalf("copy:\n%s", out)
	}
	out, err = cli(t, "copy", "--data-dir", dir, "--to", kdb.ConnString(), "--kek-file", kek)
	if err != nil || count(t, out, "events written") != 0 || count(t, out, "already there") != read {
		t.Fatalf("second copy: %v\n%s", err, out)
	}
}
