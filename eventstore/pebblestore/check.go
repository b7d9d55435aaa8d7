package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/uuid"

	"github.com/callledger/callledger/internal/pebblelog"
)

// Kinds of problem Check reports.
const (
	// ProblemOpen: a database cannot be opened (its MANIFEST or a WAL
	// that is not the last one is damaged); nothing else of it is checked.
	ProblemOpen = "open"
	// ProblemChecksum: a block of a table fails its checksum.
	ProblemChecksum = "checksum"
	// ProblemLevels: Pebble's consistency check of a database's levels
	// failed (keys out of order, sequence numbers inverted).
	ProblemLevels = "levels"
	// ProblemRead: reading the keys of a database failed part-way.
	ProblemRead = "read"
	// ProblemLayout: a layout version or setting is missing or unknown.
	ProblemLayout = "layout"
	// ProblemGap: positions are missing from the log.
	ProblemGap = "gap"
	// ProblemRecord: a key or an event record of the log does not decode.
	ProblemRecord = "record"
	// ProblemUnindexed: an event of the log lacks its stream or dedup
	// index entry.
	ProblemUnindexed = "unindexed"
	// ProblemMismatch: an index entry disagrees with the event it names.
	ProblemMismatch = "mismatch"
	// ProblemOrphan: the index holds an entry for an event the log lacks.
	ProblemOrphan = "orphan"
	// ProblemRevisions: a stream's revisions are not 0, 1, 2, ….
	ProblemRevisions = "revisions"
	// ProblemDuplicate: an event ID is in a stream twice.
	ProblemDuplicate = "duplicate"
	// ProblemIndexKey: an index key or value does not decode.
	ProblemIndexKey = "index-key"
)

// Report is what Check found in a store directory.
type Report struct {
	// Head is the position of the last event of the log, Events the
	// number of events it holds (Head, unless positions are missing).
	Head, Events uint64
	// Streams is the number of streams in the stream index.
	Streams uint64
	// Applied is the position up to which the index covers the log.
	Applied uint64
	// Tables is the number of tables whose every block was verified.
	Tables int
	// Problems holds the first problems of each kind, at most
	// CheckOptions.MaxPerKind of each, in the order found.
	Problems []Problem
	// Counts counts every problem found, by kind.
	Counts map[string]int
	// Notes are findings that are not problems (an index behind the log,
	// which Open brings up to date).
	Notes []string
}

// Problem is one thing wrong with a store.
type Problem struct {
	Kind   string
	Detail string
}

func (p Problem) String() string { return p.Kind + ": " + p.Detail }

// OK reports whether Check found no problem.
func (r *Report) OK() bool { return len(r.Counts) == 0 }

// Total is the number of problems found.
func (r *Report) Total() int {
	n := 0
	for _, c := range r.Counts {
		n += c
	}
	return n
}

// Kinds returns the kinds of problem found, sorted.
func (r *Report) Kinds() []string {
	kinds := make([]string, 0, len(r.Counts))
	for k := range r.Counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// CheckOptions tunes Check; the zero value is ready to use.
type CheckOptions struct {
	// FS is the filesystem of the store. Default: the operating system's.
	FS vfs.FS
	// Logger receives Pebble's messages. Default: discarded.
	Logger *slog.Logger
	// MaxPerKind bounds the problems of each kind the report lists (all
	// are counted). Default: 10.
	MaxPerKind int
}

// Check verifies the store in dir, which no process may hold open (it
// fails with ErrLocked otherwise), without changing it: both databases are
// opened read-only, so Pebble reads every WAL it would replay and the
// MANIFEST, checking their records' checksums; every block of every table
// is read and checked against its checksum; Pebble checks the consistency
// of the levels; then the log's positions must run 1, 2, 3, … without a
// gap and every record must decode, every event must have its stream index
// entry (and, from revision scanIDs on, its dedup entry) naming it, each
// stream's revisions must run 0, 1, 2, …, no event ID may be in a stream
// twice, and the index must name no event the log lacks. Events past the
// position the index covers are not problems: Open indexes them.
//
// An error means the check could not run; what it found wrong is in the
// report.
func Check(ctx context.Context, dir string, opts CheckOptions) (*Report, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxPerKind <= 0 {
		opts.MaxPerKind = 10
	}
	c := &checker{ctx: ctx, opts: opts, r: &Report{Counts: map[string]int{}}}
	desc, err := pebble.Peek(dir, opts.FS)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", dir, err)
	}
	if !desc.Exists {
		return nil, fmt.Errorf("check %s: no event store there", dir)
	}
	indexPath := filepath.Join(dir, indexDir)
	idesc, err := pebble.Peek(indexPath, opts.FS)
	hasIndex := err == nil && idesc.Exists

	logLock, err := lockDir(opts.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", dir, err)
	}
	defer logLock.Close()
	db := c.open("log", dir, logLock)
	if db != nil {
		defer c.close("log", db)
	}
	var index *pebble.DB
	if hasIndex {
		indexLock, err := lockDir(opts.FS, indexPath)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", indexPath, err)
		}
		defer indexLock.Close()
		if index = c.open("index", indexPath, indexLock); index != nil {
			defer c.close("index", index)
		}
	} else {
		c.note("no index database: Open rebuilds it from the log")
	}
	for _, d := range []struct {
		name, dir string
		db        *pebble.DB
	}{{"log", dir, db}, {"index", indexPath, index}} {
		if d.db == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("check %s: %w", dir, err)
		}
		if c.tables(d.name, d.dir, d.db) {
			var stats pebble.CheckLevelsStats
			if err := pebblelog.Catch(func() error { return d.db.CheckLevels(&stats) }); err != nil {
				c.add(ProblemLevels, "%s database: %v", d.name, err)
			}
		}
	}
	if index != nil {
		c.indexSettings(index)
	}
	if db != nil {
		c.log(db, index)
	}
	if index != nil && db != nil {
		if c.logRead {
			c.index(db, index)
		} else {
			c.note("the index was not checked against the log, which could not be read to its end")
		}
	}
	c.r.Applied = c.applied
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("check %s: %w", dir, err)
	}
	return c.r, nil
}

// lockDir takes the Pebble lock of dir, reporting ErrLocked when another
// process (or this one) holds it.
func lockDir(fs vfs.FS, dir string) (*pebble.Lock, error) {
	l, err := pebble.LockDirectory(dir, fs)
	if err != nil {
		if isLockHeld(err) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return l, nil
}

type checker struct {
	ctx  context.Context
	opts CheckOptions
	r    *Report

	applied uint64 // what the index covers
	logRead bool   // the walk of the log read it to its end
	scan    uint64 // the index's scanIDs
	key     []byte // scratch
}

func (c *checker) add(kind, format string, args ...any) {
	c.r.Counts[kind]++
	if c.r.Counts[kind] <= c.opts.MaxPerKind {
		c.r.Problems = append(c.r.Problems, Problem{Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
}

func (c *checker) note(format string, args ...any) {
	c.r.Notes = append(c.r.Notes, fmt.Sprintf(format, args...))
}

// options are read-only options under which Pebble reports a damaged
// block as an error of the read that met it, not through Fatalf.
func (c *checker) options(name string, lock *pebble.Lock) *pebble.Options {
	log := c.opts.Logger.With("component", "pebble", "db", name)
	po := &pebble.Options{
		ReadOnly: true,
		FS:       c.opts.FS,
		Lock:     lock,
		Logger:   pebblelog.New(log, 0),
		EventListener: &pebble.EventListener{
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				log.Debug("corrupt data", "path", info.Path, errAttr(info.Details))
			},
		},
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10) // the index's; the log has none
	}
	po.EnsureDefaults()
	return po
}

func (c *checker) open(name, dir string, lock *pebble.Lock) *pebble.DB {
	var db *pebble.DB
	err := pebblelog.Catch(func() (err error) {
		db, err = pebble.Open(dir, c.options(name, lock))
		return err
	})
	if err != nil {
		c.add(ProblemOpen, "%s database: %v", name, err)
		return nil
	}
	return db
}

func (c *checker) close(name string, db *pebble.DB) {
	if err := pebblelog.Catch(db.Close); err != nil {
		c.opts.Logger.Warn("close pebble", "db", name, errAttr(err))
	}
}

// tables reads every block of every table of db and checks its checksum.
// It reports whether all passed.
func (c *checker) tables(name, dir string, db *pebble.DB) bool {
	levels, err := db.SSTables()
	if err != nil {
		c.add(ProblemRead, "%s database: list tables: %v", name, err)
		return false
	}
	ro := c.options(name, nil).MakeReaderOptions()
	ok := true
	for _, level := range levels {
		for _, t := range level {
			if c.ctx.Err() != nil {
				return false
			}
			file := fmt.Sprintf("%s.sst", t.BackingSSTNum)
			if err := c.table(filepath.Join(dir, file), ro); err != nil {
				c.add(ProblemChecksum, "%s table %s: %v", name, file, err)
				ok = false
				continue
			}
			c.r.Tables++
		}
	}
	if files, err := c.opts.FS.List(dir); err == nil {
		blobs := 0
		for _, f := range files {
			if strings.HasSuffix(f, ".blob") {
				blobs++
			}
		}
		if blobs > 0 {
			c.note("%s database: %d blob files not verified (the store does not write them)", name, blobs)
		}
	}
	return ok
}

func (c *checker) table(path string, ro sstable.ReaderOptions) error {
	f, err := c.opts.FS.Open(path)
	if err != nil {
		return err
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		_ = f.Close()
		return err
	}
	r, err := sstable.NewReader(c.ctx, readable, ro)
	if err != nil {
		_ = readable.Close()
		return err
	}
	err = pebblelog.Catch(r.ValidateBlockChecksums)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return err
}

// log walks the log: its layout version, then every event in position
// order, checking each against the index (whose settings are read).
func (c *checker) log(db, index *pebble.DB) {
	it, err := db.NewIterWithContext(c.ctx, nil)
	if err != nil {
		c.add(ProblemRead, "log database: %v", err)
		return
	}
	failed := false // the walk met the iterator's error, which Close returns again
	defer func() {
		if err := it.Close(); err != nil && !failed {
			c.add(ProblemRead, "log database: %v", err)
		}
	}()
	var (
		want       uint64 = 1
		seenFormat bool
	)
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if string(k) == keyFormat {
			seenFormat = true
			if v, err := it.ValueAndErr(); err != nil || !bytes.Equal(v, []byte{formatVersion}) {
				c.add(ProblemLayout, "log layout version %x (%v), want %d", v, err, formatVersion)
			}
			continue
		}
		pos, err := eventKeyPos(k)
		if err != nil {
			c.add(ProblemRecord, "log key %q is neither an event nor the layout version", k)
			continue
		}
		if pos&4095 == 0 && c.ctx.Err() != nil {
			return
		}
		switch {
		case pos > want:
			c.add(ProblemGap, "positions %d to %d are missing", want, pos-1)
		case pos < want: // cannot happen in a sorted iteration
			c.add(ProblemRecord, "position %d out of order", pos)
		}
		want = pos + 1
		c.r.Head = pos
		v, err := it.ValueAndErr()
		if err != nil {
			c.add(ProblemRead, "log database at position %d: %v; the rest of the log is not checked", pos, err)
			failed = true
			return
		}
		var rec record
		if err := decodeRecord(v, &rec); err != nil {
			c.add(ProblemRecord, "event at position %d: %v", pos, err)
			continue
		}
		c.r.Events++
		if index != nil {
			c.indexed(index, pos, &rec)
		}
	}
	if err := it.Error(); err != nil {
		c.add(ProblemRead, "log database after position %d: %v; the rest of the log is not checked", c.r.Head, err)
		failed = true
		return
	}
	c.logRead = true
	if !seenFormat && c.r.Events > 0 {
		c.add(ProblemLayout, "the log has no layout version")
	}
	if index != nil {
		switch {
		case c.applied > c.r.Head:
			c.add(ProblemOrphan, "the index covers the log up to position %d but the log ends at %d (Open refuses this; delete %s to rebuild the index)",
				c.applied, c.r.Head, indexDir)
		case c.applied < c.r.Head:
			c.note("the index covers the log up to position %d of %d: Open indexes the rest", c.applied, c.r.Head)
		}
	}
}

// indexSettings reads the index's layout version, scanIDs and coverage.
func (c *checker) indexSettings(index *pebble.DB) {
	version, err := getVersion(index, keyIndexFormat)
	if err != nil || version != indexFormatVersion {
		c.add(ProblemLayout, "index layout version %d (%v), want %d", version, err, indexFormatVersion)
	}
	scan, found, err := getU64(index, keyScanIDs)
	if err != nil || !found || scan == 0 || scan > 1<<20 {
		c.add(ProblemLayout, "index scan length %d (found %t, %v)", scan, found, err)
		scan = scanIDs
	}
	c.scan = scan
	if c.applied, _, err = getU64(index, keyApplied); err != nil {
		c.add(ProblemLayout, "index position: %v", err)
	}
}

// indexed checks that the event at pos has the index entries that name it.
func (c *checker) indexed(index *pebble.DB, pos uint64, rec *record) {
	if pos > c.applied {
		return // Open indexes it
	}
	c.key = streamKey(c.key[:0], string(rec.stream), rec.revision)
	v, err := get(index, c.key)
	switch {
	case err != nil:
		c.add(ProblemRead, "index entry of position %d: %v", pos, err)
	case v == nil:
		c.add(ProblemUnindexed, "event %s at position %d (%q revision %d) has no stream index entry", rec.id, pos, rec.stream, rec.revision)
	default:
		ipos, id, err := parseStreamValue(v)
		if err != nil {
			c.add(ProblemIndexKey, "stream index entry of %q revision %d: %v", rec.stream, rec.revision, err)
		} else if ipos != pos || id != rec.id {
			c.add(ProblemMismatch, "stream index entry of %q revision %d names event %s at position %d; the log has %s at %d",
				rec.stream, rec.revision, id, ipos, rec.id, pos)
		}
	}
	if rec.revision < c.scan {
		return
	}
	c.key = idKey(c.key[:0], string(rec.stream), rec.id)
	v, err = get(index, c.key)
	switch {
	case err != nil:
		c.add(ProblemRead, "dedup entry of position %d: %v", pos, err)
	case v == nil:
		c.add(ProblemUnindexed, "event %s at position %d (%q revision %d) has no dedup entry", rec.id, pos, rec.stream, rec.revision)
	default:
		rev, ipos, err := parseIDValue(v)
		switch {
		case err != nil:
			c.add(ProblemIndexKey, "dedup entry of %s in %q: %v", rec.id, rec.stream, err)
		case ipos != pos && rev != rec.revision:
			c.add(ProblemDuplicate, "event %s is in %q twice: at position %d (revision %d) and, says its dedup entry, at %d (revision %d)",
				rec.id, rec.stream, pos, rec.revision, ipos, rev)
		case ipos != pos || rev != rec.revision:
			c.add(ProblemMismatch, "dedup entry of %s in %q names position %d revision %d; the log has it at %d revision %d",
				rec.id, rec.stream, ipos, rev, pos, rec.revision)
		}
	}
}

// index walks the index: every entry must name an event the log holds,
// each stream's revisions must run from 0 without a gap, and no event ID
// may be in a stream twice.
func (c *checker) index(db, index *pebble.DB) {
	it, err := index.NewIterWithContext(c.ctx, nil)
	if err != nil {
		c.add(ProblemRead, "index database: %v", err)
		return
	}
	failed := false // the walk met the iterator's error, which Close returns again
	defer func() {
		if err := it.Close(); err != nil && !failed {
			c.add(ProblemRead, "index database: %v", err)
		}
	}()
	var (
		stream  []byte
		nextRev uint64
		first   = map[uuid.UUID]uint64{} // the stream's IDs below scan, by revision
		n       int
	)
	for valid := it.First(); valid; valid = it.Next() {
		if n++; n&4095 == 0 && c.ctx.Err() != nil {
			return
		}
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			c.add(ProblemRead, "index database at %q: %v; the rest of the index is not checked", k, err)
			failed = true
			return
		}
		switch {
		case len(k) > 0 && k[0] == prefixStream && len(k) >= 1+1+8 && k[len(k)-9] == 0:
			s, rev := k[1:len(k)-9], binary.BigEndian.Uint64(k[len(k)-8:])
			if !bytes.Equal(s, stream) {
				stream = append(stream[:0], s...)
				nextRev = 0
				clear(first)
				c.r.Streams++
			}
			if rev != nextRev {
				c.add(ProblemRevisions, "stream %q: revision %d follows %d", s, rev, int64(nextRev)-1)
			}
			nextRev = rev + 1
			pos, id, err := parseStreamValue(v)
			if err != nil {
				c.add(ProblemIndexKey, "stream index entry of %q revision %d: %v", s, rev, err)
				continue
			}
			if prev, dup := first[id]; dup {
				c.add(ProblemDuplicate, "event %s is in %q twice: at revisions %d and %d", id, s, prev, rev)
			} else if rev < c.scan {
				first[id] = rev
			}
			c.names(db, "stream index entry", s, rev, pos, id)
		case len(k) > 0 && k[0] == prefixID && len(k) >= 1+1+16 && k[len(k)-17] == 0:
			s := k[1 : len(k)-17]
			id, _ := uuid.FromBytes(k[len(k)-16:])
			rev, pos, err := parseIDValue(v)
			if err != nil {
				c.add(ProblemIndexKey, "dedup entry of %s in %q: %v", id, s, err)
				continue
			}
			if rev < c.scan {
				c.add(ProblemIndexKey, "dedup entry of %s in %q at revision %d, below the scan length %d", id, s, rev, c.scan)
			}
			c.names(db, "dedup entry", s, rev, pos, id)
		case string(k) == keyIndexFormat || string(k) == keyScanIDs || string(k) == keyApplied:
		default:
			c.add(ProblemIndexKey, "index key %q is of no known kind", k)
		}
	}
	if err := it.Error(); err != nil {
		c.add(ProblemRead, "index database: %v; the rest of the index is not checked", err)
		failed = true
	}
}

// names checks that an index entry names an event of the log: stream s at
// revision rev, with ID id, at position pos.
func (c *checker) names(db *pebble.DB, what string, s []byte, rev, pos uint64, id uuid.UUID) {
	if pos > c.applied {
		c.add(ProblemOrphan, "%s of %q revision %d names position %d, past the %d the index covers", what, s, rev, pos, c.applied)
		return
	}
	c.key = eventKey(c.key[:0], pos)
	v, err := get(db, c.key)
	if err != nil {
		c.add(ProblemRead, "event at position %d: %v", pos, err)
		return
	}
	var rec record
	switch {
	case v == nil:
		c.add(ProblemOrphan, "%s of %q revision %d names position %d, which the log lacks", what, s, rev, pos)
	case decodeRecord(v, &rec) != nil:
		// reported by the walk of the log
	case !bytes.Equal(rec.stream, s) || rec.revision != rev || rec.id != id:
		c.add(ProblemOrphan, "%s of %q revision %d names %s at position %d; the log has %s of %q revision %d there",
			what, s, rev, id, pos, rec.id, rec.stream, rec.revision)
	}
}

// get returns a copy of key's value in db, nil when it is absent.
func get(db *pebble.DB, key []byte) ([]byte, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(v)
	if out == nil {
		out = []byte{}
	}
	return out, closer.Close()
}
