//go:build unix

package privatefs_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/privatefs"
	"github.com/callledger/callledger/projections/callstore"
)

// withUmask runs f under umask mask; the umask is the process's, so the
// tests of this file do not run in parallel.
func withUmask(t *testing.T, mask int, f func()) {
	t.Helper()
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

// checkPrivate fails for every directory under root that is not 0700 and
// every file that grants group or others anything.
func checkPrivate(t *testing.T, root string) (dirs, files int) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		switch {
		case d.IsDir():
			dirs++
			if perm != privatefs.DirMode {
				t.Errorf("directory %s has mode %04o, want 0700", path, perm)
			}
		default:
			files++
			if perm&0o077 != 0 {
				t.Errorf("file %s has mode %04o, want 0600", path, perm)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs, files
}

// TestStoresArePrivateWhateverTheUmask: the event store and the read model
// create 0700 directories and 0600 files under a umask of 0, which would
// leave Pebble's own defaults (0755, 0666) open to everyone.
func TestStoresArePrivateWhateverTheUmask(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	withUmask(t, 0, func() {
		if err := privatefs.MkdirAll(root); err != nil {
			t.Fatal(err)
		}
		st, err := pebblestore.Open(filepath.Join(root, "ledger"), pebblestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ev := eventstore.EventData{ID: uuid.New(), Type: "CallStatusReported", Data: []byte("x")}
		if _, err := st.Append(context.Background(), "call-1", eventstore.Any(), ev); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		cs, err := callstore.Open(filepath.Join(root, "projections", "callstate", "v1-1"), callstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.Close(); err != nil {
			t.Fatal(err)
		}
		if err := privatefs.WriteFile(filepath.Join(root, "token"), []byte("t")); err != nil {
			t.Fatal(err)
		}
	})
	dirs, files := checkPrivate(t, root)
	if dirs < 4 || files < 10 {
		t.Errorf("checked %d directories and %d files: the stores wrote less than expected", dirs, files)
	}
}

// TestTighten: a data directory written under a lax umask (by an older
// version) is made private, symbolic links left alone.
func TestTighten(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	outside := filepath.Join(t.TempDir(), "outside")
	withUmask(t, 0o022, func() {
		for _, d := range []string{root, filepath.Join(root, "ledger", "index")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{filepath.Join(root, "dev-auth-token"), filepath.Join(root, "ledger", "000001.log"), outside} {
			if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := privatefs.Tighten(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, root)
	if info, err := os.Stat(outside); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("the target of a link was changed: %v %v", info.Mode(), err)
	}

	// MkdirAll on an existing lax directory tightens it too.
	lax := filepath.Join(t.TempDir(), "lax")
	if err := os.Mkdir(lax, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(lax, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := privatefs.MkdirAll(lax); err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, lax)
}
