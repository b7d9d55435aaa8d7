package keystore

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// opensslKEK is a KEK as `openssl rand -base64 32` prints it.
const opensslKEK = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n"

func TestParseKEK(t *testing.T) {
	k, err := ParseKEK([]byte(opensslKEK))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(opensslKEK))
	if !bytes.Equal(k.key[:], raw) {
		t.Fatal("ParseKEK did not decode the key")
	}
	unpadded, err := ParseKEK([]byte("  " + strings.TrimRight(strings.TrimSpace(opensslKEK), "=") + "\r\n"))
	if err != nil || unpadded.ID() != k.ID() {
		t.Fatalf("unpadded: %v, id %s want %s", err, unpadded.ID(), k.ID())
	}
	if len(k.ID()) != 16 {
		t.Errorf("ID %q: want 16 hex digits", k.ID())
	}
	for name, in := range map[string]string{
		"empty":      "",
		"short":      base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"long":       base64.StdEncoding.EncodeToString(make([]byte, 33)),
		"not base64": "this is not a key at all, not even close!!!",
		"hex":        strings.Repeat("ab", 32),
	} {
		_, err := ParseKEK([]byte(in))
		if !errors.Is(err, ErrInvalidKEK) {
			t.Errorf("%s: %v, want ErrInvalidKEK", name, err)
		}
		if in != "" && err != nil && strings.Contains(err.Error(), in) {
			t.Errorf("%s: the error quotes the file: %v", name, err)
		}
	}
}

func FuzzParseKEK(f *testing.F) {
	f.Add([]byte(opensslKEK))
	f.Add([]byte(""))
	f.Add([]byte("===="))
	f.Add([]byte(base64.RawStdEncoding.EncodeToString(make([]byte, 32))))
	f.Add([]byte(strings.Repeat("A", 44)))
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParseKEK(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidKEK) {
				t.Fatalf("error %v is not ErrInvalidKEK", err)
			}
			if len(bytes.TrimSpace(in)) > 8 && strings.Contains(err.Error(), string(bytes.TrimSpace(in))) {
				t.Fatalf("error quotes the input: %v", err)
			}
			return
		}
		// A key parses back from its canonical encoding to the same key.
		again, err := ParseKEK([]byte(base64.StdEncoding.EncodeToString(k.key[:])))
		if err != nil || again != k {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestLoadKEKPermissions(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602} {
		p := filepath.Join(dir, "kek-"+mode.String())
		writeFile(t, p, opensslKEK, mode)
		if _, err := LoadKEK(p); !errors.Is(err, ErrInsecureFile) {
			t.Errorf("mode %04o: %v, want ErrInsecureFile", mode, err)
		} else if strings.Contains(err.Error(), strings.TrimSpace(opensslKEK)) {
			t.Errorf("the error quotes the key: %v", err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := filepath.Join(dir, "ok-"+mode.String())
		writeFile(t, p, opensslKEK, mode)
		if _, err := LoadKEK(p); err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	// A Kubernetes secret volume: a symbolic link to a 0400 file.
	target := filepath.Join(dir, "..data-kek")
	writeFile(t, target, opensslKEK, 0o400)
	link := filepath.Join(dir, "kek-link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKEK(link); err != nil {
		t.Errorf("symbolic link to a private file: %v", err)
	}
	big := filepath.Join(dir, "big")
	writeFile(t, big, strings.Repeat(" ", 2000)+opensslKEK, 0o600)
	if _, err := LoadKEK(big); !errors.Is(err, ErrInvalidKEK) {
		t.Errorf("2 KB file: %v, want ErrInvalidKEK", err)
	}
	if _, err := LoadKEK(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want not exist", err)
	}
}

func TestDevelopmentKEK(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dev-kek")
	k, created, err := DevelopmentKEK(p)
	if err != nil || !created {
		t.Fatalf("first call: created %t, %v", created, err)
	}
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", info.Mode().Perm())
	}
	again, created, err := DevelopmentKEK(p)
	if err != nil || created || again != k {
		t.Fatalf("second call: created %t, same key %t, %v", created, again == k, err)
	}
	// The file is what openssl would have written: LoadKEK reads it.
	if loaded, err := LoadKEK(p); err != nil || loaded != k {
		t.Fatalf("LoadKEK of the development key: %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := DevelopmentKEK(p); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("a development key others can read: %v, want ErrInsecureFile", err)
	}
}
