package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/callledger/callledger/eventstore"
)

var _ eventstore.Store = (*Store)(nil)

// Options tunes a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's and Pebble's messages (Pebble's
	// informational chatter at Debug). Default: slog.Default().
	Logger *slog.Logger
	// QueueSize bounds the appends waiting for the committer; when it is
	// full, Append waits (until its context ends), which is the
	// backpressure a webhook turns into 503. Default: 4096.
	QueueSize int
	// MaxGroupAppends bounds the appends written by one group commit, which
	// bounds the latency and memory of a single fsync. Default: 1024.
	MaxGroupAppends int
	// MaxAppendBytes bounds the payload (types, data and metadata) of one
	// append; larger appends are refused with ErrInvalidArgument so that
	// one caller cannot stall every other caller's group. Default: 16 MiB.
	MaxAppendBytes int
	// SubscriptionBatchSize bounds the events of one subscription batch.
	// Default: 512.
	SubscriptionBatchSize int
	// StreamCacheSize bounds the streams whose head revision and event IDs
	// the committer keeps in memory, so that appends to recently written
	// streams (a call's webhooks arrive within minutes) need no index
	// lookup. Default: 100,000 (a few tens of MiB for call streams).
	StreamCacheSize int
	// Pebble, when set, may adjust the options of the store's two Pebble
	// databases before they open (memtable size, compaction, …) without
	// this package growing a knob for each; db is "log" or "index". It
	// must not change the comparer, the merger, the block cache or
	// DisableWAL.
	Pebble func(db string, o *pebble.Options)
	// OnCommit, when set, is called by the committer after each group
	// commit that wrote to the log, so metrics can see batch sizes and
	// fsync latency without a lock on the write path. It runs on the
	// committer goroutine: it must be quick and must not call the store.
	OnCommit func(CommitInfo)

	// Test hooks, set only by this package's tests.
	beforeGroup  func()                    // called by the committer before it processes a group
	commit       func(*pebble.Batch) error // replaces batch.Commit(pebble.Sync) of the log
	scanIDs      int                       // replaces the constant scanIDs when > 0
	reindexBatch int                       // events per batch when re-indexing; default 4096
	afterRebuild func(applied uint64)      // called after each batch of a re-index
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MaxGroupAppends <= 0 {
		o.MaxGroupAppends = 1024
	}
	if o.MaxAppendBytes <= 0 {
		o.MaxAppendBytes = 16 << 20
	}
	if o.SubscriptionBatchSize <= 0 {
		o.SubscriptionBatchSize = 512
	}
	if o.StreamCacheSize <= 0 {
		o.StreamCacheSize = 100_000
	}
	if o.scanIDs <= 0 {
		o.scanIDs = scanIDs
	}
	if o.reindexBatch <= 0 {
		o.reindexBatch = 4096
	}
	return o
}

// Stats are cumulative counters of the write path, for metrics and for
// judging how well group commit amortizes fsyncs.
type Stats struct {
	// Commits counts group commits that wrote to disk (one fsync each).
	Commits uint64
	// Appends counts appends processed, successful or not.
	Appends uint64
	// Events counts events written (duplicates excluded).
	Events uint64
}

// CommitInfo describes one durable group commit, for Options.OnCommit.
type CommitInfo struct {
	// Appends is the number of appends the group processed.
	Appends int
	// Events is the number of events it wrote (duplicates excluded).
	Events int
	// Duration is the time spent writing and syncing the log batch.
	Duration time.Duration
}

// Store is the Pebble-backed event store. It is safe for concurrent use.
type Store struct {
	fsCloser io.Closer
	db       *pebble.DB // the log: events by position, synced at every commit
	index    *pebble.DB // stream and dedup indexes, rebuilt from the log on Open
	log      *slog.Logger
	opts     Options

	// sendMu orders Close against Appends that are handing a request to the
	// committer, so that no request is ever sent on a closed channel and
	// every request sent before Close is processed.
	sendMu  sync.RWMutex
	closing bool
	reqs    chan *appendReq
	done    chan struct{} // closed when the committer has exited

	// broken is set when a commit failed; appends are then refused.
	broken atomic.Bool

	// head is the position of the last committed event. It is written only
	// by the committer, under notifyMu, after fsync.
	head atomic.Uint64
	// notifyMu guards notify and notifyClosed. notify is closed and replaced
	// after each commit; at Close it is closed for good.
	notifyMu     sync.Mutex
	notify       chan struct{}
	notifyClosed bool

	// dbMu keeps readers and the databases' Close apart: Pebble panics on
	// use after Close, so readers hold the read side while they touch them.
	dbMu     sync.RWMutex
	dbClosed bool

	closeOnce sync.Once
	closeErr  error

	commits, appends, events atomic.Uint64
}

// ErrLocked reports a store directory that is already open: by a running
// server, another command, or this process. Pebble allows one opener.
var ErrLocked = errors.New("pebblestore: directory in use by another process")

// Open opens (creating it if needed) the store in dir. Only one Store may
// have a directory open at a time; Pebble's lock file enforces it.
//
// The log database lives in dir and the index database in dir/index. Open
// brings the index up to date with the log before it returns (after a crash
// the index may lack the last events; see the package documentation).
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	log := opts.Logger.With("component", "pebblestore")
	fs, fsCloser := diskFS(opts, log)
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref() // each database holds its own reference

	db, err := pebble.Open(dir, logOptions(opts, log, fs, cache))
	if err != nil {
		_ = fsCloser.Close() // stops the disk-health goroutine; it has nothing to report
		if errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held by current process") {
			// Pebble's LOCK file is held, by another process (flock fails)
			// or by this one (Pebble's own check, which has no sentinel).
			return nil, fmt.Errorf("open event store in %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open event store in %s: %w", dir, err)
	}
	fail := func(err error, dbs ...*pebble.DB) (*Store, error) {
		for _, d := range dbs {
			if cerr := d.Close(); cerr != nil {
				log.Error("close pebble after a failed open", "dir", dir, "err", cerr)
			}
		}
		_ = fsCloser.Close()
		return nil, fmt.Errorf("open event store in %s: %w", dir, err)
	}
	head, err := prepare(db)
	if err != nil {
		return fail(err, db)
	}
	index, err := pebble.Open(filepath.Join(dir, indexDir), indexOptions(opts, log, fs, cache))
	if err != nil {
		return fail(fmt.Errorf("open index: %w", err), db)
	}
	if opts.scanIDs, err = catchUpIndex(db, index, head, opts, log); err != nil {
		return fail(err, index, db)
	}
	s := &Store{
		fsCloser: fsCloser,
		db:       db,
		index:    index,
		log:      log,
		opts:     opts,
		reqs:     make(chan *appendReq, opts.QueueSize),
		done:     make(chan struct{}),
		notify:   make(chan struct{}),
	}
	s.head.Store(head)
	go s.run()
	log.Debug("event store open", "dir", dir, "head", head)
	return s, nil
}

// indexDir is the index database's directory inside the store directory.
const indexDir = "index"

// cacheSize is the block cache the two databases share. Pebble charges
// memtables against it, so it must be well above their sum or it caches
// nothing.
const cacheSize = 256 << 20

// diskFS wraps the default filesystem so that writes (fsyncs above all)
// that hang are reported, which would otherwise show only as appends
// timing out. The store closes the returned closer after both databases
// (Pebble only closes the wrapper it makes itself).
func diskFS(opts Options, log *slog.Logger) (vfs.FS, io.Closer) {
	listener := eventListener(log)
	return vfs.WithDiskHealthChecks(vfs.Default, 5*time.Second, nil, func(info vfs.DiskSlowInfo) {
		listener.DiskSlow(info)
	})
}

func eventListener(log *slog.Logger) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			log.Error("pebble background error", "err", err)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			log.Warn("disk slow", "info", info.String())
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			log.Warn("pebble write stall", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			log.Info("pebble write stall ended")
		},
	}
}

// logOptions are the log database's options. Its keys are written in
// increasing order, so flushed tables never overlap and Pebble moves them
// down the LSM without rewriting them: the log is written twice (WAL and
// flush) and compacted never. Nothing reads it by point lookups, so its
// tables carry no Bloom filters.
func logOptions(opts Options, log *slog.Logger, fs vfs.FS, cache *pebble.Cache) *pebble.Options {
	dbLog := log.With("component", "pebble", "db", "log")
	po := &pebble.Options{
		Logger:             pebbleLogger{log: dbLog},
		EventListener:      eventListener(dbLog),
		FormatMajorVersion: pebble.FormatNewest,
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       32 << 20,
	}
	// One table per flush: the log's tables never overlap, so Pebble only
	// ever moves them, and fewer, larger tables make fewer moves.
	po.TargetFileSizes[0] = 64 << 20
	// MinLZ on amd64 (Snappy elsewhere): it compresses webhook payloads
	// about as well as Snappy for less CPU, at flush and at read.
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	// 32 KiB data blocks: the log is read mostly in long scans (catch-up,
	// rebuilds), where each 4 KiB block (3–4 events) cost an allocation, a
	// checksum and a decompression. Measured on a 1M-event ledger: rebuilds
	// take 2.5 µs less CPU per event and the tables 40 % less disk. A
	// point read of one event decompresses the larger block; history reads
	// are rare next to scans.
	for i := range po.Levels {
		po.Levels[i].BlockSize = 32 << 10
	}
	if opts.Pebble != nil {
		opts.Pebble("log", po)
	}
	po.FS, po.Cache = fs, cache
	return po
}

// indexOptions are the index database's options. It has no WAL: the log is
// the record of every commit, and Open re-indexes whatever the index lost
// in a crash (at most its memtables), so the index never costs an fsync or
// a WAL write. Dedup and head lookups are point gets, mostly of keys that
// do not exist (new calls); Bloom filters answer those without reading
// blocks.
func indexOptions(opts Options, log *slog.Logger, fs vfs.FS, cache *pebble.Cache) *pebble.Options {
	dbLog := log.With("component", "pebble", "db", "index")
	po := &pebble.Options{
		Logger:             pebbleLogger{log: dbLog},
		EventListener:      eventListener(dbLog),
		FormatMajorVersion: pebble.FormatNewest,
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       16 << 20,
	}
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if opts.Pebble != nil {
		opts.Pebble("index", po)
	}
	po.FS, po.Cache, po.DisableWAL = fs, cache, true
	return po
}

// prepare checks the log's layout version (writing it in a new store) and
// returns the position of the last event.
func prepare(db *pebble.DB) (uint64, error) {
	version, err := getVersion(db, keyFormat)
	if err != nil {
		return 0, err
	}
	switch version {
	case formatVersion:
	case -1:
		if err := db.Set([]byte(keyFormat), []byte{formatVersion}, pebble.Sync); err != nil {
			return 0, fmt.Errorf("write layout version: %w", err)
		}
	default:
		return 0, fmt.Errorf("layout version %d, want %d: %w", version, formatVersion, ErrCorrupt)
	}

	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixEvent},
		UpperBound: []byte{prefixEvent + 1},
	})
	if err != nil {
		return 0, fmt.Errorf("recover head: %w", err)
	}
	var head uint64
	if it.Last() {
		head, err = eventKeyPos(it.Key())
		if err == nil {
			var v []byte
			if v, err = it.ValueAndErr(); err == nil {
				var r record
				if err = decodeRecord(v, &r); err != nil {
					err = fmt.Errorf("event at position %d: %w", head, err)
				}
			}
		}
	}
	if err == nil {
		err = it.Error()
	}
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("recover head: %w", err)
	}
	return head, nil
}

// Stats returns the write-path counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Appends: s.appends.Load(), Events: s.events.Load()}
}

// Head returns the position of the last committed event.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.dbClosed {
		return 0, fmt.Errorf("head: %w", errClosed)
	}
	return eventstore.Position(s.head.Load()), nil
}

var (
	errClosed = fmt.Errorf("store closed: %w", eventstore.ErrUnavailable)
	errBroken = fmt.Errorf("store stopped writing after a failed commit; reopen it: %w", eventstore.ErrUnavailable)
)

// Close stops accepting appends, commits and acknowledges the ones already
// queued, and closes the database. Calling it again returns the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.sendMu.Lock()
		s.closing = true
		close(s.reqs)
		s.sendMu.Unlock()
		<-s.done

		s.notifyMu.Lock()
		s.notifyClosed = true
		close(s.notify)
		s.notifyMu.Unlock()

		s.dbMu.Lock()
		s.dbClosed = true
		// The index has no WAL: flush it so that the next Open need not
		// re-index. Without the flush nothing is lost, Open just works
		// longer, so a store that stopped writing after a failed commit
		// skips it.
		var err error
		if !s.broken.Load() {
			if err = s.index.Flush(); err != nil {
				err = fmt.Errorf("flush index: %w", err)
			}
		}
		if cerr := s.index.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close index: %w", cerr)
		}
		if cerr := s.db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close log: %w", cerr)
		}
		s.dbMu.Unlock()
		if cerr := s.fsCloser.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("close event store: %w", err)
		}
	})
	return s.closeErr
}

// snapshot returns the committed head, the channel that will be closed at
// the next commit, and whether the store is closed, all consistent.
func (s *Store) snapshot() (head uint64, wake <-chan struct{}, closed bool) {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.head.Load(), s.notify, s.notifyClosed
}

// publish makes a commit visible: readers may now read up to head.
func (s *Store) publish(head uint64) {
	s.notifyMu.Lock()
	s.head.Store(head)
	close(s.notify)
	s.notify = make(chan struct{})
	s.notifyMu.Unlock()
}

// getVersion reads a one-byte layout version; -1 when key is absent.
func getVersion(db *pebble.DB, key string) (int, error) {
	v, closer, err := db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read layout version: %w", err)
	}
	version := -2
	if len(v) == 1 {
		version = int(v[0])
	}
	got := fmt.Sprintf("%x", v)
	if err := closer.Close(); err != nil {
		return 0, fmt.Errorf("read layout version: %w", err)
	}
	if version < 0 {
		return 0, fmt.Errorf("layout version %s: %w", got, ErrCorrupt)
	}
	return version, nil
}

// pebbleLogger routes Pebble's logging to slog, informational messages at
// Debug so that a healthy store is quiet.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

// Fatalf must not return: Pebble calls it when continuing would damage
// data. We log, then panic so that the stack shows where.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("pebble fatal error", "msg", msg)
	panic("pebble: " + msg)
}
