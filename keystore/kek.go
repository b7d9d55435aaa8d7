package keystore

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// KEKSize is the size of a key-encryption key: AES-256.
const KEKSize = 32

// KEK is the key-encryption key that wraps every data key of the embedded
// store. It is never written into the store.
type KEK struct{ key [KEKSize]byte }

// ID identifies the KEK without revealing it: the first 8 bytes of
// HMAC-SHA256(KEK, a fixed label), in hex. A store records the ID of the
// KEK it was created with and refuses another.
func (k KEK) ID() string { return hex.EncodeToString(k.id()) }

func (k KEK) id() []byte {
	m := hmac.New(sha256.New, k.key[:])
	m.Write([]byte("callledger keystore v1 kek id"))
	return m.Sum(nil)[:8]
}

// maxKEKFile bounds what is read of a KEK file: base64 of 32 bytes is 44
// characters.
const maxKEKFile = 1024

// ParseKEK reads a KEK as `openssl rand -base64 32` prints it: 32 bytes in
// standard base64, padded or not, with surrounding white space. Errors
// never quote the content.
func ParseKEK(b []byte) (KEK, error) {
	b = bytes.TrimSpace(b)
	enc := base64.StdEncoding
	if len(b)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	var k KEK
	raw := make([]byte, enc.DecodedLen(len(b)))
	n, err := enc.Strict().Decode(raw, b)
	if err != nil {
		return KEK{}, fmt.Errorf("%w: not base64 (make one with: openssl rand -base64 32)", ErrInvalidKEK)
	}
	if n != KEKSize {
		return KEK{}, fmt.Errorf("%w: %d bytes, want %d (make one with: openssl rand -base64 32)", ErrInvalidKEK, n, KEKSize)
	}
	copy(k.key[:], raw[:n])
	clear(raw)
	return k, nil
}

// LoadKEK reads the KEK file at path (--kek-file). A file that its group or
// others may read or write is refused, as ssh refuses such a private key:
// whoever can read it can read every subject's personal data.
func LoadKEK(path string) (KEK, error) {
	raw, err := readPrivate(path)
	if err != nil {
		return KEK{}, err
	}
	defer clear(raw)
	k, err := ParseKEK(raw)
	if err != nil {
		return KEK{}, fmt.Errorf("key-encryption key file %s: %w", path, err)
	}
	return k, nil
}

// readPrivate reads path after checking on its open descriptor that only
// its owner may read or write it (a symbolic link, as Kubernetes mounts
// secrets, is judged by its target).
func readPrivate(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key-encryption key file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key-encryption key file: %w", err)
	}
	// Windows has no such mode bits: its ACLs are the administrator's.
	if perm := info.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("key-encryption key file %s has mode %04o: it unlocks every subject's personal data, so it must be readable by its owner only "+
			"(chmod 600 %s; in Kubernetes, defaultMode 0400 on the secret volume): %w", path, perm, path, ErrInsecureFile)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxKEKFile+1))
	if err != nil {
		return nil, fmt.Errorf("read key-encryption key file: %w", err)
	}
	if len(raw) > maxKEKFile {
		return nil, fmt.Errorf("key-encryption key file %s: larger than %d bytes: %w", path, maxKEKFile, ErrInvalidKEK)
	}
	return raw, nil
}

// DevelopmentKEK returns the KEK kept in path, creating it (mode 0600) when
// there is none, and whether it did. It is for development mode only, where
// the server keeps it in its data directory and says so loudly: whoever
// copies that directory has the keys with the data.
func DevelopmentKEK(path string) (k KEK, created bool, err error) {
	k, err = LoadKEK(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	if _, err := rand.Read(k.key[:]); err != nil {
		return KEK{}, false, fmt.Errorf("make development key-encryption key: %w", err)
	}
	text := base64.StdEncoding.EncodeToString(k.key[:]) + "\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return KEK{}, false, fmt.Errorf("write development key-encryption key: %w", err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return KEK{}, false, fmt.Errorf("write development key-encryption key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return KEK{}, false, fmt.Errorf("write development key-encryption key: %w", err)
	}
	if err := f.Close(); err != nil {
		return KEK{}, false, fmt.Errorf("write development key-encryption key: %w", err)
	}
	return k, true, nil
}
