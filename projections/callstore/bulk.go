package callstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
)

// bulkBatchBytes is the size at which a bulk writer commits its batch:
// large enough that commits are rare, small enough to stay well below
// the memtable.
const bulkBatchBytes = 8 << 20

// Encoded is a record ready for Load: its encoding and its index keys,
// without the pointers of the decoded message, so that a rebuild can hold
// millions of them cheaply (the collector does not scan byte slices).
type Encoded struct {
	data      []byte
	timeKey   []byte // t<^start_time><CallSid>; the CallSid is its suffix
	activeKey []byte // nil when the call is not active
	dueKey    []byte // nil when the call is redacted
	status    callledgerv1.CallStatus
}

// Encode prepares rec for Load.
func Encode(rec *statev1.CallRecord) (Encoded, error) {
	data, err := proto.Marshal(rec)
	if err != nil {
		return Encoded{}, fmt.Errorf("encode %s: %w", rec.GetCallSid(), err)
	}
	view := callstate.View(rec)
	return Encoded{data: data, timeKey: timeKey(prefixTime, rec), activeKey: activeKey(rec, view),
		dueKey: dueKey(rec, view), status: view.GetStatus()}, nil
}

// Decode returns the record e holds.
func (e Encoded) Decode() (*statev1.CallRecord, error) {
	rec := &statev1.CallRecord{}
	if err := proto.Unmarshal(e.data, rec); err != nil {
		return nil, fmt.Errorf("decode %s: %w", e.timeKey[9:], err)
	}
	return rec, nil
}

// Load writes recs, a read model folded in memory, into a new read model
// in dir, with checkpoint as the position it is current at. It is how a
// rebuild hands over its result: records are written by several workers
// in large unsynchronized batches without a WAL, then flushed once and
// synced, so that a crash leaves a directory the caller discards (it must
// not be trusted until Load returns nil). dir must not hold a read model
// yet. confs are the conference records, written beside the calls.
func Load(ctx context.Context, dir string, opts Options, checkpoint eventstore.Position, recs []Encoded, confs []EncodedConference) error {
	if opts.Version == 0 {
		opts.Version = Version
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(dir); err == nil {
		if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
			return fmt.Errorf("bulk load into %s: directory is not empty", dir)
		}
	}
	po := pebbleOptions(opts)
	po.MemTableSize, po.DisableWAL = 64<<20, true
	// A bulk load writes each key once: let L0 grow rather than stall the
	// writers on compactions that would only shuffle fresh data.
	po.L0CompactionThreshold, po.L0StopWritesThreshold = 8, 1000
	db, err := pebble.Open(dir, po)
	if err != nil {
		return fmt.Errorf("bulk load into %s: %w", dir, err)
	}
	if err := load(ctx, db, recs); err != nil {
		db.Close()
		return fmt.Errorf("bulk load into %s: %w", dir, err)
	}
	if err := loadConferences(db, confs); err != nil {
		db.Close()
		return fmt.Errorf("bulk load into %s: %w", dir, err)
	}
	// The counts go in with the checkpoint, as Apply writes them, so that
	// opening the new read model needs no scan to count its calls.
	c := counts{byStatus: map[callledgerv1.CallStatus]int64{}}
	for i := range recs {
		c.addStatus(recs[i].status, recs[i].activeKey != nil, 1)
	}
	b := db.NewBatch()
	var v, cp [8]byte
	binary.BigEndian.PutUint64(v[:], opts.Version)
	binary.BigEndian.PutUint64(cp[:], uint64(checkpoint))
	err = errors.Join(b.Set(keyVersion, v[:], nil), b.Set(keyCheckpoint, cp[:], nil), b.Set(keyCounts, c.encode(), nil))
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err == nil {
		// Without a WAL, only flushed data survives Close.
		err = db.Flush()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bulk load into %s: %w", dir, err)
	}
	return nil
}

// load encodes and writes recs with one worker per CPU.
func load(ctx context.Context, db *pebble.DB, recs []Encoded) error {
	workers := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	chunk := (len(recs) + workers - 1) / workers
	for w := range workers {
		lo, hi := min(w*chunk, len(recs)), min((w+1)*chunk, len(recs))
		wg.Go(func() {
			if err := loadChunk(ctx, db, recs[lo:hi]); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// loadChunk writes recs in four passes, one per kind of key (call, time,
// active, due), each in ascending key order: a memtable inserts a batch's keys
// in order almost for free (the skiplist remembers where the previous key
// went), where random order costs a full search per key.
func loadChunk(ctx context.Context, db *pebble.DB, recs []Encoded) error {
	w := bulkWriter{ctx: ctx, db: db, b: db.NewBatchWithSize(bulkBatchSize)}
	defer func() { w.b.Close() }()

	// CallSids are "CA" and hex digits, time keys a prefix byte and a time:
	// the eight bytes after those order almost every pair on their own.
	order := keyOrder(recs, 2, func(e *Encoded) []byte { return e.timeKey[9:] })
	key := []byte{prefixCall}
	for _, i := range order {
		key = append(key[:1], recs[i].timeKey[9:]...)
		if err := w.set(key, recs[i].data); err != nil {
			return err
		}
	}
	for _, i := range keyOrder(recs, 1, func(e *Encoded) []byte { return e.timeKey }) {
		if err := w.set(recs[i].timeKey, nil); err != nil {
			return err
		}
	}
	for _, i := range keyOrder(recs, 1, func(e *Encoded) []byte { return e.activeKey }) {
		if recs[i].activeKey == nil {
			continue
		}
		if err := w.set(recs[i].activeKey, nil); err != nil {
			return err
		}
	}
	for _, i := range keyOrder(recs, 1, func(e *Encoded) []byte { return e.dueKey }) {
		if recs[i].dueKey == nil {
			continue
		}
		if err := w.set(recs[i].dueKey, nil); err != nil {
			return err
		}
	}
	if err := w.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit bulk batch: %w", err)
	}
	return nil
}

// keyOrder returns the indexes of recs in about ascending order of key:
// by the eight bytes of the key from skip on, then by the whole key. The
// order only speeds the writes up (keys sharing their first skip bytes
// come out exactly sorted), so a cheap comparison beats an exact one.
func keyOrder(recs []Encoded, skip int, key func(*Encoded) []byte) []int {
	type entry struct {
		head uint64
		i    int
	}
	es := make([]entry, len(recs))
	for i := range recs {
		var b [8]byte
		if k := key(&recs[i]); len(k) > skip {
			copy(b[:], k[skip:])
		}
		es[i] = entry{head: binary.BigEndian.Uint64(b[:]), i: i}
	}
	slices.SortFunc(es, func(a, b entry) int {
		if c := cmp.Compare(a.head, b.head); c != 0 {
			return c
		}
		return bytes.Compare(key(&recs[a.i]), key(&recs[b.i]))
	})
	order := make([]int, len(es))
	for i, e := range es {
		order[i] = e.i
	}
	return order
}

// bulkBatchSize is what a bulk batch is allocated with: room for
// bulkBatchBytes and the record that crosses it, so that it never grows
// (each growth copies the whole batch).
const bulkBatchSize = bulkBatchBytes + 1<<20

// bulkWriter commits its batch whenever it reaches bulkBatchBytes.
type bulkWriter struct {
	ctx context.Context
	db  *pebble.DB
	b   *pebble.Batch
}

func (w *bulkWriter) set(key, value []byte) error {
	if err := w.b.Set(key, value, nil); err != nil {
		return err
	}
	if w.b.Len() < bulkBatchBytes {
		return nil
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if err := w.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit bulk batch: %w", err)
	}
	w.b.Close()
	w.b = w.db.NewBatchWithSize(bulkBatchSize)
	return nil
}

// CallSid is the SID of the call e holds.
func (e Encoded) CallSid() string { return string(e.timeKey[9:]) }
