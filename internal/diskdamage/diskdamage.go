// Package diskdamage damages a Pebble database's files the way a failing
// disk does, for tests of what callledger does when it meets them: the
// read model heals, the ledger refuses to start. Only _test.go files import
// it.
package diskdamage

import (
	"os"
	"path/filepath"
	"testing"
)

// FlipTables flips the bytes of the first three quarters (the data blocks)
// of every table in dir, in place, so that a Pebble that has them open
// reads the damage. Tables a compaction removes meanwhile are skipped; at
// least one must be damaged.
func FlipTables(t testing.TB, dir string) {
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
