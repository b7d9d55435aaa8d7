package pebblestore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
)

// checkedStore writes a store of 5 streams (one of 12 events, past the
// scan length 4, so that it has dedup entries), closes it and returns its
// directory.
func checkedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s := open(t, dir, pebblestore.WithScanIDs(pebblestore.Options{}, 4))
	ctx := context.Background()
	for i := range 4 {
		for range 2 {
			if _, err := s.Append(ctx, fmt.Sprintf("call-%d", i), eventstore.Any(), ev("x"), ev("y")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 6 {
		if _, err := s.Append(ctx, "long", eventstore.Any(), ev("a"), ev("b")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// indexKey is the stream index key of stream's event at rev.
func indexKey(stream string, rev uint64) []byte {
	k := append([]byte{'s'}, stream...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, rev)
}

// flushed runs f on the database in dir and flushes it, so that the
// change is in a table.
func flushed(t *testing.T, dir string, f func(db *pebble.DB)) {
	t.Helper()
	withPebble(t, dir, func(db *pebble.DB) {
		f(db)
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	})
}

func runCheck(t *testing.T, dir string) *pebblestore.Report {
	t.Helper()
	r, err := pebblestore.Check(context.Background(), dir, pebblestore.CheckOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	return r
}

func TestCheckHealthy(t *testing.T) {
	t.Parallel()
	dir := checkedStore(t)
	flushed(t, dir, func(*pebble.DB) {}) // the log's events in a table, not only the WAL
	r := runCheck(t, dir)
	if !r.OK() {
		t.Fatalf("a healthy store has problems: %v", r.Problems)
	}
	if r.Head != 28 || r.Events != 28 || r.Streams != 5 || r.Applied != 28 || r.Tables < 2 {
		t.Errorf("report %+v; want 28 events in 5 streams, indexed, in at least 2 tables", r)
	}
	// Check changes nothing: the store opens and holds the same.
	s := openClosed(t, dir, pebblestore.Options{})
	if n := len(readAll(t, s)); n != 28 {
		t.Errorf("after the check the store holds %d events, want 28", n)
	}
}

func TestCheckFindsDamage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		kinds  map[string]int
		detail string
	}{
		{
			name: "flipped table bytes",
			damage: func(t *testing.T, dir string) {
				flushed(t, dir, func(*pebble.DB) {})
				flipTableBytes(t, dir)
			},
			kinds:  map[string]int{pebblestore.ProblemChecksum: 1, pebblestore.ProblemRead: 1},
			detail: "log table 000005.sst: pebble: file 000000: block 0/",
		},
		{
			name: "stream index entry removed",
			damage: func(t *testing.T, dir string) {
				flushed(t, filepath.Join(dir, pebblestore.IndexDir), func(db *pebble.DB) {
					if err := db.Delete(indexKey("call-2", 1), nil); err != nil {
						t.Fatal(err)
					}
				})
			},
			kinds:  map[string]int{pebblestore.ProblemUnindexed: 1, pebblestore.ProblemRevisions: 1},
			detail: `"call-2" revision 1) has no stream index entry`,
		},
		{
			name: "dedup entry removed",
			damage: func(t *testing.T, dir string) {
				flushed(t, filepath.Join(dir, pebblestore.IndexDir), func(db *pebble.DB) {
					deleteFirst(t, db, "ilong\x00")
				})
			},
			kinds:  map[string]int{pebblestore.ProblemUnindexed: 1},
			detail: "has no dedup entry",
		},
		{
			name: "index entry of an event the log lacks",
			damage: func(t *testing.T, dir string) {
				flushed(t, filepath.Join(dir, pebblestore.IndexDir), func(db *pebble.DB) {
					id := uuid.New()
					v := binary.BigEndian.AppendUint64(nil, 3)
					if err := db.Set(indexKey("ghost", 0), append(v, id[:]...), nil); err != nil {
						t.Fatal(err)
					}
				})
			},
			kinds:  map[string]int{pebblestore.ProblemOrphan: 1},
			detail: `"ghost" revision 0 names`,
		},
		{
			name: "event removed from the log",
			damage: func(t *testing.T, dir string) {
				flushed(t, dir, func(db *pebble.DB) {
					if err := db.Delete(eventKey(5), nil); err != nil {
						t.Fatal(err)
					}
				})
			},
			kinds:  map[string]int{pebblestore.ProblemGap: 1, pebblestore.ProblemOrphan: 1},
			detail: "positions 5 to 5 are missing",
		},
		{
			name: "garbage record",
			damage: func(t *testing.T, dir string) {
				flushed(t, dir, func(db *pebble.DB) {
					if err := db.Set(eventKey(7), []byte("not a record"), nil); err != nil {
						t.Fatal(err)
					}
				})
			},
			kinds:  map[string]int{pebblestore.ProblemRecord: 1},
			detail: "event at position 7",
		},
		{
			name: "event ID twice in a stream",
			damage: func(t *testing.T, dir string) {
				// Append to call-0 a copy of its first event, indexed.
				var first []byte
				flushed(t, dir, func(db *pebble.DB) {
					v, closer, err := db.Get(eventKey(1))
					if err != nil {
						t.Fatal(err)
					}
					first = append([]byte(nil), v...)
					closer.Close()
					// Record: version, 16-byte ID, uvarint revision 0: make it 4.
					first[17] = 4
					if err := db.Set(eventKey(29), first, nil); err != nil {
						t.Fatal(err)
					}
				})
				flushed(t, filepath.Join(dir, pebblestore.IndexDir), func(db *pebble.DB) {
					v := binary.BigEndian.AppendUint64(nil, 29)
					if err := db.Set(indexKey("call-0", 4), append(v, first[1:17]...), nil); err != nil {
						t.Fatal(err)
					}
					// Revision 4 is past the scan length: a dedup entry too.
					k := append([]byte("icall-0\x00"), first[1:17]...)
					v = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 4), 29)
					if err := db.Set(k, v, nil); err != nil {
						t.Fatal(err)
					}
					if err := db.Set([]byte("mapplied"), binary.BigEndian.AppendUint64(nil, 29), nil); err != nil {
						t.Fatal(err)
					}
				})
			},
			kinds:  map[string]int{pebblestore.ProblemDuplicate: 1},
			detail: `is in "call-0" twice`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := checkedStore(t)
			tc.damage(t, dir)
			r := runCheck(t, dir)
			if fmt.Sprint(r.Counts) != fmt.Sprint(tc.kinds) {
				t.Errorf("problems %v, want %v: %v", r.Counts, tc.kinds, r.Problems)
			}
			if !strings.Contains(fmt.Sprint(r.Problems), tc.detail) {
				t.Errorf("problems %v do not say %q", r.Problems, tc.detail)
			}
		})
	}
}

// flipTableBytes damages the first data block of the log's largest table.
func flipTableBytes(t *testing.T, dir string) {
	t.Helper()
	tables, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("no table in %s: %v", dir, err)
	}
	var largest string
	var size int64
	for _, p := range tables {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			largest, size = p, fi.Size()
		}
	}
	b, err := os.ReadFile(largest)
	if err != nil {
		t.Fatal(err)
	}
	for i := 64; i < 72; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(largest, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// deleteFirst deletes the first key of db with the prefix.
func deleteFirst(t *testing.T, db *pebble.DB, prefix string) {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: append([]byte(prefix), 0xff)})
	if err != nil {
		t.Fatal(err)
	}
	if !it.First() {
		it.Close()
		t.Fatalf("no key with prefix %q", prefix)
	}
	k := append([]byte(nil), it.Key()...)
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(k, nil); err != nil {
		t.Fatal(err)
	}
}

func TestCheckRefusesAnOpenStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openClosed(t, dir, pebblestore.Options{})
	if _, err := pebblestore.Check(context.Background(), dir, pebblestore.CheckOptions{}); !errors.Is(err, pebblestore.ErrLocked) {
		t.Fatalf("check of an open store: %v, want ErrLocked", err)
	}
	if _, err := pebblestore.Check(context.Background(), t.TempDir(), pebblestore.CheckOptions{}); err == nil {
		t.Fatal("check of an empty directory succeeded")
	}
}
