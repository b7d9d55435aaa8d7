package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSealCommand seals a ledger that load wrote in the clear: every
// event with personal data is sealed, the ledger still checks, a rebuild
// with the KEK folds it, and a second run has nothing to do; a run with
// another KEK is refused, as is one without a KEK where the server left
// no development key.
func TestSealCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := cli(t, "load", "--data-dir", dir, "--events", "2000", "--seed", "3"); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	if out, err := cli(t, "seal", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "give --kek-file") {
		t.Fatalf("a run without a KEK on a data directory without a development key: %v\n%s", err, out)
	}
	kek := testKEKFile(t)
	out, err := cli(t, "seal", "--data-dir", dir, "--kek-file", kek)
	if err != nil {
		t.Fatalf("seal: %v\n%s", err, out)
	}
	read, sealed := count(t, out, "events read"), count(t, out, "sealed now")
	if read < 2000 || sealed < read/2 || count(t, out, "already sealed") != 0 {
		t.Fatalf("first run: %d read, %d sealed:\n%s", read, sealed, out)
	}
	if out, err := cli(t, "check", "--data-dir", dir); err != nil || !strings.Contains(out, "no problems") {
		t.Fatalf("check after sealing: %v\n%s", err, out)
	}
	if out, err := cli(t, "rebuild", "--data-dir", dir, "--kek-file", kek); err != nil {
		t.Fatalf("rebuild of the sealed ledger: %v\n%s", err, out)
	}
	out, err = cli(t, "seal", "--data-dir", dir, "--kek-file", kek)
	if err != nil || count(t, out, "sealed now") != 0 || count(t, out, "already sealed") != sealed {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if out, err := cli(t, "seal", "--data-dir", dir, "--kek-file", testKEKFile(t)); err == nil || !strings.Contains(err.Error(), "another key-encryption key") {
		t.Fatalf("a run with another KEK: %v\n%s", err, out)
	}

	// Without its key store (a node whose keys are another's), a sealed
	// ledger is not folded into a read model without its numbers.
	if err := os.Rename(filepath.Join(dir, "keys"), filepath.Join(dir, "keys.away")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"rebuild", "--data-dir", dir},
		{"export", "--data-dir", dir, "--format", "csv", "--out", filepath.Join(t.TempDir(), "calls.csv"), "--from-ledger"},
	} {
		if out, err := cli(t, args...); !errors.Is(err, errSealedWithoutKeys) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("%s of a sealed ledger without its key store: %v\n%s", args[0], err, out)
		}
	}
}

// count reads the number of a report line of the seal command.
func count(t *testing.T, out, label string) int {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(label) + `[^:]*:\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in:\n%s", label, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// testKEKFile writes a new key-encryption key, readable by its owner only.
func testKEKFile(t *testing.T) string {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(raw)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
