package secretfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/callledger/callledger/internal/secretfile"
)

// TestRead: the owner's file is read whole; one others may read or write
// is refused with the fix, without its content; one over the limit is
// refused.
func TestRead(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no Unix mode bits")
	}
	dir := t.TempDir()
	write := func(name string, perm os.FileMode, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, perm); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, perm := range []os.FileMode{0o600, 0o400, 0o700} {
		got, err := secretfile.Read("test secret", write("ok"+perm.String(), perm, "s3cret"), 100)
		if err != nil || string(got) != "s3cret" {
			t.Errorf("mode %04o: %q, %v", perm, got, err)
		}
	}
	for _, perm := range []os.FileMode{0o640, 0o644, 0o604, 0o620, 0o602} {
		path := write("lax"+perm.String(), perm, "s3cret")
		_, err := secretfile.Read("test secret", path, 100)
		if !errors.Is(err, secretfile.ErrInsecure) {
			t.Errorf("mode %04o: %v, want ErrInsecure", perm, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "chmod 600 "+path) || !strings.Contains(msg, "test secret") || strings.Contains(msg, "s3cret") {
			t.Errorf("mode %04o: error %q: want what, the path and the fix, without the content", perm, msg)
		}
	}
	if _, err := secretfile.Read("test secret", write("big", 0o600, strings.Repeat("x", 101)), 100); !errors.Is(err, secretfile.ErrTooLarge) {
		t.Errorf("101 bytes over a limit of 100: %v, want ErrTooLarge", err)
	}
	if _, err := secretfile.Read("test secret", filepath.Join(dir, "missing"), 100); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestToken: a token file is read without its surrounding white space; an
// empty one, or one others may read, is refused.
func TestToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if tok, err := secretfile.Token("token file", write("ok", " s3cret-token\n", 0o600)); err != nil || tok != "s3cret-token" {
		t.Errorf("Token = %q, %v", tok, err)
	}
	if _, err := secretfile.Token("token file", write("empty", " \n", 0o600)); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("an empty token file: %v", err)
	}
	if _, err := secretfile.Token("token file", write("open", "s3cret-token", 0o644)); !errors.Is(err, secretfile.ErrInsecure) {
		t.Errorf("a token file others may read: %v, want ErrInsecure", err)
	}
}
