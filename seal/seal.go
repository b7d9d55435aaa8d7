// Package seal encrypts the personal data of one event with a data key of
// its subject (AES-256-GCM, standard library), and opens it again. The
// ciphertext is bound to the event ID, the subject, the key and the part of
// the event it holds, so it opens for the event it was sealed for and
// nowhere else: a stored event cannot be made to show another's data.
// docs/PRIVACY.md §3 has the format.
package seal

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/keystore"
)

// Part names which personal data of an event a ciphertext holds.
type Part string

const (
	// Facts are the personal normalized fields (From, To, …), which the
	// projection opens for every event.
	Facts Part = "facts"
	// Request is the verbatim request and the CloudEvent's raw bytes, which
	// only readers of raw requests open.
	Request Part = "request"
)

// NonceSize is the size of a nonce: GCM's standard 12 bytes, random per
// seal. A data key seals one call leg's events, far below the 2^32
// messages random nonces allow per key.
const NonceSize = 12

// ErrOpen reports a ciphertext that does not open: corrupt, tampered with,
// or moved from another event, subject or part.
var ErrOpen = errors.New("seal: ciphertext does not open")

// label starts the additional data of every ciphertext, versioning it.
const label = "callledger seal v1"

// AdditionalData appends to dst the additional data a ciphertext is bound
// to: the label, the part, the event ID, the subject (each length-prefixed)
// and the key ID.
func AdditionalData(dst []byte, part Part, eventID, subject string, keyID uint64) []byte {
	dst = append(dst, label...)
	for _, s := range []string{string(part), eventID, subject} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return binary.BigEndian.AppendUint64(dst, keyID)
}

// Seal encrypts pd, the part of the event eventID's personal data, under
// key.
func Seal(key keystore.DataKey, part Part, eventID string, pd *callledgerv1.PersonalData) (*callledgerv1.Sealed, error) {
	aead := key.AEAD()
	size := proto.Size(pd)
	// The nonce, then the plaintext sealed in place: one allocation.
	buf := make([]byte, NonceSize, NonceSize+size+aead.Overhead())
	nonce := buf[:NonceSize:NonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal %s of event %s: %w", part, eventID, err)
	}
	// Size has just cached the sizes of pd's messages.
	plain, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf[NonceSize:], pd)
	if err != nil {
		return nil, fmt.Errorf("seal %s of event %s: %w", part, eventID, err)
	}
	var adBuf [128]byte
	ad := AdditionalData(adBuf[:0], part, eventID, key.Subject(), key.ID())
	return &callledgerv1.Sealed{
		Subject:    key.Subject(),
		KeyId:      key.ID(),
		Nonce:      nonce,
		Ciphertext: aead.Seal(plain[:0], nonce, plain, ad), // in place
	}, nil
}

// Open decrypts s, the part of the event eventID's personal data, into pd
// with key, which must be the key s names.
func Open(key keystore.DataKey, part Part, eventID string, s *callledgerv1.Sealed, pd *callledgerv1.PersonalData) error {
	if key.Subject() != s.GetSubject() || key.ID() != s.GetKeyId() {
		return fmt.Errorf("seal: event %s is sealed under key %016x of %q, not key %016x of %q",
			eventID, s.GetKeyId(), s.GetSubject(), key.ID(), key.Subject())
	}
	if len(s.GetNonce()) != NonceSize {
		return fmt.Errorf("%w: event %s: a nonce of %d bytes", ErrOpen, eventID, len(s.GetNonce()))
	}
	var adBuf [128]byte
	ad := AdditionalData(adBuf[:0], part, eventID, s.GetSubject(), s.GetKeyId())
	plain, err := key.AEAD().Open(nil, s.GetNonce(), s.GetCiphertext(), ad)
	if err != nil {
		return fmt.Errorf("%w: event %s, %s", ErrOpen, eventID, part)
	}
	if err := proto.Unmarshal(plain, pd); err != nil {
		return fmt.Errorf("%w: event %s, %s: %v", ErrOpen, eventID, part, err)
	}
	return nil
}

// OpenInto opens s, like Open, and merges the personal fields straight
// into ev, the stored event they were split from (proto merge semantics):
// the projection's path, which needs no PersonalData of its own.
func OpenInto(key keystore.DataKey, part Part, eventID string, s *callledgerv1.Sealed, ev *callledgerv1.Event) error {
	if key.Subject() != s.GetSubject() || key.ID() != s.GetKeyId() {
		return fmt.Errorf("seal: event %s is sealed under key %016x of %q, not key %016x of %q",
			eventID, s.GetKeyId(), s.GetSubject(), key.ID(), key.Subject())
	}
	if len(s.GetNonce()) != NonceSize {
		return fmt.Errorf("%w: event %s: a nonce of %d bytes", ErrOpen, eventID, len(s.GetNonce()))
	}
	var adBuf [128]byte
	ad := AdditionalData(adBuf[:0], part, eventID, s.GetSubject(), s.GetKeyId())
	bp := plainPool.Get().(*[]byte)
	defer plainPool.Put(bp)
	plain, err := key.AEAD().Open((*bp)[:0], s.GetNonce(), s.GetCiphertext(), ad)
	if err != nil {
		return fmt.Errorf("%w: event %s, %s", ErrOpen, eventID, part)
	}
	*bp = plain
	// PersonalData is one field, the event: its bytes merge into ev. The
	// unmarshalled message copies what it keeps, so the buffer is reused.
	for len(plain) > 0 {
		num, typ, n := protowire.ConsumeTag(plain)
		if n < 0 {
			return fmt.Errorf("%w: event %s, %s: %v", ErrOpen, eventID, part, protowire.ParseError(n))
		}
		plain = plain[n:]
		if num == fieldPersonalEvent && typ == protowire.BytesType {
			b, m := protowire.ConsumeBytes(plain)
			if m < 0 {
				return fmt.Errorf("%w: event %s, %s: %v", ErrOpen, eventID, part, protowire.ParseError(m))
			}
			if err := mergeOptions.Unmarshal(b, ev); err != nil {
				return fmt.Errorf("%w: event %s, %s: %v", ErrOpen, eventID, part, err)
			}
			plain = plain[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, plain)
		if m < 0 {
			return fmt.Errorf("%w: event %s, %s: %v", ErrOpen, eventID, part, protowire.ParseError(m))
		}
		plain = plain[m:]
	}
	return nil
}

// fieldPersonalEvent is PersonalData.event's number.
const fieldPersonalEvent = 1

var mergeOptions = proto.UnmarshalOptions{Merge: true}

var plainPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Keys is where OpenWith finds the key a ciphertext names: a
// keystore.Store.
type Keys interface {
	Get(ctx context.Context, subject string, id uint64) (keystore.DataKey, error)
}

// OpenWith opens s with the key it names, from keys. The subject's erasure
// is keystore.ErrDestroyed (show the event redacted); a key the store
// never had is keystore.ErrNotFound and a ciphertext that does not open
// ErrOpen (both faults, never to be shown as an erasure).
func OpenWith(ctx context.Context, keys Keys, part Part, eventID string, s *callledgerv1.Sealed, pd *callledgerv1.PersonalData) error {
	key, err := keys.Get(ctx, s.GetSubject(), s.GetKeyId())
	if err != nil {
		return fmt.Errorf("open %s of event %s: %w", part, eventID, err)
	}
	return Open(key, part, eventID, s, pd)
}
