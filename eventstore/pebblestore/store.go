package pebblestore

import (
	"cmp"
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
	"github.com/callledger/callledger/internal/pebblelog"
	"github.com/callledger/callledger/internal/pebblevfs"
	"github.com/callledger/callledger/internal/privatefs"
	"github.com/callledger/callledger/internal/ratelog"
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
	// must not change the comparer or the merger; the store sets the
	// filesystem, block cache, lock, logger, event listener and DisableWAL
	// after it.
	Pebble func(db string, o *pebble.Options)
	// OnCommit, when set, is called by the committer after each group
	// commit that wrote to the log, so metrics can see batch sizes and
	// fsync latency without a lock on the write path. It runs on the
	// committer goroutine: it must be quick and must not call the store.
	OnCommit func(CommitInfo)
	// FS is the filesystem the store lives on. Default: the operating
	// system's. Tests inject disk faults through it (Pebble's vfs/errorfs).
	FS vfs.FS
	// OpenAttempts bounds how often OpenContext tries a directory whose
	// disk fails (full, failing writes or syncs) before it gives up with an
	// error wrapping eventstore.ErrUnavailable, waiting 1 s, 2 s, 4 s, …
	// between tries. Negative: until its context ends. Default: 5. A store
	// that is open recovers from a failed write without a limit (see the
	// package documentation).
	OpenAttempts int
	// CacheSize is the block cache the log and its index share, in bytes.
	// Default: 256 MiB, for a server that reads recent events again and
	// again. A command that reads the log once from end to end (rebuild,
	// export) gains nothing from a large one, whose blocks, allocated
	// outside the Go heap, only add to its peak memory.
	CacheSize int64
	// BeforeSync, when set, is called for each group, while the committer
	// builds its batch, and the group is written to the log only once it
	// has returned; an error refuses the group's appends (ErrUnavailable)
	// with nothing written. It is the barrier of what the events depend
	// on, made durable first, once per group: the key store whose keys
	// sealed the events (keystore.Store.Sync). It must cover what was
	// written before the group's appends were queued, and must not call
	// the store.
	BeforeSync func() error

	// Test hooks, set only by this package's tests.
	beforeGroup  func()                    // called by the committer before it processes a group
	commit       func(*pebble.Batch) error // replaces batch.Commit(pebble.Sync) of the log
	scanIDs      int                       // replaces the constant scanIDs when > 0
	reindexBatch int                       // events per batch when re-indexing; default 4096
	afterRebuild func(applied uint64)      // called after each batch of a re-index
	retryWait    time.Duration             // first wait between tries to open or recover; default 1s
	logEvery     time.Duration             // repeated errors are logged once per logEvery; default pebblelog.DefaultInterval
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
	if o.FS == nil {
		o.FS = privatefs.Pebble(vfs.Default)
	}
	if o.OpenAttempts == 0 {
		o.OpenAttempts = 5
	}
	if o.retryWait <= 0 {
		o.retryWait = time.Second
	}
	if o.logEvery <= 0 {
		o.logEvery = pebblelog.DefaultInterval
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
	// Failures counts writes that failed and stopped the store's appends
	// until it recovered (see the package documentation).
	Failures uint64
	// Recoveries counts the reopens that ended such a stop.
	Recoveries uint64
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
	dir      string
	fs       vfs.FS // what Pebble sees: paced, checked for slow operations
	probeFS  vfs.FS // the same without the pacing, for the write probe
	fsCloser io.Closer
	// locks are the directory locks of the log and the index, held from
	// Open to Close, across reopens.
	locks  [2]*pebble.Lock
	health [2]*dbHealth // of the log and the index, fed by their event listeners
	log    *slog.Logger
	limit  *ratelog.Limiter // repeated errors of the store and its listeners
	opts   Options

	// sendMu orders Close against Appends that are handing a request to the
	// committer, so that no request is ever sent on a closed channel and
	// every request sent before Close is processed.
	sendMu  sync.RWMutex
	closing bool
	reqs    chan *appendReq
	stop    chan struct{} // closed when Close begins: ends a recovery
	done    chan struct{} // closed when the committer has exited

	// broken is set when a write failed; appends are then refused until
	// the committer has reopened the databases.
	broken atomic.Bool
	// faultMu guards fault, the write failure that broke the store, and
	// recoverErr, why the last attempt to recover failed.
	faultMu    sync.Mutex
	fault      error
	recoverErr error

	// head is the position of the last committed event. It is written only
	// by the committer, under notifyMu, after fsync.
	head atomic.Uint64
	// notifyMu guards notify and notifyClosed. notify is closed and replaced
	// after each commit; at Close it is closed for good.
	notifyMu     sync.Mutex
	notify       chan struct{}
	notifyClosed bool

	// dbMu keeps readers away from databases being closed: Pebble panics on
	// use after Close, so readers hold the read side while they touch db
	// and index (see acquire). The committer, which alone replaces them,
	// uses them without it.
	dbMu sync.RWMutex
	db   *pebble.DB // the log: events by position, synced at every commit
	// index holds the stream and dedup indexes, rebuilt from the log on
	// Open. db and index are nil while a recovery has them closed.
	index *pebble.DB
	// reopening, while a recovery reopens the databases, is closed when
	// it is done.
	reopening chan struct{}
	dbClosed  bool

	closeOnce sync.Once
	closeErr  error
	// slowAt is when the disk was last reported slow (an operation taking
	// over 5 s), in Unix nanoseconds.
	slowAt atomic.Int64

	commits, appends, events, failures, recoveries atomic.Uint64
}

// The store's two databases, as indexes of Store.locks and Store.health.
const (
	logDB = iota
	indexDB
)

// ErrLocked reports a store directory that is already open: by a running
// server, another command, or this process. Pebble allows one opener.
var ErrLocked = errors.New("pebblestore: directory in use by another process")

// Open is OpenContext without a context: it gives up on a failing disk
// after Options.OpenAttempts tries only.
func Open(dir string, opts Options) (*Store, error) {
	return OpenContext(context.Background(), dir, opts)
}

// OpenContext opens (creating it if needed) the store in dir. Only one
// Store may have a directory open at a time; Pebble's lock file enforces
// it.
//
// The log database lives in dir and the index database in dir/index.
// OpenContext brings the index up to date with the log before it returns
// (after a crash the index may lack the last events; see the package
// documentation). On a disk that is full or fails writes it tries again,
// up to Options.OpenAttempts times, logging the failure at most once per
// interval, and gives up early when ctx ends; the error then wraps
// eventstore.ErrUnavailable and says what the disk did.
func OpenContext(ctx context.Context, dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	log := opts.Logger.With("component", "pebblestore")
	s := &Store{
		dir:    dir,
		log:    log,
		limit:  ratelog.NewLimiter(opts.logEvery),
		opts:   opts,
		health: [2]*dbHealth{newHealth("log"), newHealth("index")},
		reqs:   make(chan *appendReq, opts.QueueSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		notify: make(chan struct{}),
	}
	s.diskFS()
	if err := s.lock(); err != nil {
		_ = s.fsCloser.Close()
		return nil, fmt.Errorf("open event store in %s: %w", dir, err)
	}
	var o opened
	var err error
	for attempt := 1; ; attempt++ {
		if err = probe(s.probeFS, dir); err == nil {
			o, err = s.openDBs(ctx, max(opts.OpenAttempts, 0))
		}
		if err == nil || !diskFault(err) {
			break
		}
		// An abandoned open holds the directory locks: no more tries.
		if errors.Is(err, errAbandoned) || (opts.OpenAttempts > 0 && attempt >= opts.OpenAttempts) {
			err = fmt.Errorf("the disk failed %d tries, giving up: %w: %w", attempt, eventstore.ErrUnavailable, err)
			break
		}
		wait := opts.retryWaitFor(attempt)
		s.limit.Log(log, slog.LevelWarn, "open", "event store cannot open yet; trying again",
			"dir", dir, "attempt", attempt, "retry_in", wait, errAttr(err))
		if err = sleep(ctx, wait); err != nil {
			break
		}
	}
	if err != nil {
		s.unlock()
		_ = s.fsCloser.Close()
		return nil, fmt.Errorf("open event store in %s: %w", dir, err)
	}
	s.db, s.index, s.opts.scanIDs = o.db, o.index, o.scan
	s.head.Store(o.head)
	go s.run()
	log.Debug("event store open", "dir", dir, "head", o.head)
	return s, nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lock takes the directory locks of both databases, for the store's life.
func (s *Store) lock() error {
	for i, dir := range []string{s.dir, filepath.Join(s.dir, indexDir)} {
		if err := s.probeFS.MkdirAll(dir, privatefs.DirMode); err != nil {
			s.unlock()
			return fmt.Errorf("create %s: %w", dir, err)
		}
		l, err := lockDir(s.probeFS, dir)
		if err != nil {
			s.unlock()
			return err
		}
		s.locks[i] = l
	}
	return nil
}

// isLockHeld reports an error of pebble.LockDirectory that says the lock
// is held: by another process (flock fails) or by this one (Pebble's own
// check, which has no sentinel).
func isLockHeld(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held by current process")
}

// unlock releases the store's hold on the directory locks. A database
// still open (one an abandoned open will close) holds them until it
// closes.
func (s *Store) unlock() {
	for i, l := range s.locks {
		if l != nil {
			if err := l.Close(); err != nil {
				s.log.Error("release directory lock", errAttr(err))
			}
			s.locks[i] = nil
		}
	}
}

// opened is what openDBs opens.
type opened struct {
	db, index *pebble.DB
	head      uint64
	scan      int
}

// close closes what was opened: after a failed or abandoned open, and the
// broken databases of a recovery.
func (o *opened) close(log *slog.Logger) {
	for _, db := range []*pebble.DB{o.index, o.db} {
		if db == nil {
			continue
		}
		if err := pebblelog.Catch(db.Close); err != nil {
			log.Warn("close pebble", errAttr(err))
		}
	}
	o.db, o.index = nil, nil
}

// errAbandoned marks an open given up while Pebble was still opening: it
// holds the directory locks until it ends, so nothing can try again.
var errAbandoned = errors.New("gave up waiting for pebble")

// openDBs opens the log, recovers its head, opens the index and brings it
// up to the log. Pebble's open cannot be interrupted: it waits until the
// log's WAL recovery is flushed to tables, retrying the flush as often as
// the disk fails it. So the open runs in a goroutine, which openDBs
// abandons when ctx ends, the store closes or, if maxFlushFailures > 0,
// that many flushes failed. An abandoned open closes what it opened once
// Pebble lets it; until then it holds the directory locks.
func (s *Store) openDBs(ctx context.Context, maxFlushFailures int) (opened, error) {
	for _, h := range s.health {
		h.reset()
	}
	type result struct {
		o   opened
		err error
	}
	res := make(chan result, 1)
	locks := s.locks // the goroutine may outlive the store's hold on them
	go func() {
		var o opened
		err := pebblelog.Catch(func() error { return s.openSync(&o, locks) })
		if err != nil {
			o.close(s.log)
		}
		res <- result{o, err}
	}()
	abandon := func(why error) (opened, error) {
		go func() {
			r := <-res
			r.o.close(s.log)
		}()
		return opened{}, fmt.Errorf("%w: %w", errAbandoned, why)
	}
	for {
		logFails, logChanged := s.health[logDB].watch()
		indexFails, indexChanged := s.health[indexDB].watch()
		if maxFlushFailures > 0 && logFails+indexFails >= maxFlushFailures {
			err := s.health[logDB].failingErr()
			if err == nil {
				err = s.health[indexDB].failingErr()
			}
			return abandon(fmt.Errorf("%w %d times: %w", errRecoveryFlush, logFails+indexFails, err))
		}
		select {
		case r := <-res:
			return r.o, r.err
		case <-ctx.Done():
			return abandon(ctx.Err())
		case <-s.stop:
			return abandon(errClosed)
		case <-logChanged:
		case <-indexChanged:
		}
	}
}

// openSync is the open of openDBs, filling o as it goes.
func (s *Store) openSync(o *opened, locks [2]*pebble.Lock) (err error) {
	cache := pebble.NewCache(s.blockCacheSize())
	defer cache.Unref() // each database holds its own reference
	if o.db, err = pebble.Open(s.dir, s.logOptions(cache, locks[logDB])); err != nil {
		return err
	}
	if o.head, err = prepare(o.db); err != nil {
		return err
	}
	if o.index, err = pebble.Open(filepath.Join(s.dir, indexDir), s.indexOptions(cache, locks[indexDB])); err != nil {
		return fmt.Errorf("open index: %w", err)
	}
	o.scan, err = catchUpIndex(o.db, o.index, o.head, s.opts, s.log)
	return err
}

// blockCacheSize is the block cache the store opens its databases with.
func (s *Store) blockCacheSize() int64 { return cmp.Or(s.opts.CacheSize, cacheSize) }

// indexDir is the index database's directory inside the store directory.
const indexDir = "index"

// cacheSize is the block cache the two databases share. Pebble charges
// memtables against it, so it must be well above their sum or it caches
// nothing.
const cacheSize = 256 << 20

// diskFS sets up the filesystem under the store: Options.FS, wrapped so
// that writes (fsyncs above all) that hang are reported, which would
// otherwise show only as appends timing out, and so that Pebble's retries
// after a failed write are paced (see pebblevfs.Paced). The store closes fsCloser
// after both databases (Pebble only closes the wrapper it makes itself).
func (s *Store) diskFS() {
	log := s.log.With("component", "pebble")
	s.probeFS, s.fsCloser = vfs.WithDiskHealthChecks(s.opts.FS, 5*time.Second, nil, func(info vfs.DiskSlowInfo) {
		s.slowAt.Store(time.Now().UnixNano())
		s.limit.Log(log, slog.LevelWarn, "disk slow", "disk slow", "info", info.String())
	})
	s.fs = pebblevfs.NewPaced(s.probeFS, nil)
}

// logOptions are the log database's options. Its keys are written in
// increasing order, so flushed tables never overlap and Pebble moves them
// down the LSM without rewriting them: the log is written twice (WAL and
// flush) and compacted never. Nothing reads it by point lookups, so its
// tables carry no Bloom filters.
func (s *Store) logOptions(cache *pebble.Cache, lock *pebble.Lock) *pebble.Options {
	dbLog := s.log.With("component", "pebble", "db", "log")
	po := baseLogOptions()
	if s.opts.Pebble != nil {
		s.opts.Pebble("log", po)
	}
	po.FS, po.Cache, po.Lock = s.fs, cache, lock
	po.Logger, po.EventListener = pebblelog.New(dbLog, s.opts.logEvery), s.listener(s.health[logDB], dbLog)
	return po
}

// baseLogOptions are the log database's own settings, which every writer
// of the log (the store, Rewrite) opens it with.
func baseLogOptions() *pebble.Options {
	po := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
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
	return po
}

// indexOptions are the index database's options. It has no WAL: the log is
// the record of every commit, and Open re-indexes whatever the index lost
// in a crash (at most its memtables), so the index never costs an fsync or
// a WAL write. Dedup and head lookups are point gets, mostly of keys that
// do not exist (new calls); Bloom filters answer those without reading
// blocks.
func (s *Store) indexOptions(cache *pebble.Cache, lock *pebble.Lock) *pebble.Options {
	dbLog := s.log.With("component", "pebble", "db", "index")
	po := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       16 << 20,
	}
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if s.opts.Pebble != nil {
		s.opts.Pebble("index", po)
	}
	po.FS, po.Cache, po.Lock, po.DisableWAL = s.fs, cache, lock, true
	po.Logger, po.EventListener = pebblelog.New(dbLog, s.opts.logEvery), s.listener(s.health[indexDB], dbLog)
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
	return Stats{
		Commits: s.commits.Load(), Appends: s.appends.Load(), Events: s.events.Load(),
		Failures: s.failures.Load(), Recoveries: s.recoveries.Load(),
	}
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

// Ping reports whether the store takes appends now, for readiness checks:
// nil when it does, otherwise an error wrapping eventstore.ErrUnavailable
// that says why (closed, recovering from a failed write, or a database
// whose flushes fail).
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	s.sendMu.RLock()
	closing := s.closing
	s.sendMu.RUnlock()
	if closing {
		return fmt.Errorf("ping: %w", errClosed)
	}
	if err := s.unavailable(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

var errClosed = fmt.Errorf("store closed: %w", eventstore.ErrUnavailable)

// acquire waits until the databases may be read and returns the function
// that ends the read. While a recovery reopens them it waits for it, or
// until ctx ends; after a recovery that failed they stay closed and reads
// fail with ErrUnavailable until one succeeds.
func (s *Store) acquire(ctx context.Context) (release func(), err error) {
	for {
		s.dbMu.RLock()
		switch {
		case s.dbClosed:
			s.dbMu.RUnlock()
			return nil, errClosed
		case s.db != nil:
			return s.dbMu.RUnlock, nil
		}
		wait := s.reopening
		s.dbMu.RUnlock()
		if wait == nil {
			return nil, fmt.Errorf("databases closed: %w", s.brokenErr())
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the store to reopen: %w: %w", eventstore.ErrUnavailable, ctx.Err())
		}
	}
}

// closeGrace is how long Close waits for a commit that a failing disk
// holds up before it gives up on closing the databases.
const closeGrace = 10 * time.Second

// Close stops accepting appends, commits and acknowledges the ones already
// queued, and closes the database. Calling it again returns the first
// call's result.
//
// While the disk fails or hangs, a commit in progress may wait for it
// (Pebble stalls writes until flushes succeed): Close then gives up after
// closeGrace and returns an error, leaving the databases to the end of the
// process.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.sendMu.Lock()
		s.closing = true
		close(s.reqs)
		close(s.stop)
		s.sendMu.Unlock()
		if err := s.waitCommitter(); err != nil {
			s.closeErr = fmt.Errorf("close event store: %w", err)
			return
		}

		s.notifyMu.Lock()
		s.notifyClosed = true
		close(s.notify)
		s.notifyMu.Unlock()

		s.dbMu.Lock()
		s.dbClosed = true
		db, index := s.db, s.index
		s.db, s.index = nil, nil
		s.dbMu.Unlock()
		// The index has no WAL: flush it so that the next Open need not
		// re-index. Without the flush nothing is lost, Open just works
		// longer, so a store whose writes fail skips it.
		var err error
		if index != nil {
			if s.unavailable() == nil {
				if err = pebblelog.Catch(index.Flush); err != nil {
					err = fmt.Errorf("flush index: %w", err)
				}
			}
			if cerr := pebblelog.Catch(index.Close); err == nil && cerr != nil {
				err = fmt.Errorf("close index: %w", cerr)
			}
		}
		if db != nil {
			if cerr := pebblelog.Catch(db.Close); err == nil && cerr != nil {
				err = fmt.Errorf("close log: %w", cerr)
			}
		}
		s.unlock()
		if cerr := s.fsCloser.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("close event store: %w", err)
		}
	})
	return s.closeErr
}

// waitCommitter waits for the committer to answer what is queued and exit.
// On a failing or hanging disk it waits closeGrace at most.
func (s *Store) waitCommitter() error {
	t := time.NewTicker(closeGrace)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return nil
		case <-t.C:
			err := s.unavailable()
			if err == nil && time.Since(time.Unix(0, s.slowAt.Load())) < closeGrace {
				err = errors.New("a disk operation has been hanging for over 5 s")
			}
			if err != nil {
				s.log.Error("a commit is stuck on the disk; leaving the event store open", errAttr(err))
				return fmt.Errorf("a commit is stuck on the disk: %w", err)
			}
		}
	}
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
