package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
)

// appendReq is one Append waiting for the committer. The committer owns it
// from the moment it is sent; reply has room for the answer, so the
// committer never blocks on a caller that stopped waiting.
type appendReq struct {
	stream   string
	expected eventstore.StreamState
	events   []eventstore.EventData // private copies
	reply    chan appendReply
}

type appendReply struct {
	res eventstore.AppendResult
	err error
}

// Append writes events to stream atomically once they are durable; see the
// package documentation for the group commit and dedup semantics. If ctx
// ends after the request was queued, Append returns ctx's error but the
// append may still commit: retrying with the same event IDs is safe.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := s.validate(stream, events); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	req := &appendReq{
		stream:   stream,
		expected: expected,
		events:   copyEvents(events),
		reply:    make(chan appendReply, 1),
	}
	if err := s.enqueue(ctx, req); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	select {
	case r := <-req.reply:
		return r.res, r.err
	case <-ctx.Done():
		return eventstore.AppendResult{}, fmt.Errorf("append %s: stopped waiting for the commit, which may still succeed: %w", stream, ctx.Err())
	}
}

func (s *Store) validate(stream string, events []eventstore.EventData) error {
	if err := eventstore.ValidateStreamName(stream); err != nil {
		return err
	}
	if len(events) == 0 {
		return fmt.Errorf("no events: %w", eventstore.ErrInvalidArgument)
	}
	size := 0
	for i := range events {
		if events[i].ID == uuid.Nil {
			return fmt.Errorf("event %d has no ID: %w", i, eventstore.ErrInvalidArgument)
		}
		size += len(events[i].Type) + len(events[i].Data) + len(events[i].Metadata)
	}
	if size > s.opts.MaxAppendBytes {
		return fmt.Errorf("append of %d bytes exceeds %d: %w", size, s.opts.MaxAppendBytes, eventstore.ErrInvalidArgument)
	}
	return nil
}

// copyEvents copies the events and their payloads into memory the store
// owns, in one allocation for the payloads: the committer may read them
// after a caller whose context ended has returned and reused its buffers.
func copyEvents(events []eventstore.EventData) []eventstore.EventData {
	n := 0
	for i := range events {
		n += len(events[i].Data) + len(events[i].Metadata)
	}
	buf := make([]byte, 0, n)
	clone := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	out := make([]eventstore.EventData, len(events))
	for i, ev := range events {
		out[i] = eventstore.EventData{ID: ev.ID, Type: ev.Type, Data: clone(ev.Data), Metadata: clone(ev.Metadata)}
	}
	return out
}

// enqueue hands req to the committer, waiting while the queue is full.
func (s *Store) enqueue(ctx context.Context, req *appendReq) error {
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	if s.closing {
		return errClosed
	}
	if s.broken.Load() {
		return errBroken
	}
	select {
	case s.reqs <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the committer: it forms groups from the queue and commits them
// until Close closes the queue and everything queued has been answered.
func (s *Store) run() {
	defer close(s.done)
	g := newGroup()
	var reqs []*appendReq
	for {
		req, ok := <-s.reqs
		if !ok {
			return
		}
		reqs = append(reqs[:0], req)
	drain:
		for len(reqs) < s.opts.MaxGroupAppends {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain // answer what we have; the next receive ends the loop
				}
				reqs = append(reqs, r)
			default:
				break drain
			}
		}
		s.commitGroup(g, reqs)
		clear(reqs) // let the requests be collected
	}
}

// group is the committer's per-group state, reused across groups.
type group struct {
	heads map[string]streamHead   // streams touched by this group
	ids   map[dedupKey]eventPlace // events written by this group
	key   []byte                  // scratch for keys
	dup   []bool                  // scratch: which events of a request are duplicates
	seen  map[uuid.UUID]struct{}  // scratch: IDs of a large request
	// writeErr is the first failure to add to the batch. The batch is then
	// incomplete, so the whole group fails and nothing is committed.
	writeErr error
}

type streamHead struct {
	rev    uint64
	exists bool // the stream has at least one event
	onDisk bool // the stream had events before this group
}

type dedupKey struct {
	stream string
	id     uuid.UUID
}

type eventPlace struct{ rev, pos uint64 }

// reset empties the group's maps, dropping ones a large group grew: clear
// costs as much as the map is big, and most groups are small.
func (g *group) reset() {
	const keep = 4096
	if len(g.heads) > keep || len(g.ids) > keep {
		*g = group{key: g.key, dup: g.dup, seen: g.seen}
		g.heads = make(map[string]streamHead)
		g.ids = make(map[dedupKey]eventPlace)
		return
	}
	clear(g.heads)
	clear(g.ids)
	g.writeErr = nil
}

func newGroup() *group {
	return &group{
		heads: make(map[string]streamHead),
		ids:   make(map[dedupKey]eventPlace),
	}
}

// commitGroup processes reqs in order, writes one batch, syncs it, and only
// then publishes the new head and replies.
func (s *Store) commitGroup(g *group, reqs []*appendReq) {
	if s.opts.beforeGroup != nil {
		s.opts.beforeGroup()
	}
	replies := make([]appendReply, len(reqs))
	if s.broken.Load() {
		for i := range reqs {
			replies[i].err = fmt.Errorf("append %s: %w", reqs[i].stream, errBroken)
		}
		s.reply(reqs, replies)
		return
	}
	g.reset()

	b := s.db.NewBatch()
	defer func() {
		if err := b.Close(); err != nil {
			s.log.Error("release batch", "err", err)
		}
	}()
	head := s.head.Load()
	next := head + 1
	created := time.Now().UnixNano()
	for i, req := range reqs {
		replies[i].res, replies[i].err = s.apply(g, b, req, &next, created)
	}
	s.appends.Add(uint64(len(reqs)))

	if g.writeErr != nil {
		s.log.Error("group commit abandoned", "appends", len(reqs), "err", g.writeErr)
		for i := range reqs {
			replies[i] = appendReply{err: fmt.Errorf("append %s: %w: %w", reqs[i].stream, eventstore.ErrUnavailable, g.writeErr)}
		}
		s.reply(reqs, replies)
		return
	}
	if !b.Empty() {
		if err := s.commitBatch(b); err != nil {
			s.broken.Store(true)
			s.log.Error("group commit failed; refusing further appends until the store is reopened",
				"appends", len(reqs), "err", err)
			for i := range reqs {
				replies[i] = appendReply{err: fmt.Errorf("append %s: commit: %w: %w", reqs[i].stream, eventstore.ErrUnavailable, err)}
			}
			s.reply(reqs, replies)
			return
		}
		s.commits.Add(1)
		s.events.Add(next - 1 - head)
		if next-1 > head {
			s.publish(next - 1)
		}
	}
	s.reply(reqs, replies)
}

func (s *Store) commitBatch(b *pebble.Batch) error {
	if s.opts.commit != nil {
		return s.opts.commit(b)
	}
	return b.Commit(pebble.Sync)
}

func (s *Store) reply(reqs []*appendReq, replies []appendReply) {
	for i, req := range reqs {
		req.reply <- replies[i]
	}
}

// apply judges one request against the store plus the group's earlier
// writes and, if it succeeds, adds its writes to b. next is the position
// the next written event gets.
func (s *Store) apply(g *group, b *pebble.Batch, req *appendReq, next *uint64, created int64) (eventstore.AppendResult, error) {
	h, err := s.streamHead(g, req.stream)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", req.stream, err)
	}

	// Classify: which events are duplicates, and where their originals are.
	dup := g.dup[:0]
	var dups []uuid.UUID
	var origMax uint64
	fresh := 0
	large := len(req.events) > 16
	if large {
		if g.seen == nil {
			g.seen = make(map[uuid.UUID]struct{}, len(req.events))
		}
		clear(g.seen)
	}
	for i := range req.events {
		id := req.events[i].ID
		isDup := false
		if large {
			_, isDup = g.seen[id]
			g.seen[id] = struct{}{}
		} else {
			for j := 0; j < i; j++ {
				if req.events[j].ID == id {
					isDup = true
					break
				}
			}
		}
		if !isDup && h.exists {
			place, found, err := s.lookupID(g, h, req.stream, id)
			if err != nil {
				return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", req.stream, err)
			}
			if found {
				isDup = true
				origMax = max(origMax, place.pos)
			}
		}
		dup = append(dup, isDup)
		if isDup {
			dups = append(dups, id)
		} else {
			fresh++
		}
	}
	g.dup = dup

	if fresh == 0 {
		return eventstore.AppendResult{NextRevision: h.rev, Position: eventstore.Position(origMax), Duplicates: dups}, nil
	}
	if !req.expected.Check(h.rev, h.exists) {
		return eventstore.AppendResult{}, &eventstore.WrongExpectedVersionError{
			Stream: req.stream, Expected: req.expected, Actual: h.rev, Exists: h.exists,
		}
	}

	rev := uint64(0)
	if h.exists {
		rev = h.rev + 1
	}
	var pos uint64
	for i := range req.events {
		if dup[i] {
			continue
		}
		ev := &req.events[i]
		pos = *next
		*next++
		g.key = eventKey(g.key[:0], pos)
		op := b.SetDeferred(len(g.key), encodedLen(req.stream, ev.Type, ev.Metadata, ev.Data, rev, created))
		copy(op.Key, g.key)
		appendRecord(op.Value[:0], ev.ID, rev, created, req.stream, ev.Type, ev.Metadata, ev.Data)
		g.write(op.Finish())
		var v [idValueLen]byte
		g.key = streamKey(g.key[:0], req.stream, rev)
		g.write(b.Set(g.key, binary.BigEndian.AppendUint64(v[:0], pos), nil))
		g.key = idKey(g.key[:0], req.stream, ev.ID)
		g.write(b.Set(g.key, idValue(v[:0], rev, pos), nil))
		g.ids[dedupKey{req.stream, ev.ID}] = eventPlace{rev: rev, pos: pos}
		rev++
	}
	last := rev - 1
	var v [8]byte
	g.key = headKey(g.key[:0], req.stream)
	g.write(b.Set(g.key, binary.BigEndian.AppendUint64(v[:0], last), nil))
	g.heads[req.stream] = streamHead{rev: last, exists: true, onDisk: h.onDisk}
	return eventstore.AppendResult{NextRevision: last, Position: eventstore.Position(pos), Duplicates: dups}, nil
}

// write records the first error of adding to the batch.
func (g *group) write(err error) {
	if err != nil && g.writeErr == nil {
		g.writeErr = fmt.Errorf("add to batch: %w", err)
	}
}

// streamHead returns the stream's head as of the group's earlier writes.
func (s *Store) streamHead(g *group, stream string) (streamHead, error) {
	if h, ok := g.heads[stream]; ok {
		return h, nil
	}
	g.key = headKey(g.key[:0], stream)
	v, closer, err := s.db.Get(g.key)
	if errors.Is(err, pebble.ErrNotFound) {
		h := streamHead{}
		g.heads[stream] = h
		return h, nil
	}
	if err != nil {
		return streamHead{}, fmt.Errorf("read head: %w", err)
	}
	rev, err := parseU64(v)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return streamHead{}, fmt.Errorf("read head: %w", err)
	}
	h := streamHead{rev: rev, exists: true, onDisk: true}
	g.heads[stream] = h
	return h, nil
}

// lookupID finds an event ID in the stream: first among the group's
// writes, then, if the stream existed before the group, on disk.
func (s *Store) lookupID(g *group, h streamHead, stream string, id uuid.UUID) (eventPlace, bool, error) {
	if p, ok := g.ids[dedupKey{stream, id}]; ok {
		return p, true, nil
	}
	if !h.onDisk {
		return eventPlace{}, false, nil
	}
	g.key = idKey(g.key[:0], stream, id)
	v, closer, err := s.db.Get(g.key)
	if errors.Is(err, pebble.ErrNotFound) {
		return eventPlace{}, false, nil
	}
	if err != nil {
		return eventPlace{}, false, fmt.Errorf("read dedup index: %w", err)
	}
	rev, pos, err := parseIDValue(v)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return eventPlace{}, false, fmt.Errorf("read dedup index: %w", err)
	}
	return eventPlace{rev: rev, pos: pos}, true, nil
}
