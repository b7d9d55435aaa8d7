package callstore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/pebblelog"
	"github.com/callledger/callledger/internal/ratelog"
)

// ErrCorrupt: the read model's files are damaged (a block failed its
// checksum) or its database failed a write; it answers nothing more and
// must be rebuilt from the ledger (callversions does so on its own).
var ErrCorrupt = errors.New("call-state read model corrupt or unusable; it is rebuilt from the ledger")

// damage records that a read model was found corrupt or unusable. Pebble's
// default reaction to a corrupt block is Fatalf, which would end the whole
// process, webhook ingest included, for a read model that can be rebuilt:
// its event listener records the damage instead, and the read that met it
// fails.
type damage struct {
	onCorrupt func(error)
	err       atomic.Pointer[error]
	once      sync.Once
}

// mark records cause, once, and tells onCorrupt.
func (d *damage) mark(cause error) {
	d.once.Do(func() {
		err := fmt.Errorf("%w: %w", ErrCorrupt, cause)
		d.err.Store(&err)
		if d.onCorrupt != nil {
			d.onCorrupt(err)
		}
	})
}

// listener is the read model's Pebble event listener: corruption marks the
// damage; background errors (a failing flush, retried by Pebble and paced
// by pebblevfs.Paced) are logged at most once per interval.
func (d *damage) listener(log *slog.Logger) *pebble.EventListener {
	limit := ratelog.NewLimiter(pebblelog.DefaultInterval)
	return &pebble.EventListener{
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			d.mark(fmt.Errorf("%s: %s", info.Path, info.Details.Error()))
		},
		BackgroundError: func(err error) {
			limit.Log(log, slog.LevelError, "background", "read model: pebble background error", "err", err.Error())
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			limit.Log(log, slog.LevelWarn, "stall", "read model: pebble write stall", "reason", info.Reason)
		},
	}
}

// Corrupt returns nil while the read model is sound, and an error wrapping
// ErrCorrupt once it was found corrupt or unusable.
func (s *Store) Corrupt() error {
	if p := s.damage.err.Load(); p != nil {
		return *p
	}
	return nil
}

// check turns a corruption (or a write Pebble cannot recover from) met by
// a read or an Apply into ErrCorrupt, and marks the read model damaged.
func (s *Store) check(err *error) {
	switch e := *err; {
	case e == nil, errors.Is(e, ErrCorrupt):
	case pebble.IsCorruptionError(e), pebblelog.IsFatal(e):
		s.damage.mark(e)
		*err = fmt.Errorf("%w: %w", ErrCorrupt, e)
	}
}

// Flush writes the read model's memtables to tables (tests that damage a
// table need one on disk).
func (s *Store) Flush() error {
	done, err := s.reading()
	if err != nil {
		return err
	}
	defer done()
	return s.db.Flush()
}

// MarkCorrupt declares the read model unusable, as if a corruption had
// been met: a manager does so for the empty read model it serves in place
// of one it could not open, until the rebuild replaces it.
func (s *Store) MarkCorrupt(cause error) { s.damage.mark(cause) }

// Backup writes a consistent copy of the read model into dir, which
// must not exist (Pebble's checkpoint: tables hard-linked, the WAL
// copied), and returns the position the copy has applied. A corrupt read
// model refuses with ErrCorrupt.
func (s *Store) Backup(dir string) (_ eventstore.Position, err error) {
	defer s.check(&err)
	done, err := s.reading()
	if err != nil {
		return 0, err
	}
	defer done()
	// The applied position can only grow while the copy is made: the copy
	// holds at least this much.
	pos := eventstore.Position(s.applied.Load())
	if err := pebblelog.Catch(func() error { return s.db.Checkpoint(dir, pebble.WithFlushedWAL()) }); err != nil {
		return 0, fmt.Errorf("checkpoint the read model to %s: %w", dir, err)
	}
	return pos, nil
}
