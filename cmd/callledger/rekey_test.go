package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRekeyCommand rotates the key-encryption key of a sealed ledger's key
// store twice — from the development key a development server left, then
// from a --kek-file — and the personal data the ledger folds to is the same
// under each new key, refused under the old; a second run only scrubs, and
// a rotation without a new key, to an unprotected one, or from a key the
// store does not have is refused.
func TestRekeyCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := cli(t, "load", "--data-dir", dir, "--events", "1000", "--seed", "5"); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	dev := testKEKFile(t)
	raw, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dev-kek"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, "seal", "--data-dir", dir); err != nil {
		t.Fatalf("seal with the development key: %v\n%s", err, out)
	}
	export := func(kek ...string) (string, error) {
		out := filepath.Join(t.TempDir(), "calls.csv")
		args := append([]string{"export", "--data-dir", dir, "--format", "csv", "--out", out, "--from-ledger"}, kek...)
		if o, err := cli(t, args...); err != nil {
			return o, err
		}
		b, err := os.ReadFile(out)
		return string(b), err
	}
	before, err := export()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(before, "+1") {
		t.Fatalf("the export holds no phone number:\n%.500s", before)
	}

	if out, err := cli(t, "rekey", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "--new-kek-file") {
		t.Fatalf("rekey without a new key: %v\n%s", err, out)
	}
	open := testKEKFile(t)
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, "rekey", "--data-dir", dir, "--new-kek-file", open); err == nil || !strings.Contains(err.Error(), "readable by its owner only") {
		t.Fatalf("rekey to a world-readable key: %v\n%s", err, out)
	}

	second := testKEKFile(t)
	out, err := cli(t, "rekey", "--data-dir", dir, "--new-kek-file", second)
	if err != nil {
		t.Fatalf("rekey from the development key: %v\n%s", err, out)
	}
	if n := count(t, out, "data keys rewrapped"); n < 100 || count(t, out, "already rewrapped") != 0 {
		t.Fatalf("rekey rewrapped %d keys:\n%s", n, out)
	}
	if got, err := export("--kek-file", second); err != nil || got != before {
		t.Fatalf("export under the new key: %v; same as before: %t", err, got == before)
	}
	if o, err := export(); err == nil || !strings.Contains(err.Error(), "another key-encryption key") {
		t.Fatalf("export under the old development key: %v\n%s", err, o)
	}
	out, err = cli(t, "rekey", "--data-dir", dir, "--new-kek-file", second)
	if err != nil || !strings.Contains(out, "rotated to the new key-encryption key already") {
		t.Fatalf("rekey again: %v\n%s", err, out)
	}

	third := testKEKFile(t)
	if out, err := cli(t, "rekey", "--data-dir", dir, "--kek-file", testKEKFile(t), "--new-kek-file", third); err == nil {
		t.Fatalf("rekey from a key the store does not have succeeded:\n%s", out)
	}
	if out, err := cli(t, "rekey", "--data-dir", dir, "--kek-file", second, "--new-kek-file", third); err != nil {
		t.Fatalf("rekey from --kek-file: %v\n%s", err, out)
	}
	if got, err := export("--kek-file", third); err != nil || !bytes.Equal([]byte(got), []byte(before)) {
		t.Fatalf("export after the second rotation: %v; same as before: %t", err, got == before)
	}
	if out, err := cli(t, "rekey", "--data-dir", t.TempDir(), "--kek-file", third, "--new-kek-file", testKEKFile(t)); err == nil || !strings.Contains(err.Error(), "no key store") {
		t.Fatalf("rekey of a data directory without a key store: %v\n%s", err, out)
	}
}
