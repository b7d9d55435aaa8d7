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

	"github.com/bits-and-blooms/bloom/v3"
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
// in dir, with checkpoint as the position it is current at: a Builder
// given every record at once. dir must not hold a read model yet. confs
// are the conference records, written beside the calls.
func Load(ctx context.Context, dir string, opts Options, checkpoint eventstore.Position, recs []Encoded, confs []EncodedConference) error {
	b, err := NewBuilder(dir, opts)
	if err != nil {
		return err
	}
	if err := b.Write(ctx, recs); err != nil {
		b.Abort()
		return err
	}
	return b.Finish(checkpoint, confs)
}

// Builder writes a new read model in bulk while a rebuild folds the log,
// so that the rebuild need not hold every record until the end: records
// it is done with are written and dropped, and read back (Get) in the
// rare case a late event touches them again. Records are written by
// several workers in large unsynchronized batches without a WAL, and
// flushed and synced once by Finish, so that a crash leaves a directory
// the caller discards: it must not be trusted until Finish returns nil.
// A Builder is used by one goroutine.
type Builder struct {
	db     *pebble.DB
	dir    string
	opts   Options
	counts counts
	calls  int
	reads  int
	// reread holds the index keys and status of the records Get read
	// back: when one is written again, the keys it no longer has are
	// deleted and its count moves.
	reread map[string]indexed
	// seen holds the CallSids written, so that Get need not ask Pebble
	// about the calls a rebuild meets for the first time (most of them):
	// a miss costs a search of every table it might be in, a filter test
	// about 100 ns. Each filter holds twice as many calls as the one
	// before, at 1% false positives: about 1.2 bytes per call in all.
	seen []*bloom.BloomFilter
	// room is how many more calls the last filter takes.
	room uint
}

// indexed is what a record written earlier left in the read model
// besides its own key.
type indexed struct {
	timeKey, activeKey, dueKey []byte
	status                     callledgerv1.CallStatus
}

// builderCacheSize is a Builder's block cache: what Get needs of the
// tables already flushed (their filters and indexes, mostly).
const builderCacheSize = 32 << 20

// firstFilterCalls is the capacity of a Builder's first filter of written
// calls.
const firstFilterCalls = 1 << 20

// NewBuilder creates a read model in dir, which must be empty or absent.
func NewBuilder(dir string, opts Options) (*Builder, error) {
	if opts.Version == 0 {
		opts.Version = Version
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(dir); err == nil {
		if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
			return nil, fmt.Errorf("bulk load into %s: directory is not empty", dir)
		}
	}
	po := pebbleOptions(opts)
	// Without a WAL: the read model is derived from the log, and Finish
	// flushes and syncs it before the caller may commit the directory.
	po.MemTableSize, po.DisableWAL = 32<<20, true
	po.CacheSize = builderCacheSize
	// A bulk load writes most keys once: let L0 grow rather than stall the
	// writers on compactions that would only shuffle fresh data.
	po.L0CompactionThreshold, po.L0StopWritesThreshold = 8, 1000
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("bulk load into %s: %w", dir, err)
	}
	return &Builder{db: db, dir: dir, opts: opts, counts: counts{byStatus: map[callledgerv1.CallStatus]int64{}}, reread: map[string]indexed{}}, nil
}

// Calls is the number of distinct calls written so far.
func (b *Builder) Calls() int { return b.calls }

// Reads is the number of records Get read back.
func (b *Builder) Reads() int { return b.reads }

// Get returns the record of sid written earlier, or nil when there is
// none. The caller is expected to Write it again once changed.
func (b *Builder) Get(sid string) (*statev1.CallRecord, error) {
	if !b.written(sid) {
		return nil, nil
	}
	rec, err := getRecord(b.db, sid)
	if err != nil || rec == nil {
		return nil, err
	}
	b.reads++
	view := callstate.View(rec)
	b.reread[sid] = indexed{timeKey: timeKey(prefixTime, rec), activeKey: activeKey(rec, view), dueKey: dueKey(rec, view), status: view.GetStatus()}
	return rec, nil
}

// Write writes recs with their index keys and counts them. A record
// already written is replaced only when Get read it back since.
func (b *Builder) Write(ctx context.Context, recs []Encoded) error {
	var stale [][]byte // the index keys records read back no longer have
	for i := range recs {
		e := &recs[i]
		b.counts.addStatus(e.status, e.activeKey != nil, 1)
		sid := string(e.timeKey[9:])
		old, ok := b.reread[sid]
		if !ok {
			b.calls++
			b.remember(sid)
			continue
		}
		delete(b.reread, sid)
		b.counts.addStatus(old.status, old.activeKey != nil, -1)
		for _, k := range [][2][]byte{{old.timeKey, e.timeKey}, {old.activeKey, e.activeKey}, {old.dueKey, e.dueKey}} {
			if k[0] != nil && !bytes.Equal(k[0], k[1]) {
				stale = append(stale, k[0])
			}
		}
	}
	if err := load(ctx, b.db, recs); err != nil {
		return fmt.Errorf("bulk load into %s: %w", b.dir, err)
	}
	if len(stale) == 0 {
		return nil
	}
	batch := b.db.NewBatch()
	defer batch.Close()
	for _, k := range stale {
		if err := batch.Delete(k, nil); err != nil {
			return fmt.Errorf("bulk load into %s: %w", b.dir, err)
		}
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("bulk load into %s: %w", b.dir, err)
	}
	return nil
}

// remember adds sid to the filter of written calls.
func (b *Builder) remember(sid string) {
	if b.room == 0 {
		n := uint(firstFilterCalls) << len(b.seen)
		b.seen = append(b.seen, bloom.NewWithEstimates(n, 0.01))
		b.room = n
	}
	b.seen[len(b.seen)-1].AddString(sid)
	b.room--
}

// written reports whether sid may have been written.
func (b *Builder) written(sid string) bool {
	for _, f := range b.seen {
		if f.TestString(sid) {
			return true
		}
	}
	return false
}

// Finish writes the conferences, the counts, the version and checkpoint,
// flushes everything to disk and closes the read model: from then on dir
// is complete.
func (b *Builder) Finish(checkpoint eventstore.Position, confs []EncodedConference) error {
	if err := loadConferences(b.db, confs); err != nil {
		b.Abort()
		return fmt.Errorf("bulk load into %s: %w", b.dir, err)
	}
	// The counts go in with the checkpoint, as Apply writes them, so that
	// opening the new read model needs no scan to count its calls.
	batch := b.db.NewBatch()
	var v, cp [8]byte
	binary.BigEndian.PutUint64(v[:], b.opts.Version)
	binary.BigEndian.PutUint64(cp[:], uint64(checkpoint))
	err := errors.Join(batch.Set(keyVersion, v[:], nil), batch.Set(keyCheckpoint, cp[:], nil), batch.Set(keyCounts, b.counts.encode(), nil))
	if err == nil {
		err = batch.Commit(pebble.NoSync)
	}
	if err == nil {
		// Without a WAL, only flushed data survives Close.
		err = b.db.Flush()
	}
	if cerr := b.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bulk load into %s: %w", b.dir, err)
	}
	return nil
}

// Abort closes an unfinished read model; the caller removes dir.
func (b *Builder) Abort() { _ = b.db.Close() }

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
