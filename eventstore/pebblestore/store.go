package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// Pebble, when set, may adjust Pebble's options before the database
	// opens (cache size, memtable size, …) without this package growing a
	// knob for each. It must not change the comparer or merger. Pebble
	// charges memtables against the block cache: keep CacheSize several
	// times MemTableSize (defaults: 128 MiB and 16 MiB).
	Pebble func(*pebble.Options)

	// Test hooks, set only by this package's tests.
	beforeGroup func()                    // called by the committer before it processes a group
	commit      func(*pebble.Batch) error // replaces batch.Commit(pebble.Sync)
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

// Store is the Pebble-backed event store. It is safe for concurrent use.
type Store struct {
	fsCloser io.Closer
	db       *pebble.DB
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

	// dbMu keeps readers and db.Close apart: Pebble panics on use after
	// Close, so readers hold the read side while they touch the db.
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
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	log := opts.Logger.With("component", "pebblestore")
	po, fsCloser := pebbleOptions(opts, log)
	db, err := pebble.Open(dir, po)
	if err != nil {
		_ = fsCloser.Close() // stops the disk-health goroutine; it has nothing to report
		if errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held by current process") {
			// Pebble's LOCK file is held, by another process (flock fails)
			// or by this one (Pebble's own check, which has no sentinel).
			return nil, fmt.Errorf("open event store in %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open event store in %s: %w", dir, err)
	}
	head, err := prepare(db)
	if err != nil {
		if cerr := db.Close(); cerr != nil {
			log.Error("close pebble after a failed open", "dir", dir, "err", cerr)
		}
		_ = fsCloser.Close()
		return nil, fmt.Errorf("open event store in %s: %w", dir, err)
	}
	s := &Store{
		fsCloser: fsCloser,
		db:       db,
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

// pebbleOptions returns Pebble's options and the closer of the
// disk-health-checking filesystem wrapper, which the store closes after the
// database (Pebble only closes the wrapper it makes itself).
func pebbleOptions(opts Options, log *slog.Logger) (*pebble.Options, io.Closer) {
	po := &pebble.Options{
		Logger:             pebbleLogger{log: log.With("component", "pebble")},
		FormatMajorVersion: pebble.FormatNewest,
		// Pebble charges memtables against the block cache, so the cache
		// must be well above the memtable size or it caches nothing.
		CacheSize:    128 << 20,
		MemTableSize: 16 << 20,
		EventListener: &pebble.EventListener{
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
		},
	}
	// Dedup and head lookups are point gets, mostly of keys that do not
	// exist (new calls); Bloom filters answer those without reading blocks.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	if opts.Pebble != nil {
		opts.Pebble(po)
	}
	if po.FS == nil {
		po.FS = vfs.Default
	}
	// Report writes (fsyncs above all) that hang, which would otherwise
	// show only as appends timing out.
	var closer io.Closer
	po.FS, closer = vfs.WithDiskHealthChecks(po.FS, 5*time.Second, nil, func(info vfs.DiskSlowInfo) {
		po.EventListener.DiskSlow(info)
	})
	return po, closer
}

// prepare checks the layout version (writing it in a new store) and
// returns the position of the last event.
func prepare(db *pebble.DB) (uint64, error) {
	v, closer, err := db.Get([]byte(keyFormat))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := db.Set([]byte(keyFormat), []byte{formatVersion}, pebble.Sync); err != nil {
			return 0, fmt.Errorf("write layout version: %w", err)
		}
	case err != nil:
		return 0, fmt.Errorf("read layout version: %w", err)
	default:
		ok := len(v) == 1 && v[0] == formatVersion
		got := fmt.Sprintf("%x", v)
		if err := closer.Close(); err != nil {
			return 0, fmt.Errorf("read layout version: %w", err)
		}
		if !ok {
			return 0, fmt.Errorf("layout version %s, want %d: %w", got, formatVersion, ErrCorrupt)
		}
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
		err := s.db.Close()
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
