package callstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/pebblelog"
	"github.com/callledger/callledger/internal/pebblescrub"
	"github.com/callledger/callledger/internal/pebblevfs"
	"github.com/callledger/callledger/internal/privatefs"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/twilio"
)

// Version is the version of the call-state projection this code builds.
// Bump it when the fold changes what it derives: serve then builds the new
// version beside the old one.
//
// Version 2: conferences, AMD, Voice Insights, transcriptions, field-level
// merge of terminal and recording reports, inferred ends, the account from
// any event, and events of derivation 0 upcast from their requests.
//
// Version 3: erasures (ErasureRecorded) redact the calls they name, and
// the retention index.
const Version = 3

// Errors callers branch on.
var (
	// ErrBadPageToken: the page token is malformed or was issued for
	// another filter.
	ErrBadPageToken = errors.New("invalid page token")
	// ErrSlowConsumer: a watcher fell so far behind that its buffer filled.
	ErrSlowConsumer = errors.New("watcher too slow: changes overflowed its buffer")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("call store closed")
	// ErrVersion: the directory was built by another projection version.
	ErrVersion = errors.New("call store built by another projection version")
)

const (
	prefixCall   = 'c'
	prefixTime   = 't'
	prefixActive = 'a'
	prefixDue    = 'r' // retention: see dueKey
	// prefixScrub: erasures applied, whose redacted records still have
	// older versions in the files (ScrubPending).
	prefixScrub = 's'
	// Conferences.
	prefixConference       = 'f'
	prefixConferenceTime   = 'g'
	prefixConferenceActive = 'h'
)

var (
	keyCheckpoint = []byte("mcheckpoint")
	keyVersion    = []byte("mversion")
)

// DefaultCacheSize is the block cache of a Store whose Options set none.
// GetCall reads two records per two-leg tree from anywhere in the read
// model, so the cache should hold all of it: a million calls take about
// 400 MB of blocks (records and indexes, uncompressed). The cache is
// filled on demand, so a smaller read model uses less.
const DefaultCacheSize = 512 << 20

// Options tune a Store; the zero value is fine.
type Options struct {
	Logger *slog.Logger
	// WatchBuffer is how many changes a watcher may have pending before it
	// is ended with ErrSlowConsumer (default 4096).
	WatchBuffer int
	// Observe, when set, is called with every event an Apply folded, once
	// the batch is committed (in-memory statistics such as delivery
	// delays). It runs on the projection's goroutine: it must be quick.
	Observe func(*callledgerv1.Event)
	// CacheSize is the size in bytes of the block cache, which holds
	// decompressed blocks of the read model outside the Go heap (default
	// DefaultCacheSize). Reads of calls outside it cost a read from the
	// file and a decompression each.
	CacheSize int64
	// OnCorrupt, when set, is called once, the first time the read model
	// is found corrupt (a checksum fails) or unusable (a write failed):
	// from then on its reads and Apply fail with ErrCorrupt, and it must
	// be rebuilt from the ledger. It may run on any goroutine, with
	// Pebble's mutex held: it must not block or call the Store.
	OnCorrupt func(error)
	// Version is the projection version the directory must hold (default
	// the package's Version). Opening an older version's directory, to keep
	// serving from it while the new version builds, names that version.
	Version uint64

	// Personal opens the sealed personal fields of the events folded
	// (docs/PRIVACY.md); nil folds them without.
	Personal Opener

	// beforePage, set only by this package's tests, is called by a
	// watcher's snapshot once it holds the snapshot for a page.
	beforePage func()
	// hotBytes, set only by this package's tests, replaces the budget of
	// the hot records (defaultHotBytes).
	hotBytes int
}

// Store is the call-state read model.
type Store struct {
	db   *pebble.DB
	log  *slog.Logger
	opts Options
	// scrub forces erased data out of the database's files (Scrub).
	scrub *pebblescrub.Scrubber
	// scrubMu runs scrubs (Scrub, ScrubPending) one at a time.
	scrubMu sync.Mutex
	// damage is set once the read model is found corrupt or unusable.
	damage *damage

	// applyMu serializes Apply and orders it with Watch registration, so a
	// watcher's snapshot and its change feed meet exactly at one position.
	applyMu  sync.Mutex
	applied  atomic.Uint64
	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced after each Apply
	watchers map[*Watcher]struct{}
	// confWatchers follow conferences; guarded like watchers.
	confWatchers map[*ConferenceWatcher]struct{}
	closed       atomic.Bool
	// countsMu guards counts, which Apply replaces after each commit.
	countsMu sync.RWMutex
	counts   counts
	countsAt eventstore.Position
	// life fences reads from Close: every read holds it shared and checks
	// closed; Close takes it exclusively, so the database is never closed
	// under a read, and reads that come later get ErrClosed.
	life sync.RWMutex
	// hot holds the records Apply wrote last; guarded by applyMu.
	hot *hotRecords
}

// reading enters a read; the caller must call the returned func when done.
func (s *Store) reading() (func(), error) {
	s.life.RLock()
	if s.closed.Load() {
		s.life.RUnlock()
		return nil, ErrClosed
	}
	if err := s.Corrupt(); err != nil {
		s.life.RUnlock()
		return nil, err
	}
	return s.life.RUnlock, nil
}

// pebbleOptions are the read model's Pebble options, for Open and for a
// bulk Load alike, so that the tables a rebuild writes are laid out as the
// live ones. Point lookups dominate: bloom filters let a Get skip the
// tables of a level that do not hold the key, and an index block as large
// as a table's whole index keeps it to one level (one cache lookup fewer
// per table than the two-level index 4 KB index blocks give). Both apply
// to every level below too.
func pebbleOptions(opts Options) *pebble.Options {
	po := &pebble.Options{
		Logger:             pebblelog.New(opts.Logger.With("component", "callstore-pebble"), 0),
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       32 << 20,
		// Phone numbers and raw requests: 0700 directories, 0600 files.
		FS: privatefs.Pebble(vfs.Default),
	}
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	po.Levels[0].IndexBlockSize = 256 << 10
	return po
}

// Open opens (creating it if needed) the read model in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.WatchBuffer <= 0 {
		opts.WatchBuffer = 4096
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Version == 0 {
		opts.Version = Version
	}
	po := pebbleOptions(opts)
	po.CacheSize = opts.CacheSize
	dmg := &damage{onCorrupt: opts.OnCorrupt}
	po.EventListener = dmg.listener(opts.Logger)
	po.FS = pebblevfs.NewPaced(po.FS, nil) // private files, retries after a failed write paced
	scrub := pebblescrub.New(dir, po)      // last: it wraps the file system and tees the listener
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("open call store in %s: %w", dir, err)
	}
	s := &Store{db: db, log: opts.Logger, opts: opts, damage: dmg, scrub: scrub, notify: make(chan struct{}), watchers: map[*Watcher]struct{}{},
		confWatchers: map[*ConferenceWatcher]struct{}{}, hot: newHotRecords(cmp.Or(opts.hotBytes, defaultHotBytes))}
	if err := s.checkVersion(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open call store in %s: %w", dir, err)
	}
	cp, err := readCheckpoint(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open call store in %s: %w", dir, err)
	}
	s.applied.Store(uint64(cp))
	s.countsAt = cp
	if err := s.loadCounts(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open call store in %s: %w", dir, err)
	}
	return s, nil
}

func (s *Store) checkVersion() error {
	v, closer, err := s.db.Get(keyVersion)
	if errors.Is(err, pebble.ErrNotFound) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], s.opts.Version)
		return s.db.Set(keyVersion, b[:], pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("read version: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 || binary.BigEndian.Uint64(v) != s.opts.Version {
		return fmt.Errorf("%w: directory has %x, want %d", ErrVersion, v, s.opts.Version)
	}
	return nil
}

// getter reads a key from the database or one of its snapshots.
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func readCheckpoint(r getter) (eventstore.Position, error) {
	v, closer, err := r.Get(keyCheckpoint)
	if errors.Is(err, pebble.ErrNotFound) {
		return eventstore.Start, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("checkpoint of %d bytes", len(v))
	}
	return eventstore.Position(binary.BigEndian.Uint64(v)), nil
}

// Version returns the projection version of the directory.
func (s *Store) Version() uint64 { return s.opts.Version }

// Checkpoint returns the position of the last applied event.
func (s *Store) Checkpoint(context.Context) (eventstore.Position, error) {
	return eventstore.Position(s.applied.Load()), nil
}

// Close closes the store; watchers end with ErrClosed.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	for w := range s.watchers {
		w.end(ErrClosed)
	}
	for w := range s.confWatchers {
		w.end(ErrClosed)
	}
	s.wake()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close call store: %w", err)
	}
	return nil
}

// Apply folds a subscription batch into the read model and records its
// checkpoint, atomically; then it tells waiters and watchers.
func (s *Store) Apply(ctx context.Context, batch eventstore.Batch) (err error) {
	defer s.check(&err)
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.Corrupt(); err != nil {
		return err
	}
	if uint64(batch.Checkpoint) <= s.applied.Load() && len(batch.Events) == 0 {
		return nil
	}
	tx := &batchTx{s: s, b: s.db.NewBatch(), recs: map[string]*entry{}, confs: map[string]*confEntry{}}
	defer tx.b.Close()
	// Events at or before the checkpoint were applied already (a
	// resubscription overlapping it).
	folded, err := Decoder{Log: s.log, Personal: s.opts.Personal}.FoldBatch(ctx, batch.Events, s.applied.Load(), make([]Folded, 0, len(batch.Events)))
	if err != nil {
		// Nothing of the batch is written: it is applied again.
		return err
	}
	for _, f := range folded {
		ev := f.Event
		if err := callstate.Apply(tx, ev, f.Position); err != nil {
			return fmt.Errorf("apply event %s at %d: %w", ev.GetEventId(), f.Position, err)
		}
		if e := ev.GetErasureRecorded(); e != nil && len(e.GetCallSids()) > 0 {
			// In the batch that redacts them: a crash loses both or neither.
			if err := tx.b.Set(scrubKey(f.Position), []byte(strings.Join(e.GetCallSids(), "\n")), nil); err != nil {
				return err
			}
		}
		if s.opts.Observe != nil {
			tx.applied = append(tx.applied, ev)
		}
	}
	cp := max(uint64(batch.Checkpoint), s.applied.Load())
	changed, err := tx.write(cp)
	if err != nil {
		return err
	}
	changedConfs, err := tx.writeConferences()
	if err != nil {
		return err
	}
	// A failed WAL write makes Pebble call Fatalf: the database is
	// unusable, and the read model must be rebuilt (see check).
	if err := pebblelog.Catch(func() error { return tx.b.Commit(pebble.NoSync) }); err != nil {
		return fmt.Errorf("commit call store batch: %w", err)
	}
	for _, w := range tx.written {
		s.hot.put(w.sid, w.data)
	}
	s.countsMu.Lock()
	if tx.counts != nil {
		s.counts = *tx.counts
	}
	s.countsAt = eventstore.Position(cp)
	s.countsMu.Unlock()
	s.applied.Store(cp)
	for _, ev := range tx.applied {
		s.opts.Observe(ev)
	}
	s.publish(changed, eventstore.Position(cp))
	s.publishConferences(changedConfs, eventstore.Position(cp))
	s.wake()
	return nil
}

// DecodeCallEvent returns what the fold reads of rec: its facts, without
// the verbatim request (most of its bytes), when rec is an event of a call
// or a conference; personal fields sealed are left sealed (Decoder opens
// them). An event an older derivation made from a webhook request is
// decoded whole and derived again from its request (twilio.Upcast), so
// that the fold reads old events as this version reads requests. An event
// the fold cannot read changes nothing and is logged and skipped:
// stopping there would stop the projection for good. The live projection
// and rebuilds both decode through it, so they fold the same events.
func DecodeCallEvent(rec *eventstore.RecordedEvent, log *slog.Logger) (*callledgerv1.Event, bool) {
	return Decoder{Log: log}.Decode(rec)
}

// Opener opens the sealed personal fields of an event (docs/PRIVACY.md);
// *seal.Events is one.
type Opener interface {
	Open(ctx context.Context, ev *callledgerv1.Event, parts ...seal.Part) (seal.Opened, error)
}

// Decoder decodes what the fold reads of records, as DecodeCallEvent does,
// and opens their sealed facts with Personal.
type Decoder struct {
	Log *slog.Logger
	// Personal opens sealed personal fields. Nil: they stay empty.
	Personal Opener
}

// Decode is DecodeCallEvent, opening the sealed facts. An erased subject's
// event folds with its personal fields empty. A key the store does not
// have and a ciphertext that does not open are logged as errors, and the
// event folds with its personal fields empty: its facts in the clear are
// still true, and skipping it would change more of the call. An event
// whose keys the key store cannot give now is skipped and logged: readers
// that must not skip it use Fold.
func (d Decoder) Decode(rec *eventstore.RecordedEvent) (*callledgerv1.Event, bool) {
	ev, ok, err := d.Fold(rec)
	if err != nil {
		d.Log.Error("skipping an event whose keys the key store cannot give now", "stream", rec.Stream, "position", rec.Position, "err", err)
	}
	return ev, ok
}

// Fold is Decode, except that a key store that cannot answer now
// (keystore.ErrUnavailable: a key service out of reach) is an error, not
// an event folded without its personal fields for good: the projection
// applies the batch again later, and a rebuild fails.
func (d Decoder) Fold(rec *eventstore.RecordedEvent) (*callledgerv1.Event, bool, error) {
	ev, ok, opened, err := d.decode(rec)
	if err != nil || !ok || opened {
		return ev, ok, err
	}
	if err := d.open(rec, ev, seal.Facts); err != nil {
		return nil, false, err
	}
	return ev, true, nil
}

// Folded is an event decoded and opened for the fold, with its position.
type Folded struct {
	Event    *callledgerv1.Event
	Position uint64
}

// prefetcher gets the keys of many events at once (seal.Events over a
// key service).
type prefetcher interface {
	Prefetch(ctx context.Context, evs iter.Seq[*callledgerv1.Event]) error
}

// FoldBatch is Fold for the records of recs after position after,
// appended to out: it decodes them all, then has the opener get the keys
// of their sealed facts in one go when it can (a key service: one round
// trip for the batch, not one per call leg), then opens them.
func (d Decoder) FoldBatch(ctx context.Context, recs []eventstore.RecordedEvent, after uint64, out []Folded) ([]Folded, error) {
	start := len(out)
	var sealed, from []int // indexes in out of the events to open, and of their records
	for i := range recs {
		rec := &recs[i]
		if uint64(rec.Position) <= after {
			continue
		}
		ev, ok, opened, err := d.decode(rec)
		if err != nil {
			return out[:start], err
		}
		if !ok {
			continue
		}
		out = append(out, Folded{Event: ev, Position: uint64(rec.Position)})
		if !opened {
			sealed, from = append(sealed, len(out)-1), append(from, i)
		}
	}
	if p, ok := d.Personal.(prefetcher); ok && len(sealed) > 1 {
		// An iterator: an opener that cannot prefetch (a local key store)
		// returns without it, and the batch costs nothing more.
		evs := func(yield func(*callledgerv1.Event) bool) {
			for _, j := range sealed {
				if !yield(out[j].Event) {
					return
				}
			}
		}
		if err := p.Prefetch(ctx, evs); errors.Is(err, keystore.ErrUnavailable) {
			return out[:start], fmt.Errorf("get the keys of %d events: %w", len(sealed), err)
		} else if err != nil {
			// Each event's own opening reports what is wrong.
			d.Log.Warn("getting the keys of a batch of events failed; they are got one by one", "err", err)
		}
	}
	for i, j := range sealed {
		if err := d.open(&recs[from[i]], out[j].Event, seal.Facts); err != nil {
			return out[:start], err
		}
	}
	return out, nil
}

// decode decodes what the fold reads of rec, as DecodeCallEvent does;
// opened says whether nothing is left to open (no sealed part, or an event
// of an older derivation, opened whole to be derived again).
func (d Decoder) decode(rec *eventstore.RecordedEvent) (ev *callledgerv1.Event, ok, opened bool, err error) {
	_, call := eventcodec.CallSidOf(rec.Stream)
	_, conf := eventcodec.ConferenceSidOf(rec.Stream)
	if !call && !conf && rec.Stream != eventcodec.ErasureStream {
		return nil, false, false, nil
	}
	ev, err = eventcodec.DecodeFacts(*rec)
	if err != nil {
		d.Log.Error("skipping undecodable event", "stream", rec.Stream, "position", rec.Position, "err", err)
		return nil, false, false, nil
	}
	if twilio.NeedsUpcast(ev) {
		whole, err := eventcodec.Decode(*rec)
		if err != nil {
			d.Log.Error("skipping undecodable event", "stream", rec.Stream, "position", rec.Position, "err", err)
			return nil, false, false, nil
		}
		// The request is needed to derive the event again.
		if err := d.open(rec, whole, seal.Facts, seal.Request); err != nil {
			return nil, false, false, err
		}
		ev = twilio.Upcast(whole)
		ev.Request, ev.CloudEvent = nil, nil // the fold never reads them; a rebuild holds many events
		return ev, true, true, nil
	}
	return ev, true, ev.GetSealed() == nil && ev.GetSealedRequest() == nil, nil
}

func (d Decoder) open(rec *eventstore.RecordedEvent, ev *callledgerv1.Event, parts ...seal.Part) error {
	if ev.GetSealed() == nil && ev.GetSealedRequest() == nil {
		return nil
	}
	if d.Personal == nil {
		d.Log.Error("folding a sealed event without its personal fields: no key store is configured",
			"stream", rec.Stream, "position", rec.Position)
	} else if _, err := d.Personal.Open(context.Background(), ev, parts...); errors.Is(err, keystore.ErrUnavailable) {
		return fmt.Errorf("open %s@%d: %w", rec.Stream, rec.Revision, err)
	} else if err != nil {
		d.Log.Error("folding an event without its personal fields: they do not open", "stream", rec.Stream, "position", rec.Position, "err", err)
	}
	ev.Sealed, ev.SealedRequest = nil, nil
	return nil
}

func (s *Store) wake() {
	s.notifyMu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.notifyMu.Unlock()
}

// WaitFor blocks until the read model has applied pos, ctx ends, or the
// store closes.
func (s *Store) WaitFor(ctx context.Context, pos eventstore.Position) error {
	for {
		s.notifyMu.Lock()
		ch := s.notify
		s.notifyMu.Unlock()
		if s.applied.Load() >= uint64(pos) {
			return nil
		}
		if s.closed.Load() {
			return ErrClosed
		}
		if err := s.Corrupt(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for position %d (applied %d): %w", pos, s.applied.Load(), ctx.Err())
		}
	}
}

// entry is a record the current batch touched, with the index keys it had
// before, so they can be replaced.
type entry struct {
	rec       *statev1.CallRecord
	old       *callledgerv1.Call // the call before this batch; nil when new
	oldTime   []byte             // nil when the call is new
	oldActive []byte             // nil when it was not active
	oldDue    []byte             // nil when it was redacted
	dirty     bool
}

// batchTx is the callstate.Tx of one Apply: reads go to the batch's own
// records first, then to the database.
type batchTx struct {
	s    *Store
	b    *pebble.Batch
	recs map[string]*entry
	// order of first Put, for deterministic writes
	order []string
	// counts after this batch; nil until a record changes
	counts *counts
	// applied events, for Options.Observe
	applied []*callledgerv1.Event
	// conferences touched, and the order of their first Put
	confs     map[string]*confEntry
	confOrder []string
	// written are the encoded records of this batch, for the Store's hot
	// records once it is committed
	written []hotRecord
}

type hotRecord struct {
	sid  string
	data []byte
}

func (t *batchTx) Get(sid string) (*statev1.CallRecord, error) {
	if e, ok := t.recs[sid]; ok {
		return e.rec, nil
	}
	var rec *statev1.CallRecord
	if data, ok := t.s.hot.get(sid); ok {
		rec = &statev1.CallRecord{}
		if err := proto.Unmarshal(data, rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", sid, err)
		}
	} else {
		var err error
		if rec, err = getRecord(t.s.db, sid); err != nil || rec == nil {
			return nil, err
		}
	}
	// The fold changes rec in place: keep what watchers need of the past.
	old := callstate.View(rec)
	e := &entry{rec: rec, old: old, oldTime: timeKey(prefixTime, rec), oldActive: activeKey(rec, old), oldDue: dueKey(rec, old)}
	t.recs[sid] = e
	return rec, nil
}

func (t *batchTx) Put(rec *statev1.CallRecord) error {
	e, ok := t.recs[rec.GetCallSid()]
	if !ok {
		e = &entry{}
		t.recs[rec.GetCallSid()] = e
	}
	e.rec = rec
	if !e.dirty {
		e.dirty = true
		t.order = append(t.order, rec.GetCallSid())
	}
	return nil
}

// write puts every changed record, its index keys and the checkpoint into
// the batch, and returns the changed calls.
func (t *batchTx) write(checkpoint uint64) ([]changedCall, error) {
	changed := make([]changedCall, 0, len(t.order))
	for _, sid := range t.order {
		e := t.recs[sid]
		data, err := proto.Marshal(e.rec)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", sid, err)
		}
		if err := t.b.Set(callKey(sid), data, nil); err != nil {
			return nil, err
		}
		t.written = append(t.written, hotRecord{sid: sid, data: data})
		if err := t.reindex(e.oldTime, timeKey(prefixTime, e.rec)); err != nil {
			return nil, err
		}
		view := callstate.View(e.rec)
		if err := t.reindex(e.oldActive, activeKey(e.rec, view)); err != nil {
			return nil, err
		}
		if err := t.reindex(e.oldDue, dueKey(e.rec, view)); err != nil {
			return nil, err
		}
		changed = append(changed, changedCall{call: view, old: e.old})
		if t.counts == nil {
			c := t.s.counts.clone() // Apply holds applyMu: nothing else writes s.counts
			t.counts = &c
		}
		if e.old != nil {
			t.counts.add(e.old, -1)
		}
		t.counts.add(view, 1)
	}
	if t.counts != nil {
		if err := t.b.Set(keyCounts, t.counts.encode(), nil); err != nil {
			return nil, err
		}
	}
	var cp [8]byte
	binary.BigEndian.PutUint64(cp[:], checkpoint)
	if err := t.b.Set(keyCheckpoint, cp[:], nil); err != nil {
		return nil, err
	}
	return changed, nil
}

func (t *batchTx) reindex(old, cur []byte) error {
	if string(old) == string(cur) {
		return nil
	}
	if old != nil {
		if err := t.b.Delete(old, nil); err != nil {
			return err
		}
	}
	if cur != nil {
		return t.b.Set(cur, nil, nil)
	}
	return nil
}

func callKey(sid string) []byte { return append([]byte{prefixCall}, sid...) }

// timeKey is the index key of rec under prefix: complemented start time,
// then the SID.
func timeKey(prefix byte, rec *statev1.CallRecord) []byte {
	k := make([]byte, 0, 9+len(rec.GetCallSid()))
	k = append(k, prefix)
	k = binary.BigEndian.AppendUint64(k, ^uint64(rec.GetStartTime().AsTime().UnixNano()))
	return append(k, rec.GetCallSid()...)
}

// activeKey is rec's key in the active index, nil when view (rec's view)
// is not active.
func activeKey(rec *statev1.CallRecord, view *callledgerv1.Call) []byte {
	if !callstate.Active(view) {
		return nil
	}
	return timeKey(prefixActive, rec)
}

func getRecord(g getter, sid string) (*statev1.CallRecord, error) {
	v, closer, err := g.Get(callKey(sid))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sid, err)
	}
	defer closer.Close()
	rec := &statev1.CallRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode %s: %w", sid, err)
	}
	return rec, nil
}

// getView reads the view of one call; nil when the call is unknown.
func getView(g getter, sid string) (*callledgerv1.Call, error) {
	rec, err := getRecord(g, sid)
	if rec == nil || err != nil {
		return nil, err
	}
	return callstate.View(rec), nil
}
