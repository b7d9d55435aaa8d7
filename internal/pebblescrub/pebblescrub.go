// Package pebblescrub forces deleted data out of every file of a Pebble
// database, so that an erasure is physical and not only logical.
//
// A deleted Pebble key keeps its value in older SSTs until a compaction
// drops it, in the WAL that recorded it, and in recycled WAL files: Pebble
// reuses an obsolete WAL by renaming it and writing over it from the start,
// so the tail of an old WAL can survive in a newer file for the life of the
// database (pebble v2 wal/standalone_manager.go). Recycling cannot be turned
// off from outside (only an unexported Cleaner interface does), so a Scrubber
// gives Pebble a file system whose ReuseForWrite removes the old file and
// creates a new one, and Scrub flushes, compacts the deleted ranges, removes
// the obsolete WAL files waiting for reuse and waits until the obsolete SSTs
// are gone. docs/PRIVACY.md §5 has the reading of Pebble this rests on.
package pebblescrub

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Scrubber scrubs one Pebble database. Make it with New before opening the
// database, with the options it was given.
type Scrubber struct {
	dir string
	fs  vfs.FS

	mu sync.Mutex
	// lastWAL is the highest WAL number Pebble has created.
	lastWAL uint64
	// deleted is closed, and replaced, whenever Pebble deletes a table.
	deleted chan struct{}
}

// New returns a Scrubber for the database in dir and sets up opts for it:
// a file system that never reuses a WAL file's old bytes, deletion pacing
// off (obsolete tables are deleted as soon as they can be), and an event
// listener, teed with any opts already has. The WAL must be in dir (no
// WALDir, no WAL failover).
func New(dir string, opts *pebble.Options) *Scrubber {
	base := opts.FS
	if base == nil {
		base = vfs.Default
	}
	s := &Scrubber{dir: dir, fs: noReuseFS{base}, deleted: make(chan struct{})}
	opts.FS = s.fs
	opts.TargetByteDeletionRate = 0
	l := pebble.EventListener{
		WALCreated: func(info pebble.WALCreateInfo) {
			s.mu.Lock()
			s.lastWAL = max(s.lastWAL, uint64(info.FileNum))
			s.mu.Unlock()
		},
		TableDeleted: func(pebble.TableDeleteInfo) { s.signalDeleted() },
	}
	if opts.EventListener != nil {
		l = pebble.TeeEventListener(*opts.EventListener, l)
	}
	opts.EventListener = &l
	return s
}

func (s *Scrubber) signalDeleted() {
	s.mu.Lock()
	close(s.deleted)
	s.deleted = make(chan struct{})
	s.mu.Unlock()
}

// pollEvery bounds how long Scrub waits between looks at the directory
// when no table deletion is signalled (a table held by an open iterator is
// deleted when the iterator closes, which may signal nothing new).
const pollEvery = 20 * time.Millisecond

// Scrub makes what was deleted from ranges before the call physically
// absent from the database's files. The deletions must be durable (written
// with pebble.Sync) before Scrub is called. ranges bound the deleted keys,
// End inclusive; Scrub compacts each. Writes may go on meanwhile; an
// iterator or snapshot held open across the call delays its return.
func (s *Scrubber) Scrub(ctx context.Context, db *pebble.DB, ranges []pebble.KeyRange) error {
	s.mu.Lock()
	lastWAL := s.lastWAL
	s.mu.Unlock()
	if lastWAL == 0 {
		return errors.New("scrub: the database was not opened with the scrubber's options")
	}
	// Flush rotates the WAL even when the memtable is empty: once it
	// returns, every WAL up to lastWAL is obsolete (pebble DB.AsyncFlush).
	if err := db.Flush(); err != nil {
		return fmt.Errorf("scrub: flush: %w", err)
	}
	for _, r := range ranges {
		if err := db.Compact(ctx, r.Start, r.End, false); err != nil {
			return fmt.Errorf("scrub: compact: %w", err)
		}
	}
	if err := s.removeObsoleteWALs(lastWAL); err != nil {
		return err
	}
	return s.waitObsoleteTables(ctx, db)
}

// removeObsoleteWALs removes the WAL files numbered up to last that are
// still on disk: obsolete, and held by Pebble for reuse. Pebble tolerates
// their absence: deleting a missing file is not an error to it, and
// noReuseFS creates a new file when the one to reuse is gone.
func (s *Scrubber) removeObsoleteWALs(last uint64) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("scrub: %w", err)
	}
	removed := false
	for _, e := range entries {
		num, ok := fileNum(e.Name(), ".log")
		if !ok || num > last {
			continue
		}
		if err := s.fs.Remove(filepath.Join(s.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("scrub: remove obsolete WAL: %w", err)
		}
		removed = true
	}
	if !removed {
		return nil
	}
	d, err := s.fs.OpenDir(s.dir)
	if err != nil {
		return fmt.Errorf("scrub: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("scrub: sync directory: %w", err)
	}
	return nil
}

// waitObsoleteTables waits until every SST on disk that existed when it
// was called is live or gone. Pebble deletes obsolete tables on a
// goroutine of its own; a table written after the call began (a
// compaction's output) may be numbered below one that existed, so the set
// is fixed by number: below the highest number on disk at the start.
func (s *Scrubber) waitObsoleteTables(ctx context.Context, db *pebble.DB) error {
	limit, err := s.maxTableNum()
	if err != nil {
		return err
	}
	for {
		s.mu.Lock()
		deleted := s.deleted
		s.mu.Unlock()
		pending, err := s.pendingTables(db, limit)
		if err != nil {
			return err
		}
		if pending == 0 {
			return nil
		}
		t := time.NewTimer(pollEvery)
		select {
		case <-deleted:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("scrub: %d obsolete tables not deleted yet: %w", pending, ctx.Err())
		}
		t.Stop()
	}
}

func (s *Scrubber) maxTableNum() (uint64, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("scrub: %w", err)
	}
	var m uint64
	for _, e := range entries {
		if n, ok := fileNum(e.Name(), ".sst"); ok {
			m = max(m, n)
		}
	}
	return m, nil
}

// pendingTables counts the SSTs on disk numbered up to limit that are not
// backing a live table.
func (s *Scrubber) pendingTables(db *pebble.DB, limit uint64) (int, error) {
	levels, err := db.SSTables()
	if err != nil {
		return 0, fmt.Errorf("scrub: list tables: %w", err)
	}
	live := map[uint64]bool{}
	for _, level := range levels {
		for _, t := range level {
			live[uint64(t.BackingSSTNum)] = true
		}
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("scrub: %w", err)
	}
	pending := 0
	for _, e := range entries {
		if n, ok := fileNum(e.Name(), ".sst"); ok && n <= limit && !live[n] {
			pending++
		}
	}
	return pending, nil
}

// fileNum parses Pebble's file names: "000123.sst", "000123.log", and a
// failover WAL segment "000123-001.log".
func fileNum(name, ext string) (uint64, bool) {
	stem, ok := strings.CutSuffix(name, ext)
	if !ok {
		return 0, false
	}
	stem, _, _ = strings.Cut(stem, "-")
	n, err := strconv.ParseUint(stem, 10, 64)
	return n, err == nil
}

// noReuseFS is a file system on which reusing a file for writing removes
// it and creates the new one, which ReuseForWrite's contract allows: Pebble
// stats the new file for its size rather than assume the old one's.
type noReuseFS struct{ vfs.FS }

func (f noReuseFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err := f.FS.Remove(oldname); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return f.FS.Create(newname, category)
}
