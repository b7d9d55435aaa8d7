package pebblestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/residue"
)

// rewriteLedger writes n events of about 1 KiB over three streams, with a
// metadata on each, into a store in a new directory, and returns the
// directory and what it holds. The log's memtables are small, so most
// events are in its tables before a rewrite, as in a real ledger.
func rewriteLedger(t *testing.T, n int) (string, []eventstore.RecordedEvent) {
	t.Helper()
	dir := t.TempDir()
	s := open(t, dir, pebblestore.Options{Pebble: func(_ string, o *pebble.Options) { o.MemTableSize = 64 << 10 }})
	pad := strings.Repeat(".", 1000)
	for i := range n {
		e := ev(fmt.Sprintf("secret-%05d%s", i, pad))
		e.Metadata = []byte(fmt.Sprintf("meta-%d", i))
		if _, err := s.Append(context.Background(), fmt.Sprintf("call-%d", i%3), eventstore.Any(), e); err != nil {
			t.Fatal(err)
		}
	}
	before := readAll(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, before
}

// TestRewrite replaces the data of every other event offline and finds
// everything else of every event unchanged, the index still answering
// (dedup, stream reads, appends after the head), and the replaced data in
// no file of the store.
func TestRewrite(t *testing.T) {
	const n = 300
	dir, before := rewriteLedger(t, n)
	var commits int
	rep, err := pebblestore.Rewrite(context.Background(), dir, pebblestore.RewriteOptions{
		BatchEvents:  64,
		BeforeCommit: func() error { commits++; return nil },
		Logger:       testLogger(t),
	}, func(e *eventstore.RecordedEvent) ([]byte, error) {
		if e.Position%2 == 1 {
			return nil, nil
		}
		return bytes.ReplaceAll(e.Data, []byte("secret"), []byte("sealed")), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Read != n || rep.Rewritten != n/2 || !rep.Scrubbed {
		t.Fatalf("report %+v, want %d read, %d rewritten, scrubbed", rep, n, n/2)
	}
	if want := (n/2 + 63) / 64; commits != want {
		t.Errorf("%d commits, want %d (batches of 64)", commits, want)
	}

	// The replaced data is gone from every file (tables and WAL alike)
	// as soon as Rewrite returns;
	// what was kept is still found, so the search can find it.
	// Event i is at position i+1: even positions were rewritten.
	hits, err := residue.Find(dir, residue.Bytes("replaced", []byte("secret-00001")), residue.Bytes("kept", []byte("secret-00002")))
	if err != nil {
		t.Fatal(err)
	}
	var kept bool
	for _, h := range hits {
		if h.Needle == "replaced" {
			t.Errorf("replaced data still on disk: %v", h)
		}
		kept = kept || h.Needle == "kept"
	}
	if !kept {
		t.Error("the data left as it was is not found: the search proves nothing")
	}

	// What the rewrite created (WAL, tables, manifest) is as private as
	// the store's own files.
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no access for group and others", path, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	s := openClosed(t, dir, pebblestore.Options{})
	after := readAll(t, s)
	if len(after) != len(before) {
		t.Fatalf("%d events after, %d before", len(after), len(before))
	}
	for i, a := range after {
		b := before[i]
		want := b.Data
		if b.Position%2 == 0 {
			want = bytes.ReplaceAll(b.Data, []byte("secret"), []byte("sealed"))
		}
		if a.ID != b.ID || a.Stream != b.Stream || a.Revision != b.Revision || a.Position != b.Position ||
			a.Type != b.Type || !a.Created.Equal(b.Created) || !bytes.Equal(a.Metadata, b.Metadata) || !bytes.Equal(a.Data, want) {
			t.Fatalf("event %d: %+v, want %+v with data %q", i, a, b, want)
		}
	}
	// The index is untouched: a stream reads in revision order, a
	// redelivered event is a duplicate, and appends go on after the head.
	stream, err := s.ReadStream(context.Background(), "call-1", 0, 1000)
	if err != nil || len(stream) != n/3 {
		t.Fatalf("stream call-1: %d events, %v", len(stream), err)
	}
	dup := eventstore.EventData{ID: before[10].ID, Type: "Test", Data: []byte("again")}
	res, err := s.Append(context.Background(), before[10].Stream, eventstore.Any(), dup)
	if err != nil || len(res.Duplicates) != 1 {
		t.Fatalf("redelivery: %+v, %v; want a duplicate", res, err)
	}
	res, err = s.Append(context.Background(), "call-0", eventstore.Any(), ev("next"))
	if err != nil || res.Position != n+1 {
		t.Fatalf("append after the rewrite: %+v, %v; want position %d", res, err, n+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRewriteInterrupted stops a rewrite at a failing BeforeCommit (the
// batch is not written) and at a failing fn, then runs it again to the
// end: every event is rewritten exactly once, as fn sees it.
func TestRewriteInterrupted(t *testing.T) {
	const n = 200
	dir, before := rewriteLedger(t, n)
	seal := func(e *eventstore.RecordedEvent) ([]byte, error) {
		if bytes.HasPrefix(e.Data, []byte("sealed")) {
			return nil, nil // rewritten by an earlier run
		}
		return bytes.ReplaceAll(e.Data, []byte("secret"), []byte("sealed")), nil
	}
	errBarrier := errors.New("key store unavailable")
	_, err := pebblestore.Rewrite(context.Background(), dir, pebblestore.RewriteOptions{
		BatchEvents: 50, BeforeCommit: func() error { return errBarrier },
	}, seal)
	if !errors.Is(err, errBarrier) {
		t.Fatalf("rewrite with a failing barrier: %v", err)
	}
	errFn := errors.New("cannot seal")
	_, err = pebblestore.Rewrite(context.Background(), dir, pebblestore.RewriteOptions{BatchEvents: 50},
		func(e *eventstore.RecordedEvent) ([]byte, error) {
			if e.Position == 120 {
				return nil, errFn
			}
			return seal(e)
		})
	if !errors.Is(err, errFn) {
		t.Fatalf("rewrite with a failing fn: %v", err)
	}
	rep, err := pebblestore.Rewrite(context.Background(), dir, pebblestore.RewriteOptions{BatchEvents: 50}, seal)
	if err != nil {
		t.Fatal(err)
	}
	// The barrier's run wrote nothing; the failing fn's run wrote its first
	// two batches (positions 1-100) before it stopped.
	if rep.Read != n || rep.Rewritten != n-100 {
		t.Fatalf("last run: %+v, want %d read and %d rewritten", rep, n, n-100)
	}
	s := openClosed(t, dir, pebblestore.Options{})
	for i, a := range readAll(t, s) {
		want := bytes.ReplaceAll(before[i].Data, []byte("secret"), []byte("sealed"))
		if !bytes.Equal(a.Data, want) {
			t.Fatalf("event %d: data %q, want %q", a.Position, a.Data, want)
		}
	}
}

// TestRewriteLocked refuses a store a process holds open.
func TestRewriteLocked(t *testing.T) {
	dir, _ := rewriteLedger(t, 3)
	openClosed(t, dir, pebblestore.Options{})
	_, err := pebblestore.Rewrite(context.Background(), dir, pebblestore.RewriteOptions{},
		func(*eventstore.RecordedEvent) ([]byte, error) { t.Error("fn called on a held store"); return nil, nil })
	if !errors.Is(err, pebblestore.ErrLocked) {
		t.Fatalf("rewrite of a held store: %v, want ErrLocked", err)
	}
}
