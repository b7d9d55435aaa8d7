package keystore

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	keystorev1 "github.com/callledger/callledger/api/callledger/keystore/v1"
)

// RekeyOptions configure Rekey.
type RekeyOptions struct {
	// Options are the store's (Logger, Now, FS).
	Options
	// Progress, when set, is called after each synced batch with the
	// number of data keys rewrapped so far.
	Progress func(rewrapped int)
}

// RekeyResult says what Rekey did.
type RekeyResult struct {
	// Rewrapped is the number of data keys wrapped under the new KEK now;
	// Already, those an interrupted run had wrapped already.
	Rewrapped, Already int
	// Finished: the store had been rotated to the new KEK before; Rekey
	// only scrubbed its files again.
	Finished bool
}

// rekeyBatch is how many data keys one synced batch of Rekey rewraps.
const rekeyBatch = 4096

// Rekey rotates the key-encryption key of the stopped store in dir from old
// to next: every data key and the index key are wrapped again under next,
// their values unchanged (sealed events open as before, the party index
// still finds its calls), then the store's files are scrubbed so that none
// holds a record wrapped under old (docs/PRIVACY.md §5). The store refuses
// to open while a rotation is under way (ErrRotating); run again with the
// same keys, Rekey finishes an interrupted rotation. Backups taken before
// still need old.
func Rekey(ctx context.Context, dir string, old, next KEK, opts RekeyOptions) (RekeyResult, error) {
	var res RekeyResult
	if old.key == next.key {
		return res, fmt.Errorf("%w: the new key-encryption key is the one the store has", ErrInvalidKEK)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	fsys := opts.FS
	if fsys == nil {
		fsys = vfs.Default
	}
	// Never a new, empty store: a wrong --data-dir is an error.
	if _, err := fsys.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("key store %s: none there: %w", dir, err)
		}
		return res, fmt.Errorf("key store %s: %w", dir, err)
	}
	oldA, err := newAEAD(old.key[:])
	if err != nil {
		return res, err
	}
	nextA, err := newAEAD(next.key[:])
	if err != nil {
		return res, err
	}
	db, scrub, err := openDB(dir, opts.Options)
	if err != nil {
		return res, err
	}
	closed := false
	defer func() {
		if !closed {
			db.Close()
		}
	}()
	meta, err := readMeta(db)
	if errors.Is(err, errNoMeta) {
		return res, fmt.Errorf("key store %s: not a key store (%w)", dir, err)
	}
	if err != nil {
		return res, fmt.Errorf("key store %s: %w", dir, err)
	}
	switch {
	case bytes.Equal(meta.GetKekId(), next.id()) && len(meta.GetRotatingFrom()) == 0:
		res.Finished = true
	case bytes.Equal(meta.GetKekId(), next.id()) && bytes.Equal(meta.GetRotatingFrom(), old.id()):
		// An interrupted rotation: Meta is under next already.
		if _, err := unwrapWith(nextA, meta.GetCheck(), []byte(adCheck)); err != nil {
			return res, fmt.Errorf("key store %s: %w: its check value does not open", dir, ErrWrongKEK)
		}
	case bytes.Equal(meta.GetKekId(), old.id()) && len(meta.GetRotatingFrom()) == 0:
		if meta, err = beginRekey(db, meta, oldA, nextA, old, next); err != nil {
			return res, fmt.Errorf("key store %s: %w", dir, err)
		}
	case len(meta.GetRotatingFrom()) > 0:
		return res, fmt.Errorf("key store %s: %w: a rotation from key %s to key %s was interrupted; give those two (the old key holds %s, the new %s)",
			dir, ErrWrongKEK, hex.EncodeToString(meta.GetRotatingFrom()), hex.EncodeToString(meta.GetKekId()), old.ID(), next.ID())
	default:
		return res, fmt.Errorf("key store %s: %w: the store's key is %s, the old key file holds key %s", dir, ErrWrongKEK, hex.EncodeToString(meta.GetKekId()), old.ID())
	}
	if !res.Finished {
		if err := rewrapAll(ctx, db, oldA, nextA, &res, opts.Progress); err != nil {
			return res, fmt.Errorf("key store %s: %w", dir, err)
		}
		meta.RotatingFrom, meta.RotatedAt = nil, timestamppb.New(opts.Now())
		if err := writeMeta(db, meta); err != nil {
			return res, fmt.Errorf("key store %s: %w", dir, err)
		}
	}
	// Every record was overwritten (synced): a compaction of the whole key
	// space drops the versions wrapped under old, and the scrub the WALs.
	if err := scrub.Scrub(ctx, db, []pebble.KeyRange{{Start: []byte{0}, End: []byte{0xff}}}); err != nil {
		return res, fmt.Errorf("key store %s: rotated, not yet scrubbed of the old wrapping (run again): %w", dir, err)
	}
	closed = true
	if err := db.Close(); err != nil {
		return res, fmt.Errorf("key store %s: %w", dir, err)
	}
	return res, nil
}

// beginRekey writes Meta under next, marked as rotating from old, and
// returns it.
func beginRekey(db *pebble.DB, meta *keystorev1.Meta, oldA, nextA cipher.AEAD, old, next KEK) (*keystorev1.Meta, error) {
	if _, err := unwrapWith(oldA, meta.GetCheck(), []byte(adCheck)); err != nil {
		return nil, fmt.Errorf("%w: its check value does not open", ErrWrongKEK)
	}
	index, err := unwrapWith(oldA, meta.GetIndexKey(), []byte(adIndexKey))
	if err != nil {
		return nil, fmt.Errorf("index key: %w", err)
	}
	defer clear(index)
	m, err := sealedMeta(nextA, next.id(), index, meta.GetCreatedAt())
	if err != nil {
		return nil, err
	}
	m.RotatingFrom, m.RotatedAt = old.id(), meta.GetRotatedAt()
	return m, writeMeta(db, m)
}

// rewrapAll wraps every data key under old again under next, in synced
// batches, leaving those already under next.
func rewrapAll(ctx context.Context, db *pebble.DB, oldA, nextA cipher.AEAD, res *RekeyResult, progress func(int)) error {
	lower := []byte{prefixSubject}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return err
	}
	defer it.Close()
	b := db.NewBatch()
	defer func() { b.Close() }()
	commit := func() error {
		if b.Empty() {
			return nil
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return err
		}
		b.Close()
		b = db.NewBatch()
		if progress != nil {
			progress(res.Rewrapped)
		}
		return ctx.Err()
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		sub, ok := dataKeySubject(k)
		if !ok {
			continue
		}
		subject := string(sub)
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		var rec keystorev1.DataKey
		if err := proto.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("data key of %s: %w", subject, err)
		}
		ad := dataKeyAD(subject, rec.GetKeyId())
		if raw, err := unwrapWith(nextA, rec.GetKey(), ad); err == nil {
			clear(raw)
			res.Already++
			continue
		}
		raw, err := unwrapWith(oldA, rec.GetKey(), ad)
		if err != nil {
			// Corrupt, or wrapped under a third key: nothing is changed
			// beyond what is committed, and the rotation can be run again.
			return fmt.Errorf("data key %016x of %s opens under neither key-encryption key", rec.GetKeyId(), subject)
		}
		w, err := wrapWith(nextA, raw, ad)
		clear(raw)
		if err != nil {
			return err
		}
		rec.Key = w
		out, err := proto.Marshal(&rec)
		if err != nil {
			return err
		}
		if err := b.Set(k, out, nil); err != nil {
			return err
		}
		res.Rewrapped++
		if b.Count() >= rekeyBatch {
			if err := commit(); err != nil {
				return err
			}
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	return commit()
}
