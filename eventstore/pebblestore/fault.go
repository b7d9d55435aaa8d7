package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/pebblelog"
	"github.com/callledger/callledger/internal/privatefs"
)

// This file holds what the store does when its disk fails; the package
// documentation (Disk faults) says why.

// dbHealth is what Pebble's event listener tells the store about one of
// its databases: whether its flushes fail. Pebble retries a failed flush
// until it succeeds (paced by pebblevfs.Paced); meanwhile the store refuses appends
// and fails its readiness. Appends could go on into the WAL for a while, but
// once the memtables are full Pebble stalls every commit until a flush
// succeeds, with the committer (and every caller, and Close) waiting on
// the disk; refusing at once keeps answers prompt and honest.
type dbHealth struct {
	name string

	// failing mirrors flushErr != nil for the append path, which must not
	// take a lock per append.
	failing atomic.Bool

	mu       sync.Mutex
	flushErr error // the last flush failed with it; nil after a flush succeeds
	// flushFailures counts failed flushes since the database was opened,
	// so that an open can tell that its WAL recovery keeps failing.
	flushFailures int
	// changed is closed and replaced at every change, to wake waiters.
	changed chan struct{}
}

func newHealth(name string) *dbHealth {
	return &dbHealth{name: name, changed: make(chan struct{})}
}

// reset forgets what an earlier instance of the database reported.
func (h *dbHealth) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.flushErr, h.flushFailures = nil, 0
	h.failing.Store(false)
	h.changedLocked()
}

func (h *dbHealth) changedLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// failingErr returns why the database's flushes fail, or nil. (A failed
// compaction is only logged: Pebble may not pick it again, and writes go
// on meanwhile.)
func (h *dbHealth) failingErr() error {
	if !h.failing.Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.flushErr != nil {
		return fmt.Errorf("%s database: flushes to disk fail: %w", h.name, h.flushErr)
	}
	return nil
}

// watch returns the number of failed flushes and a channel closed at the
// next change.
func (h *dbHealth) watch() (flushFailures int, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.flushFailures, h.changed
}

// errEmptyTable is the error Pebble's FlushEnd carries for a flush that
// wrote no table, which is not a failure. Pebble does not export it.
const errEmptyTable = "pebble: empty table"

// listener returns the event listener of one database. Its callbacks may
// run with Pebble's mutex held: they only record and log.
func (s *Store) listener(h *dbHealth, log *slog.Logger) *pebble.EventListener {
	limited := func(level slog.Level, key, msg string, args ...any) {
		s.limit.Log(log, level, h.name+"/"+key, msg, args...)
	}
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			limited(slog.LevelError, "background", "pebble background error", errAttr(err))
		},
		FlushEnd: func(info pebble.FlushInfo) {
			h.mu.Lock()
			defer h.mu.Unlock()
			switch {
			case info.Err == nil || info.Err.Error() == errEmptyTable:
				if h.flushErr != nil {
					log.Info("flushes to disk succeed again")
				}
				h.flushErr = nil
			default:
				h.flushErr = info.Err
				h.flushFailures++
			}
			h.failing.Store(h.flushErr != nil)
			h.changedLocked()
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			limited(slog.LevelWarn, "stall", "pebble write stall", "reason", info.Reason)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			limited(slog.LevelWarn, "slow", "disk slow", "info", info.String())
		},
		// Pebble's default calls Fatalf, which would end the process at the
		// first bad block read; the read that met it fails with the error.
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			limited(slog.LevelError, "corruption", "corrupt data on disk", "path", info.Path, errAttr(info.Details))
		},
	}
}

// probeName is the file the write probe writes in the store directory.
// Pebble ignores files whose names it does not know.
const probeName = "write-probe"

// probeSize is what the probe writes: a disk with less room than this is
// full for the store's purposes (a flush writes tables of megabytes).
const probeSize = 1 << 20

var errProbe = errors.New("the disk failed a write check")

// probe checks that dir's disk takes a write and a sync now, so that a
// store on a full or failing disk does not enter Pebble's open (which
// waits for its WAL recovery to be flushed, however often that fails).
func probe(fs vfs.FS, dir string) error {
	name := fs.PathJoin(dir, probeName)
	// The filesystem's errors name the operation and the file.
	fail := func(err error) error {
		_ = fs.Remove(name)
		return fmt.Errorf("%w: %w", errProbe, err)
	}
	if err := fs.MkdirAll(fs.PathJoin(dir, indexDir), privatefs.DirMode); err != nil {
		return fail(err)
	}
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fail(err)
	}
	buf := make([]byte, 64<<10)
	for n := 0; n < probeSize; n += len(buf) {
		if _, err := f.Write(buf); err != nil {
			_ = f.Close()
			return fail(err)
		}
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := fs.Remove(name); err != nil {
		return fail(err)
	}
	return nil
}

// diskFault reports an error a disk that heals (space freed, a device
// replaced, a filesystem remounted) would not give again: worth retrying.
func diskFault(err error) bool {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return errors.Is(err, errProbe) || errors.Is(err, errRecoveryFlush) || pebblelog.IsFatal(err)
}

// errRecoveryFlush reports an open whose WAL recovery could not be written
// to tables; the open is abandoned (see openDBs).
var errRecoveryFlush = errors.New("recovering the log from its WAL: the flush fails")

// fail marks the store broken after a failed write: appends are refused
// and the committer reopens the databases (see recover).
func (s *Store) fail(err error) {
	s.faultMu.Lock()
	s.fault, s.recoverErr = err, nil
	s.faultMu.Unlock()
	s.failures.Add(1)
	s.broken.Store(true)
}

// brokenErr is the error of appends refused while the store is broken.
func (s *Store) brokenErr() error {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	msg := "a write failed; recovering"
	if s.recoverErr != nil {
		return fmt.Errorf("%s (the last attempt failed: %w): %w: %w", msg, s.recoverErr, eventstore.ErrUnavailable, s.fault)
	}
	return fmt.Errorf("%s: %w: %w", msg, eventstore.ErrUnavailable, s.fault)
}

// unavailable returns why the store cannot take appends now, nil when it
// can: it is broken, or a database's flushes fail (see dbHealth).
func (s *Store) unavailable() error {
	if s.broken.Load() {
		return s.brokenErr()
	}
	for _, h := range s.health {
		if err := h.failingErr(); err != nil {
			return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
		}
	}
	return nil
}

// retryWait is the wait before retry number n (from 1) to open or recover:
// opts.retryWait doubled n-1 times, up to 30 times it.
func (o Options) retryWaitFor(n int) time.Duration {
	return min(o.retryWait<<min(n-1, 16), 30*o.retryWait)
}

// errAttr logs err by its message: slog formats errors with %+v, which
// prints the stack traces Pebble's errors carry.
func errAttr(err error) slog.Attr {
	return slog.String("err", err.Error())
}
