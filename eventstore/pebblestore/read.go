package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/callledger/callledger/eventstore"
)

// ReadStream returns up to limit events of stream from revision from on.
// limit must be positive.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	if err := eventstore.ValidateStreamName(stream); err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("read stream %s: limit %d: %w", stream, limit, eventstore.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	defer release()
	evs, err := s.readStream(ctx, stream, from, limit, s.head.Load())
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return evs, nil
}

func (s *Store) readStream(ctx context.Context, stream string, from uint64, limit int, head uint64) (out []eventstore.RecordedEvent, err error) {
	idx, err := s.index.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: streamKey(nil, stream, from),
		UpperBound: streamKeyEnd(nil, stream),
	})
	if err != nil {
		return nil, err
	}
	defer closeIter(idx, &err)
	evIt, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: []byte{prefixEvent},
		UpperBound: eventKey(nil, saturatingAdd(head, 1)),
	})
	if err != nil {
		return nil, err
	}
	defer closeIter(evIt, &err)

	var (
		dec    decodeState
		key    []byte
		prefix = len(streamPrefix(nil, stream))
		rev    = from
	)
	for valid := idx.First(); valid && len(out) < limit; valid = idx.Next() {
		k := idx.Key()
		if len(k) != prefix+8 {
			return nil, fmt.Errorf("stream index key %x: %w", k, ErrCorrupt)
		}
		if got := binary.BigEndian.Uint64(k[prefix:]); got != rev {
			return nil, fmt.Errorf("stream index holds revision %d where %d was expected: %w", got, rev, ErrCorrupt)
		}
		v, err := idx.ValueAndErr()
		if err != nil {
			return nil, err
		}
		pos, id, err := parseStreamValue(v)
		if err != nil {
			return nil, fmt.Errorf("stream index at revision %d: %w", rev, err)
		}
		if pos > head {
			break // written by a commit that has not been acknowledged
		}
		key = eventKey(key[:0], pos)
		if !evIt.SeekGE(key) || string(evIt.Key()) != string(key) {
			if err := evIt.Error(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("event at position %d (revision %d) missing: %w", pos, rev, ErrCorrupt)
		}
		v, err = evIt.ValueAndErr()
		if err != nil {
			return nil, err
		}
		var r record
		if err := decodeRecord(v, &r); err != nil {
			return nil, fmt.Errorf("event at position %d: %w", pos, err)
		}
		if r.revision != rev || string(r.stream) != stream || r.id != id {
			return nil, fmt.Errorf("event at position %d is %s in %q@%d, index says %s in %q@%d: %w", pos, r.id, r.stream, r.revision, id, stream, rev, ErrCorrupt)
		}
		if out == nil {
			out = make([]eventstore.RecordedEvent, 0, min(limit, 64))
		}
		out = append(out, eventstore.RecordedEvent{})
		dec.fill(&out[len(out)-1], &r, pos, stream)
		rev++
	}
	if err := idx.Error(); err != nil {
		return nil, err
	}
	if len(out) > 0 {
		return out, nil
	}
	// Nothing from `from` on: an empty answer if the stream exists (its
	// first event is committed), ErrStreamNotFound otherwise.
	v, closer, err := s.index.Get(streamKey(nil, stream, 0))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, eventstore.ErrStreamNotFound
	}
	if err != nil {
		return nil, err
	}
	pos, _, err := parseStreamValue(v)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if pos > head {
		return nil, eventstore.ErrStreamNotFound
	}
	return []eventstore.RecordedEvent{}, nil
}

// ReadAll returns up to limit events after position from, in log order.
// limit must be positive.
func (s *Store) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read all from %d: limit %d: %w", from, limit, eventstore.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read all from %d: %w", from, err)
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("read all from %d: %w", from, err)
	}
	defer release()
	head := s.head.Load()
	if uint64(from) >= head {
		return []eventstore.RecordedEvent{}, nil
	}
	to := min(head, saturatingAdd(uint64(from), uint64(limit)))
	out := make([]eventstore.RecordedEvent, 0, min(to-uint64(from), 1<<16))
	out, _, err = s.scan(ctx, uint64(from), to, limit, nil, out)
	if err != nil {
		return nil, fmt.Errorf("read all from %d: %w", from, err)
	}
	return out, nil
}

// VisitAll calls fn with each event in positions (from, to], in log order,
// without copying it out of the store: the event's Data and Metadata are
// the store's memory, valid only until fn returns, so fn must copy what it
// keeps. It is for readers that decode every event once and keep only the
// result (a rebuild), to whom ReadAll's copy of the whole log is pure cost.
// to must not be past the head; fn's error stops the visit and is
// returned as is. Close waits for a visit in progress, so keep ranges
// bounded (a rebuild visits 16,384 events at a time).
func (s *Store) VisitAll(ctx context.Context, from, to eventstore.Position, fn func(*eventstore.RecordedEvent) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("visit from %d: %w", from, err)
	}
	release, err := s.acquire(ctx)
	if err != nil {
		return fmt.Errorf("visit from %d: %w", from, err)
	}
	defer release()
	if head := s.head.Load(); uint64(to) > head {
		return fmt.Errorf("visit from %d to %d past the head %d: %w", from, to, head, eventstore.ErrInvalidArgument)
	}
	if from >= to {
		return nil
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: eventKey(nil, uint64(from)+1),
		UpperBound: eventKey(nil, uint64(to)+1),
	})
	if err != nil {
		return fmt.Errorf("visit from %d: %w", from, err)
	}
	if err := s.visit(ctx, it, uint64(from), uint64(to), fn); err != nil {
		_ = it.Close()
		return err
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("visit from %d: %w", from, err)
	}
	return nil
}

func (s *Store) visit(ctx context.Context, it *pebble.Iterator, from, to uint64, fn func(*eventstore.RecordedEvent) error) error {
	var (
		dec  decodeState
		ev   eventstore.RecordedEvent
		want = from + 1
	)
	for valid := it.First(); valid; valid = it.Next() {
		pos, err := eventKeyPos(it.Key())
		if err != nil {
			return fmt.Errorf("visit from %d: %w", from, err)
		}
		if pos != want {
			return fmt.Errorf("visit from %d: event at position %d missing (next is %d): %w", from, want, pos, ErrCorrupt)
		}
		want++
		if pos&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("visit from %d: %w", from, err)
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("visit from %d: %w", from, err)
		}
		var r record
		if err := decodeRecord(v, &r); err != nil {
			return fmt.Errorf("visit from %d: event at position %d: %w", from, pos, err)
		}
		ev = dec.aliased(&r, pos)
		if err := fn(&ev); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("visit from %d: %w", from, err)
	}
	if want != to+1 {
		return fmt.Errorf("visit from %d: event at position %d missing (up to %d): %w", from, want, to, ErrCorrupt)
	}
	return nil
}

// scan appends to dst the events with positions in (from, to] whose stream
// the filter keeps (all when filter is nil), stopping after max events. It
// returns the position up to which it looked: to, or the position of the
// last event taken when it stopped at max. The caller has acquired the
// databases and has
// checked that to is committed.
func (s *Store) scan(ctx context.Context, from, to uint64, max int, filter *eventstore.Filter, dst []eventstore.RecordedEvent) (_ []eventstore.RecordedEvent, last uint64, err error) {
	upper := []byte{prefixEvent + 1}
	if to < math.MaxUint64 {
		upper = eventKey(nil, to+1)
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: eventKey(nil, from+1),
		UpperBound: upper,
	})
	if err != nil {
		return dst, from, err
	}
	defer closeIter(it, &err)

	var dec decodeState
	want := from + 1
	taken := 0
	for valid := it.First(); valid; valid = it.Next() {
		pos, err := eventKeyPos(it.Key())
		if err != nil {
			return dst, from, err
		}
		if pos != want {
			return dst, from, fmt.Errorf("event at position %d missing (next is %d): %w", want, pos, ErrCorrupt)
		}
		want++
		if pos&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return dst, from, err
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return dst, from, err
		}
		var r record
		d := decodeRecordHeader(v, &r)
		if d.err != nil {
			return dst, from, fmt.Errorf("event at position %d: %w", pos, d.err)
		}
		if filter != nil && !matchStream(filter, r.stream) {
			continue
		}
		if err := decodeRecordBody(d, &r); err != nil {
			return dst, from, fmt.Errorf("event at position %d: %w", pos, err)
		}
		dst = append(dst, eventstore.RecordedEvent{})
		dec.fill(&dst[len(dst)-1], &r, pos, dec.stream(r.stream))
		taken++
		if taken == max {
			return dst, pos, it.Error()
		}
	}
	if err := it.Error(); err != nil {
		return dst, from, err
	}
	if want != to+1 {
		return dst, from, fmt.Errorf("event at position %d missing (head is %d): %w", want, to, ErrCorrupt)
	}
	return dst, to, nil
}

// matchStream is Filter.Match on bytes, without converting the name to a
// string for events it rejects.
func matchStream(f *eventstore.Filter, stream []byte) bool {
	for _, p := range f.StreamPrefixes {
		if len(stream) >= len(p) && string(stream[:len(p)]) == p {
			return true
		}
	}
	return false
}

// decodeState turns records into RecordedEvents for one read: payloads go
// into shared arena chunks and names are interned, so that a read costs a
// few allocations rather than several per event.
type decodeState struct {
	arena   []byte
	types   map[string]string
	streams map[string]string
	last    string // the previous event's stream: often the next one's too
}

const (
	minArenaChunk = 4 << 10
	maxArenaChunk = 1 << 20
)

// fill sets e from r in place: building the event in the result slice
// rather than copying it there halves the GC write barriers of a read.
func (d *decodeState) fill(e *eventstore.RecordedEvent, r *record, pos uint64, stream string) {
	e.ID = r.id
	e.Type = d.typ(r.typ)
	e.Stream = stream
	e.Revision = r.revision
	e.Position = eventstore.Position(pos)
	e.Created = time.Unix(0, r.created).UTC()
	e.Data = d.bytes(r.data)
	e.Metadata = d.bytes(r.metadata)
}

// aliased is the event of r at pos, its data and metadata aliasing r's
// bytes: valid only as long as the value r was decoded from.
func (d *decodeState) aliased(r *record, pos uint64) eventstore.RecordedEvent {
	return eventstore.RecordedEvent{
		ID: r.id, Type: d.typ(r.typ), Stream: d.stream(r.stream), Revision: r.revision,
		Position: eventstore.Position(pos), Created: time.Unix(0, r.created).UTC(),
		Data: r.data, Metadata: r.metadata,
	}
}

// bytes copies b into the arena. Each result is capped at its length, so
// appending to one event's slice can never overwrite another's bytes.
func (d *decodeState) bytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if cap(d.arena)-len(d.arena) < len(b) {
		size := min(max(2*cap(d.arena), minArenaChunk), maxArenaChunk)
		d.arena = make([]byte, 0, max(size, len(b)))
	}
	start := len(d.arena)
	d.arena = append(d.arena, b...)
	return d.arena[start:len(d.arena):len(d.arena)]
}

func (d *decodeState) typ(b []byte) string {
	if s, ok := d.types[string(b)]; ok {
		return s
	}
	if d.types == nil {
		d.types = make(map[string]string)
	}
	s := string(b)
	d.types[s] = s
	return s
}

func (d *decodeState) stream(b []byte) string {
	if string(b) == d.last && d.last != "" {
		return d.last
	}
	if s, ok := d.streams[string(b)]; ok {
		d.last = s
		return s
	}
	if d.streams == nil {
		d.streams = make(map[string]string)
	}
	s := string(b)
	d.streams[s] = s
	d.last = s
	return s
}

func closeIter(it *pebble.Iterator, err *error) {
	if cerr := it.Close(); *err == nil && cerr != nil {
		*err = cerr
	}
}
