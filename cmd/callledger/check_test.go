package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/callledger/callledger/eventstore/pebblestore"
)

// TestCheckCommand loads a ledger, checks it, then checks damaged copies
// of it: each report names the damage, and the command fails.
func TestCheckCommand(t *testing.T) {
	t.Parallel()
	orig := t.TempDir()
	if out, err := cli(t, "load", "--data-dir", orig, "--events", "3000", "--seed", "7"); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	out, err := cli(t, "check", "--data-dir", orig)
	m := regexp.MustCompile(`: (\d+) events \(head (\d+)\) in \d+ streams`).FindStringSubmatch(out)
	if err != nil || m == nil || m[1] != m[2] || len(m[1]) < 4 || !strings.Contains(out, "no problems") {
		t.Fatalf("check of a healthy ledger of 3000 events or more: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, ledger string)
		want   []string
	}{
		{
			name: "flipped bytes in a table",
			damage: func(t *testing.T, ledger string) {
				// load leaves the log's events in its WAL: flush them to a
				// table first.
				withDB(t, ledger, func(*pebble.DB) {})
				flipBytes(t, ledger)
			},
			want: []string{"checksum: 1\n", "log table ", "checksum mismatch"},
		},
		{
			name: "index entry removed",
			damage: func(t *testing.T, ledger string) {
				withDB(t, filepath.Join(ledger, "index"), func(db *pebble.DB) {
					it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("s"), UpperBound: []byte("t")})
					if err != nil {
						t.Fatal(err)
					}
					if !it.SeekGE([]byte("scall-")) {
						t.Fatal("no stream index entry")
					}
					key := append([]byte(nil), it.Key()...)
					if err := it.Close(); err != nil {
						t.Fatal(err)
					}
					if err := db.Delete(key, nil); err != nil {
						t.Fatal(err)
					}
				})
			},
			want: []string{"unindexed: 1\n", "has no stream index entry", "revisions: 1\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "copy")
			if err := os.CopyFS(dir, os.DirFS(orig)); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, filepath.Join(dir, "ledger"))
			out, err := cli(t, "check", "--data-dir", dir)
			if err == nil || !strings.Contains(err.Error(), "problems") {
				t.Errorf("check of a damaged ledger: %v, want an error counting its problems", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q:\n%s", w, out)
				}
			}
		})
	}

	t.Run("held by a server", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "copy")
		if err := os.CopyFS(dir, os.DirFS(orig)); err != nil {
			t.Fatal(err)
		}
		held, err := pebblestore.Open(filepath.Join(dir, "ledger"), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		if _, err := cli(t, "check", "--data-dir", dir); !errors.Is(err, pebblestore.ErrLocked) {
			t.Errorf("check of a held ledger: %v, want ErrLocked", err)
		}
	})
}

// withDB runs f on the Pebble database in dir, then flushes and closes it.
func withDB(t *testing.T, dir string, f func(*pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	f(db)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)           {}
func (quietPebble) Errorf(string, ...any)          {}
func (quietPebble) Fatalf(format string, _ ...any) { panic(format) }

// flipBytes damages a data block of the largest table in dir.
func flipBytes(t *testing.T, dir string) {
	t.Helper()
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	var largest string
	var size int64
	for _, p := range tables {
		if fi, err := os.Stat(p); err == nil && fi.Size() > size {
			largest, size = p, fi.Size()
		}
	}
	if largest == "" {
		t.Fatalf("no table in %s", dir)
	}
	b, err := os.ReadFile(largest)
	if err != nil {
		t.Fatal(err)
	}
	for i := size / 3; i < size/3+8; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(largest, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
