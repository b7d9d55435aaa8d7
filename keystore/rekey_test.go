package keystore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/callledger/callledger/internal/residue"
)

// TestRekey: after a rotation every key opens what it sealed before, under
// the new KEK only, the party index and the erased subjects are as they
// were, and no file of the store holds anything wrapped under the old KEK.
func TestRekey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old, next := testKEK(t), testKEK(t)
	s := open(t, dir, old)
	keys := map[string]DataKey{}
	for i := range 60 {
		sub := fmt.Sprintf("CA%032x", i)
		k, err := s.Key(ctx, sub, fmt.Sprintf("+1555555%04d", i), "+15555550199")
		if err != nil {
			t.Fatal(err)
		}
		keys[sub] = k
		if i%10 == 0 { // WAL rotations: old wrappings in recycled files
			if err := s.db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	erased := fmt.Sprintf("CA%032x", 7)
	if _, err := s.Destroy(ctx, erased); err != nil {
		t.Fatal(err)
	}
	delete(keys, erased)
	// Everything wrapped under the old KEK: the data keys, the index key,
	// the check value.
	var needles []residue.Needle
	for sub := range keys {
		for _, n := range secrets(t, s, sub) {
			if n.Name == "wrapped key" {
				needles = append(needles, n)
			}
		}
	}
	meta, err := readMeta(s.db)
	if err != nil {
		t.Fatal(err)
	}
	needles = append(needles, residue.Bytes("wrapped index key", meta.GetIndexKey().GetCiphertext()),
		residue.Bytes("wrapped check", meta.GetCheck().GetCiphertext()))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	res, err := Rekey(ctx, dir, old, next, RekeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewrapped != len(keys) || res.Already != 0 || res.Finished {
		t.Errorf("Rekey: %+v, want %d rewrapped", res, len(keys))
	}
	residue.AssertNone(t, dir, needles...)

	if _, err := Open(dir, old, Options{}); !errors.Is(err, ErrWrongKEK) {
		t.Errorf("opened with the old KEK: %v, want ErrWrongKEK", err)
	}
	s = open(t, dir, next)
	for sub, k := range keys {
		got, err := s.Get(ctx, sub, k.ID())
		if err != nil {
			t.Fatalf("%s: %v", sub, err)
		}
		sealOpen(t, k, got)
		again, err := s.Key(ctx, sub, "+15555550199")
		if err != nil || again.ID() != k.ID() {
			t.Fatalf("Key of %s after the rotation: %016x, %v; want its key %016x", sub, again.ID(), err, k.ID())
		}
	}
	if subs, err := s.Subjects(ctx, "+15555550042"); err != nil || len(subs) != 1 || subs[0] != fmt.Sprintf("CA%032x", 42) {
		t.Errorf("the party index after the rotation: %v, %v", subs, err)
	}
	if _, err := s.Key(ctx, erased); !errors.Is(err, ErrDestroyed) {
		t.Errorf("an erased subject after the rotation: %v, want ErrDestroyed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	res, err = Rekey(ctx, dir, old, next, RekeyOptions{})
	if err != nil || !res.Finished || res.Rewrapped != 0 {
		t.Errorf("Rekey again: %+v, %v; want finished", res, err)
	}
	if _, err := Rekey(ctx, dir, next, next, RekeyOptions{}); !errors.Is(err, ErrInvalidKEK) {
		t.Errorf("Rekey to the same KEK: %v, want ErrInvalidKEK", err)
	}
	if _, err := Rekey(ctx, dir, testKEK(t), testKEK(t), RekeyOptions{}); !errors.Is(err, ErrWrongKEK) {
		t.Errorf("Rekey from a KEK the store does not have: %v, want ErrWrongKEK", err)
	}
	residue.AssertNone(t, dir, needles...)
}

// TestRekeyInterrupted: a rotation stopped between batches leaves a store
// that opens under neither KEK, and a second run finishes it.
func TestRekeyInterrupted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old, next := testKEK(t), testKEK(t)
	s := open(t, dir, old)
	const n = rekeyBatch + 500
	ids := make([]uint64, n)
	for i := range n {
		k, err := s.Key(ctx, fmt.Sprintf("CA%032x", i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = k.ID()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := 0
	_, err := Rekey(stop, dir, old, next, RekeyOptions{Progress: func(int) { batches++; cancel() }})
	if !errors.Is(err, context.Canceled) || batches != 1 {
		t.Fatalf("Rekey stopped after %d batches: %v, want context.Canceled after one", batches, err)
	}
	for name, kek := range map[string]KEK{"old": old, "new": next} {
		if _, err := Open(dir, kek, Options{}); !errors.Is(err, ErrRotating) {
			t.Errorf("opened with the %s KEK during the rotation: %v, want ErrRotating", name, err)
		}
	}
	if _, err := Rekey(ctx, dir, testKEK(t), next, RekeyOptions{}); !errors.Is(err, ErrWrongKEK) {
		t.Errorf("finished from another old KEK: %v, want ErrWrongKEK", err)
	}

	res, err := Rekey(ctx, dir, old, next, RekeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Already != rekeyBatch || res.Rewrapped != n-rekeyBatch {
		t.Errorf("Rekey resumed: %+v, want %d already and %d rewrapped", res, rekeyBatch, n-rekeyBatch)
	}
	s = open(t, dir, next)
	defer s.Close()
	for i := 0; i < n; i += 97 {
		if _, err := s.Get(ctx, fmt.Sprintf("CA%032x", i), ids[i]); err != nil {
			t.Fatalf("key %d after the resumed rotation: %v", i, err)
		}
	}
	meta, err := readMeta(s.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.GetRotatingFrom()) != 0 || meta.GetRotatedAt() == nil {
		t.Errorf("meta after the rotation: %v", meta)
	}
}

// TestRekeyNoStore: a directory without a key store is an error, and none
// is made there.
func TestRekeyNoStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := Rekey(context.Background(), dir, testKEK(t), testKEK(t), RekeyOptions{}); err == nil {
		t.Fatal("Rekey of no store succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Rekey made %s: %v", dir, err)
	}
}
