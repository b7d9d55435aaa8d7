// Package keystore keeps the data keys that seal personal data, one or more
// per subject (a call leg's CallSid), apart from the log they protect:
// destroying a subject's keys erases its personal data wherever the log is
// kept (crypto-shredding, docs/PRIVACY.md). It also indexes the parties a
// subject's data names (phone numbers, client names) by a keyed MAC, so that
// "erase everything about +1 555…" finds the calls without the index holding
// a number.
//
// Store is the port; Open gives the embedded implementation, a Pebble
// database of its own whose every write is synced and whose destroyed keys
// are physically removed from its files.
package keystore

import (
	"bytes"
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Store is where data keys live.
type Store interface {
	// Key returns the data key that seals subject's data, creating it on
	// first use, and indexes the parties that data names. Both are durable
	// once Sync has returned after Key: nothing sealed under the key may be
	// made durable before, or a crash could leave data whose key was lost.
	// ErrDestroyed when subject was erased: its late data must then be
	// stored without personal fields.
	Key(ctx context.Context, subject string, parties ...string) (DataKey, error)
	// Sync makes every key and index entry that Key has returned durable.
	// Deferring it lets the writes of many calls' first events share one
	// sync, which the event store runs just before its own (its commit
	// barrier): a key store sync per webhook halved ingest.
	Sync(ctx context.Context) error
	// Get returns one key of subject, to open data sealed under it:
	// ErrDestroyed when subject was erased, ErrNotFound when the store never
	// had the key (a lost or wrong key store: never to be taken for an
	// erasure).
	Get(ctx context.Context, subject string, id uint64) (DataKey, error)
	// Subjects lists the subjects whose data names party, in no set order.
	Subjects(ctx context.Context, party string) ([]string, error)
	// Destroy destroys every key of the subjects and their index entries,
	// and remembers that they were destroyed. When it returns, no file of the
	// store holds the keys any more.
	Destroy(ctx context.Context, subjects ...string) (DestroyResult, error)
	Close() error
}

// KeyRef names one key of a subject, as sealed data records it.
type KeyRef struct {
	Subject string
	ID      uint64
}

// DataKey is one AES-256 data key, ready to seal and open.
type DataKey struct {
	subject string
	id      uint64
	aead    cipher.AEAD
	secret  []byte
}

// NewDataKey is a data key received from elsewhere (the key service of
// another node): secret is its 32 bytes.
func NewDataKey(subject string, id uint64, secret []byte) (DataKey, error) {
	if err := checkSubject(subject); err != nil {
		return DataKey{}, err
	}
	if len(secret) != 32 {
		return DataKey{}, fmt.Errorf("key store: a data key of %d bytes, want 32", len(secret))
	}
	aead, err := newAEAD(secret)
	if err != nil {
		return DataKey{}, err
	}
	return DataKey{subject: subject, id: id, aead: aead, secret: bytes.Clone(secret)}, nil
}

// Secret returns a copy of the key's 32 bytes, which the key service hands
// to the nodes that seal with it; whoever holds them opens the subject's
// data. Nil for a zero DataKey.
func (k DataKey) Secret() []byte { return bytes.Clone(k.secret) }

// String names the key without its secret, so that no log line or error
// that formats a DataKey (%v, %+v, slog) prints the key itself.
func (k DataKey) String() string { return fmt.Sprintf("data key %016x of %s", k.id, k.subject) }

// GoString is String, for %#v.
func (k DataKey) GoString() string { return k.String() }

// LogValue is String, for slog.
func (k DataKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Subject is the subject the key belongs to.
func (k DataKey) Subject() string { return k.subject }

// ID tells the subject's keys apart; sealed data records it.
func (k DataKey) ID() uint64 { return k.id }

// AEAD is AES-256-GCM under the key (12-byte nonces, 16-byte tags), safe
// for concurrent use.
func (k DataKey) AEAD() cipher.AEAD { return k.aead }

// DestroyResult says what Destroy found.
type DestroyResult struct {
	// Destroyed is the number of subjects whose keys were destroyed now.
	Destroyed int
	// AlreadyDestroyed were destroyed before; Unknown never had a key (they
	// are marked destroyed all the same, so none is made for them later).
	AlreadyDestroyed, Unknown int
}

// Errors callers branch on.
var (
	// ErrDestroyed: the subject's keys were destroyed (erased).
	ErrDestroyed = errors.New("keystore: subject erased")
	// ErrNotFound: no such key, and the subject was not erased.
	ErrNotFound = errors.New("keystore: no such key")
	// ErrUnavailable: the key store could not answer now (a key service
	// out of reach); the same request may succeed later. Readers retry
	// rather than take the data for unopenable.
	ErrUnavailable = errors.New("keystore: unavailable")
	// ErrWrongKEK: the key-encryption key is not the one the store was
	// created with.
	ErrWrongKEK = errors.New("keystore: wrong key-encryption key")
	// ErrRotating: a rotation of the key-encryption key (Rekey) was
	// interrupted; the store opens again once it has been run to its end.
	ErrRotating = errors.New("keystore: a rotation of the key-encryption key was interrupted")
	// ErrInvalidKEK: a key-encryption key file that does not hold one.
	ErrInvalidKEK = errors.New("keystore: invalid key-encryption key")
	// ErrInsecureFile: a key-encryption key file others may read or write.
	ErrInsecureFile = errors.New("keystore: key file readable or writable by others")
	// ErrInvalidSubject: an empty, overlong or malformed subject.
	ErrInvalidSubject = errors.New("keystore: invalid subject")
)

// maxSubject bounds a subject's length: a CallSid has 34 bytes.
const maxSubject = 256

// checkSubject accepts non-empty UTF-8 without NUL (the store's key
// separator), at most maxSubject bytes.
func checkSubject(s string) error {
	if s == "" || len(s) > maxSubject || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: %d bytes", ErrInvalidSubject, len(s))
	}
	return nil
}

// NormalizeParty is how the index spells a party: trimmed, and a phone
// number as E.164 — a form decoder turns an unencoded "+" into a space, so
// " 15555550100" is "+15555550100", and so are "+1 555-555-0100" and
// "+1 (555) 555 0100" as people type them. Anything else (client:alice,
// sip:…, anonymous) is kept as given. Empty when there is no party.
func NormalizeParty(p string) string {
	p = strings.TrimSpace(p)
	if p == "" {
		return ""
	}
	digits := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == ' ' || c == '-' || c == '(' || c == ')' || c == '.' || (c == '+' && i == 0):
		default:
			return p
		}
	}
	if len(digits) < 3 {
		return p
	}
	return "+" + string(digits)
}
