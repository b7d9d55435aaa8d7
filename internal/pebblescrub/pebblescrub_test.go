package pebblescrub

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/callledger/callledger/internal/pebblelog"
	"github.com/callledger/callledger/internal/residue"
)

func options() *pebble.Options {
	return &pebble.Options{Logger: pebblelog.New(slog.New(slog.DiscardHandler), 0)}
}

// writeAndDelete writes a secret behind 64 KiB of other writes (so that a
// recycled WAL's new contents do not reach it), then makes its WAL
// obsolete and recycled, writes on so that the recycled file is reused,
// and deletes the secret: the life of a data key that is destroyed later.
func writeAndDelete(t *testing.T, db *pebble.DB, secret []byte) {
	t.Helper()
	filler := bytes.Repeat([]byte{'f'}, 1024)
	for i := range 64 {
		if err := db.Set(fmt.Appendf(nil, "filler-%03d", i), filler, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Set([]byte("s/secret"), secret, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := db.Set(fmt.Appendf(nil, "later-%d", i), []byte("x"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Delete([]byte("s/secret"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func secretBytes(t *testing.T) []byte {
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

var secretRange = []pebble.KeyRange{{Start: []byte("s/"), End: []byte("s0")}}

// TestStockPebbleKeepsDeletedBytes is the control: with Pebble's own file
// system, a flush and a compaction of the deleted range leave the value in
// a recycled WAL. Without this, the scrub test below could pass for the
// wrong reason.
func TestStockPebbleKeepsDeletedBytes(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, options())
	if err != nil {
		t.Fatal(err)
	}
	secret := secretBytes(t)
	writeAndDelete(t, db, secret)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(context.Background(), secretRange[0].Start, secretRange[0].End, false); err != nil {
		t.Fatal(err)
	}
	db.TestOnlyWaitForCleaning()
	hits, err := residue.Find(dir, residue.Bytes("secret", secret))
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) == 0 {
		t.Fatal("the stock file system left no copy of the deleted value: the scrub test proves nothing")
	}
	t.Logf("stock Pebble after delete, flush and compaction: %v", hits)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestScrubLeavesNoCopy(t *testing.T) {
	dir := t.TempDir()
	opts := options()
	s := New(dir, opts)
	db, err := pebble.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	secret := secretBytes(t)
	writeAndDelete(t, db, secret)

	// Writes go on during the scrub.
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.Set(fmt.Appendf(nil, "during-%06d", i), []byte("y"), pebble.Sync); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	err = s.Scrub(ctx, db, secretRange)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	residue.AssertNone(t, dir, residue.Bytes("secret", secret))

	// The database goes on: more WAL rotations (which would reuse the
	// removed files), a close and a reopen with everything else intact.
	for i := range 5 {
		if err := db.Set(fmt.Appendf(nil, "after-%d", i), []byte("z"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	opts = options()
	New(dir, opts)
	db, err = pebble.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, k := range []string{"filler-063", "later-4", "during-000000", "after-4"} {
		if _, closer, err := db.Get([]byte(k)); err != nil {
			t.Errorf("get %s after scrub and reopen: %v", k, err)
		} else {
			closer.Close()
		}
	}
	if _, _, err := db.Get([]byte("s/secret")); err != pebble.ErrNotFound {
		t.Errorf("the deleted key: %v, want not found", err)
	}
	residue.AssertNone(t, dir, residue.Bytes("secret", secret))
}

func TestScrubRefusesForeignOptions(t *testing.T) {
	dir := t.TempDir()
	s := New(dir, options())
	db, err := pebble.Open(dir, options()) // not the options New set up
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := s.Scrub(context.Background(), db, nil); err == nil {
		t.Fatal("Scrub of a database opened without its options succeeded")
	}
}
