package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
)

// scanIDs is how many of a stream's first events are deduplicated through
// the stream index alone: their IDs are in the values of the stream's s
// keys, which one short scan reads. Events at later revisions also get an
// i key, so that dedup in a long stream stays a point lookup. Calls have
// 2–10 events, so a call's events cost one index key each.
const scanIDs = 32

// streamState is what the committer knows of a stream: its head and the
// IDs of its first events.
type streamState struct {
	head   uint64 // the last revision; meaningful when exists
	last   uint64 // the position of the last event; meaningful when exists
	exists bool
	// ids holds the events at revisions 0 … min(head, scanIDs-1), indexed
	// by revision. Events at later revisions are found through i keys.
	ids []idPos
}

type idPos struct {
	id  uuid.UUID
	pos uint64
}

// find looks id up among the stream's first scanIDs events.
func (st *streamState) find(id uuid.UUID) (pos uint64, ok bool) {
	for i := range st.ids {
		if st.ids[i].id == id {
			return st.ids[i].pos, true
		}
	}
	return 0, false
}

// streamCache keeps the state of recently used streams for the committer,
// which alone uses it (so it has no lock). It holds only committed states:
// the committer updates it after a group's commit returned.
//
// It is bounded by generations rather than a strict LRU: entries go into
// the current generation, which becomes the old one when full, dropping
// the previous old one; a hit in the old generation moves the entry back
// to the current one.
//
// It also lets the committer look streams up in the index's tables alone,
// skipping its memtables (whose skiplists cost far more than the tables'
// Bloom filters): every stream whose index entries may still be in a
// memtable is in the cache. The committer puts every stream it writes in
// the cache, the index's memtables are empty at Open, and a rotation drops
// only the streams whose last event the index's tables already hold
// (durable returns how far they reach); the others move to the new
// generation. A stream missing from the cache therefore has all its index
// entries in the tables.
type streamCache struct {
	cur, old map[string]streamState
	gen      int                    // entries per generation
	durable  func() (uint64, error) // the position up to which the index's tables reach
}

func newStreamCache(size int, durable func() (uint64, error)) *streamCache {
	gen := max(size/2, 1)
	return &streamCache{cur: make(map[string]streamState, min(gen, 1024)), gen: gen, durable: durable}
}

func (c *streamCache) get(stream string) (streamState, bool) {
	if st, ok := c.cur[stream]; ok {
		return st, true
	}
	st, ok := c.old[stream]
	if ok {
		delete(c.old, stream)
		c.cur[stream] = st // may exceed gen by one; the next put rotates
	}
	return st, ok
}

// put records a stream's committed state. An error means the cache could
// not rotate (it then keeps every entry): the index could not be read.
func (c *streamCache) put(stream string, st streamState) error {
	if _, ok := c.cur[stream]; !ok && len(c.cur) >= c.gen {
		durable, err := c.durable()
		if err != nil {
			c.cur[stream] = st
			return fmt.Errorf("rotate stream cache: %w", err)
		}
		next := make(map[string]streamState, min(c.gen, 1024))
		for s, e := range c.old {
			if _, newer := c.cur[s]; e.last > durable && !newer {
				next[s] = e // still in a memtable: must stay
			}
		}
		c.old, c.cur = c.cur, next
	}
	c.cur[stream] = st
	return nil
}

// durableApplied returns the position up to which the index's tables (not
// its memtables) cover the log.
func durableApplied(index *pebble.DB) (applied uint64, err error) {
	it, err := index.NewIter(&pebble.IterOptions{
		LowerBound:                []byte(keyApplied),
		UpperBound:                []byte(keyApplied + "\x00"),
		OnlyReadGuaranteedDurable: true,
	})
	if err != nil {
		return 0, fmt.Errorf("read durable index position: %w", err)
	}
	defer closeIter(it, &err)
	if !it.First() {
		return 0, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return 0, fmt.Errorf("read durable index position: %w", err)
	}
	if applied, err = parseU64(v); err != nil {
		return 0, fmt.Errorf("read durable index position: %w", err)
	}
	return applied, nil
}

// loadStream reads the state of a stream missing from the cache from the
// index's tables alone (see streamCache): a Bloom-filtered lookup of its
// first key, which answers the usual new stream without I/O, then a scan
// of its first scanIDs keys and, for a longer stream, a seek to its last
// key. key is scratch space.
func loadStream(index *pebble.DB, stream string, scan int, key *[]byte) (st streamState, err error) {
	// The first key and the upper bound share the scratch space.
	b := streamKey((*key)[:0], stream, 0)
	n := len(b)
	b = streamKeyEnd(b, stream)
	*key = b
	first, upper := b[:n:n], b[n:]
	it, err := index.NewIter(&pebble.IterOptions{
		LowerBound:                first,
		UpperBound:                upper,
		OnlyReadGuaranteedDurable: true,
		UseL6Filters:              true,
	})
	if err != nil {
		return streamState{}, fmt.Errorf("read stream index: %w", err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			st, err = streamState{}, fmt.Errorf("read stream index of %s: %w", stream, err)
		}
	}()
	if !it.SeekPrefixGE(first) {
		return streamState{}, it.Error()
	}

	st.exists = true
	prefix := len(stream) + 2
	parse := func() (rev uint64, e idPos, err error) {
		k := it.Key()
		if len(k) != prefix+8 {
			return 0, e, fmt.Errorf("key %x: %w", k, ErrCorrupt)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, e, err
		}
		e.pos, e.id, err = parseStreamValue(v)
		return binary.BigEndian.Uint64(k[prefix:]), e, err
	}
	valid := it.SeekGE(first) // leaves prefix iteration
	for ; valid && len(st.ids) < scan; valid = it.Next() {
		rev, e, err := parse()
		if err != nil {
			return streamState{}, err
		}
		if rev != uint64(len(st.ids)) {
			return streamState{}, fmt.Errorf("revision %d where %d was expected: %w", rev, len(st.ids), ErrCorrupt)
		}
		st.ids = append(st.ids, e)
	}
	if err := it.Error(); err != nil {
		return streamState{}, err
	}
	if len(st.ids) == 0 {
		return streamState{}, fmt.Errorf("first key vanished: %w", ErrCorrupt)
	}
	st.head, st.last = uint64(len(st.ids))-1, st.ids[len(st.ids)-1].pos
	if valid && it.Last() {
		rev, e, err := parse()
		if err != nil {
			return streamState{}, err
		}
		st.head, st.last = rev, e.pos
	}
	return st, it.Error()
}

// lookupIDKey finds an event of a long stream by its i key.
func lookupIDKey(index *pebble.DB, stream string, id uuid.UUID, key *[]byte) (pos uint64, found bool, err error) {
	*key = idKey((*key)[:0], stream, id)
	v, closer, err := index.Get(*key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read dedup index: %w", err)
	}
	_, pos, err = parseIDValue(v)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, false, fmt.Errorf("read dedup index: %w", err)
	}
	return pos, true, nil
}

// indexEvent adds the index entries of one event to b.
func indexEvent[S ~string | ~[]byte](b *pebble.Batch, key *[]byte, stream S, rev, pos uint64, id uuid.UUID, scan int) error {
	k := append((*key)[:0], prefixStream)
	k = append(k, stream...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, rev)
	var v [streamValueLen]byte
	err := b.Set(k, streamValue(v[:0], pos, id), nil)
	if err == nil && rev >= uint64(scan) {
		k = append(k[:0], prefixID)
		k = append(k, stream...)
		k = append(k, 0)
		k = append(k, id[:]...)
		err = b.Set(k, idValue(v[:0], rev, pos), nil)
	}
	*key = k
	return err
}

// setApplied records in b that the index covers the log up to pos.
func setApplied(b *pebble.Batch, pos uint64) error {
	var v [8]byte
	return b.Set([]byte(keyApplied), binary.BigEndian.AppendUint64(v[:0], pos), nil)
}

// catchUpIndex brings the index up to the log's head. The index has no WAL,
// so a crash loses what its memtables held; it always loses a suffix of
// the commits (Pebble flushes whole batches, in order), which keyApplied
// bounds. The log is the source of truth: re-indexing its events past
// keyApplied restores the index exactly, and re-indexing an event twice
// writes the same entries.
//
// It returns the index's scanIDs, which the store must use.
func catchUpIndex(db, index *pebble.DB, head uint64, opts Options, log *slog.Logger) (scan int, err error) {
	applied, scan, err := prepareIndex(index, opts.scanIDs)
	if err != nil {
		return 0, err
	}
	opts.scanIDs = scan
	if applied > head {
		return 0, fmt.Errorf("the index covers the log up to position %d but the log ends at %d; delete the %s directory to rebuild the index from the log: %w",
			applied, head, indexDir, ErrCorrupt)
	}
	if applied < head {
		log.Info("indexing the end of the log", "from", applied+1, "to", head)
		if err := reindex(db, index, applied, head, opts, log); err != nil {
			return 0, fmt.Errorf("index positions %d to %d: %w", applied+1, head, err)
		}
		log.Info("index up to date", "head", head)
	}
	// Start with empty memtables, whatever they hold (the re-index, a new
	// index's settings): the committer's cache relies on it (streamCache).
	if err := index.Flush(); err != nil {
		return 0, fmt.Errorf("flush index: %w", err)
	}
	return scan, nil
}

// prepareIndex checks the index's layout version and reads its scanIDs,
// writing both in a new index (with scan), and returns the position up to
// which the index covers the log.
func prepareIndex(index *pebble.DB, scan int) (applied uint64, _ int, err error) {
	version, err := getVersion(index, keyIndexFormat)
	if err != nil {
		return 0, 0, fmt.Errorf("index: %w", err)
	}
	switch version {
	case indexFormatVersion:
	case -1:
		// A new index (or one that crashed before its first flush). The
		// settings reach the disk with the first flush.
		b := index.NewBatch()
		var v [8]byte
		err := b.Set([]byte(keyIndexFormat), []byte{indexFormatVersion}, nil)
		if err == nil {
			err = b.Set([]byte(keyScanIDs), binary.BigEndian.AppendUint64(v[:0], uint64(scan)), nil)
		}
		if err == nil {
			err = b.Commit(pebble.NoSync)
		}
		if cerr := b.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, 0, fmt.Errorf("write index settings: %w", err)
		}
		return 0, scan, nil
	default:
		return 0, 0, fmt.Errorf("index layout version %d, want %d: %w", version, indexFormatVersion, ErrCorrupt)
	}
	stored, found, err := getU64(index, keyScanIDs)
	if err == nil && (!found || stored == 0 || stored > 1<<20) {
		err = fmt.Errorf("value %d: %w", stored, ErrCorrupt)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read index scan length: %w", err)
	}
	if applied, _, err = getU64(index, keyApplied); err != nil {
		return 0, 0, fmt.Errorf("read index position: %w", err)
	}
	return applied, int(stored), nil
}

// getU64 reads a big-endian uint64 value; found is false when the key is
// absent.
func getU64(db *pebble.DB, key string) (v uint64, found bool, err error) {
	b, closer, err := db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, err = parseU64(b)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	return v, err == nil, err
}

// reindex writes the index entries of the log's events in (from, to].
func reindex(db, index *pebble.DB, from, to uint64, opts Options, log *slog.Logger) (err error) {
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: eventKey(nil, from+1),
		UpperBound: eventKey(nil, saturatingAdd(to, 1)),
	})
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	b := index.NewBatch()
	defer func() {
		if cerr := b.Close(); err == nil {
			err = cerr
		}
	}()
	commit := func(applied uint64) error {
		if err := setApplied(b, applied); err != nil {
			return err
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		b.Reset()
		if opts.afterRebuild != nil {
			opts.afterRebuild(applied)
		}
		return nil
	}
	var key []byte
	want := from + 1
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		pos, err := eventKeyPos(it.Key())
		if err != nil {
			return err
		}
		if pos != want {
			return fmt.Errorf("event at position %d missing (next is %d): %w", want, pos, ErrCorrupt)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		var r record
		if d := decodeRecordHeader(v, &r); d.err != nil {
			return fmt.Errorf("event at position %d: %w", pos, d.err)
		}
		if err := indexEvent(b, &key, r.stream, r.revision, pos, r.id, opts.scanIDs); err != nil {
			return err
		}
		want++
		if n++; n == opts.reindexBatch {
			if err := commit(pos); err != nil {
				return err
			}
			n = 0
		}
		if (pos-from)%(1<<20) == 0 {
			log.Info("indexing the log", "at", pos, "to", to)
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if want != to+1 {
		return fmt.Errorf("event at position %d missing (head is %d): %w", want, to, ErrCorrupt)
	}
	return commit(to)
}
