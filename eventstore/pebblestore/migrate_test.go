package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
)

// TestMigrateV1 opens a store written in the single-database layout of
// version 1 (events and indexes side by side): Open drops the old index
// keys, rebuilds the index database from the log, and the store carries
// on where it was.
func TestMigrateV1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	quiet := pebbleLogger{log: slog.New(slog.DiscardHandler)}
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	type written struct {
		id  uuid.UUID
		pos uint64
	}
	streams := map[string][]written{}
	b := db.NewBatch()
	created := time.Now().UnixNano()
	u64 := func(v ...uint64) []byte {
		var out []byte
		for _, x := range v {
			out = binary.BigEndian.AppendUint64(out, x)
		}
		return out
	}
	for pos := uint64(1); pos <= 100; pos++ {
		stream := fmt.Sprintf("v1-%d", pos%7)
		rev := uint64(len(streams[stream]))
		id := uuid.New()
		streams[stream] = append(streams[stream], written{id, pos})
		rec := appendRecord(nil, id, rev, created, stream, "V1", nil, []byte(stream))
		for _, kv := range [][2][]byte{
			{eventKey(nil, pos), rec},
			{streamKey(nil, stream, rev), u64(pos)},
			{append([]byte{'h'}, stream...), u64(rev)},
			{idKey(nil, stream, id), u64(rev, pos)},
		} {
			if err := b.Set(kv[0], kv[1], nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Set([]byte(keyFormatV1), []byte{formatV1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	opts := Options{Logger: slog.New(slog.DiscardHandler)}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open a v1 store: %v", err)
	}
	ctx := context.Background()
	for stream, want := range streams {
		got, err := s.ReadStream(ctx, stream, 0, 100)
		if err != nil || len(got) != len(want) {
			t.Fatalf("read %s: %d events, %v; want %d", stream, len(got), err, len(want))
		}
		for i := range got {
			if got[i].ID != want[i].id || uint64(got[i].Position) != want[i].pos {
				t.Fatalf("%s@%d: %s at %d, want %s at %d", stream, i, got[i].ID, got[i].Position, want[i].id, want[i].pos)
			}
		}
		res, err := s.Append(ctx, stream, eventstore.NoStream(), eventstore.EventData{ID: want[0].id, Type: "Again"})
		if err != nil || len(res.Duplicates) != 1 || uint64(res.Position) != want[0].pos {
			t.Fatalf("re-append to %s: %+v, %v", stream, res, err)
		}
	}
	res, err := s.Append(ctx, "v1-3", eventstore.Revision(uint64(len(streams["v1-3"])-1)), eventstore.EventData{ID: uuid.New(), Type: "New"})
	if err != nil || res.Position != 101 || res.NextRevision != uint64(len(streams["v1-3"])) {
		t.Fatalf("append after the migration: %+v, %v", res, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The old index keys and version are gone from the log database.
	db, err = pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'f'}})
	if err != nil {
		t.Fatal(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		t.Errorf("log database still holds %q after the migration", it.Key())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if v, err := getVersion(db, keyFormat); err != nil || v != formatVersion {
		t.Errorf("layout version %d, %v; want %d", v, err, formatVersion)
	}
	if _, _, err := db.Get([]byte(keyFormatV1)); !errors.Is(err, pebble.ErrNotFound) {
		t.Errorf("old version key: %v, want it deleted", err)
	}
}
