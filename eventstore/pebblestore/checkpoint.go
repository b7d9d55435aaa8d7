package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/pebblelog"
)

// Checkpoint writes a consistent copy of the store, both databases, into
// dir, which must not exist, while appends go on: Pebble's checkpoints
// hard-link the tables (copying them across filesystems) and copy the
// WAL. The index is copied first, then the log, so the copy's index never
// covers more than its log; Open re-indexes what the copy's log holds
// beyond it, as after a crash. Every event committed before Checkpoint was
// called is in the copy; it returns the head at that moment. A store that
// is broken or recovering (see Disk faults) refuses with ErrUnavailable.
func (s *Store) Checkpoint(ctx context.Context, dir string) (eventstore.Position, error) {
	fs := s.probeFS
	if _, err := fs.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		if err == nil {
			err = os.ErrExist
		}
		return 0, fmt.Errorf("checkpoint to %s: %w", dir, err)
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	defer release()
	if err := s.unavailable(); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	head := eventstore.Position(s.head.Load())
	index := dir + ".index.tmp"
	_ = fs.RemoveAll(index)
	fail := func(err error) (eventstore.Position, error) {
		_ = fs.RemoveAll(index)
		_ = fs.RemoveAll(dir)
		return 0, fmt.Errorf("checkpoint to %s: %w", dir, err)
	}
	if err := pebblelog.Catch(func() error { return s.index.Checkpoint(index) }); err != nil {
		return fail(fmt.Errorf("index: %w", err))
	}
	if err := pebblelog.Catch(func() error { return s.db.Checkpoint(dir) }); err != nil {
		return fail(fmt.Errorf("log: %w", err))
	}
	if err := fs.Rename(index, fs.PathJoin(dir, indexDir)); err != nil {
		return fail(err)
	}
	d, err := fs.OpenDir(dir)
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fail(fmt.Errorf("sync: %w", err))
	}
	return head, nil
}
