// Package keystoretest opens real embedded key stores for tests: every
// test that seals or opens personal data needs one, made the same way (a
// random key-encryption key, a temporary directory, closed at the end).
// Only _test.go files import it.
package keystoretest

import (
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/callledger/callledger/keystore"
)

// KEK returns a random key-encryption key, parsed as --kek-file's content
// is.
func KEK(t testing.TB) keystore.KEK {
	t.Helper()
	raw := make([]byte, keystore.KEKSize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	kek, err := keystore.ParseKEK([]byte(base64.StdEncoding.EncodeToString(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// Open opens an embedded key store in a temporary directory under a random
// KEK, closed when the test ends.
func Open(t testing.TB) *keystore.Embedded {
	t.Helper()
	keys, err := keystore.Open(t.TempDir(), KEK(t), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	return keys
}
