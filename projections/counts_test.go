package projections_test

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/projections/callstore"
)

// TestCountsSurviveReopenAndMigrate checks the read model's call counts
// after a restart (persisted with the records) and in a store written
// before counts existed (computed by a scan at Open).
func TestCountsSurviveReopenAndMigrate(t *testing.T) {
	t.Parallel()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	dir := t.TempDir()
	cs, err := callstore.Open(dir, callstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, store, cs, fillSome(t, store, 120, 7, 0.5)) // calls left in progress
	before := cs.Counts()
	if before.Total == 0 || before.Active == 0 || len(before.ByStatus) < 3 {
		t.Fatalf("implausible counts of 120 simulated calls: %+v", before)
	}
	sameCounts(t, cs)
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}

	reopen := func() *callstore.Store {
		t.Helper()
		cs, err := callstore.Open(dir, callstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	cs = reopen()
	sameCounts(t, cs)
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}

	// A read model from before the counts: the key is gone.
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Delete([]byte("mcounts"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	cs = reopen()
	defer cs.Close()
	sameCounts(t, cs)
	// And it keeps counting live: more calls arrive, and all end.
	runUntil(t, store, cs, fill(t, store, 120, 7))
	sameCounts(t, cs)
	if after := cs.Counts(); after.Active != 0 || after.Total < before.Total {
		t.Errorf("counts once every call ended: %+v (before %+v)", after, before)
	}
}
