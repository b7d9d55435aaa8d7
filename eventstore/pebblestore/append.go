package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/pebblelog"
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
	if err := s.unavailable(); err != nil {
		return err
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
// After a failed write it also recovers the store (see recover), retrying
// with a growing wait while it answers appends with errors.
func (s *Store) run() {
	defer close(s.done)
	g := s.newGroup()
	var (
		reqs  []*appendReq
		retry *time.Timer
		tries int
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		var retryC <-chan time.Time
		if s.broken.Load() {
			if retry == nil {
				tries++
				retry = time.NewTimer(s.opts.retryWaitFor(tries))
			}
			retryC = retry.C
		}
		select {
		case req, ok := <-s.reqs:
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
		case <-retryC:
			retry = nil
			began := time.Now()
			if err := s.recover(); err != nil {
				if errors.Is(err, errClosed) {
					continue // Close ended it; the queue is closed too
				}
				s.faultMu.Lock()
				s.recoverErr = err
				s.faultMu.Unlock()
				s.limit.Log(s.log, slog.LevelError, "recover", "event store still refusing appends: recovery failed; trying again",
					"attempt", tries, "retry_in", s.opts.retryWaitFor(tries+1), errAttr(err))
				continue
			}
			s.log.Info("event store recovered: taking appends again", "head", s.head.Load(),
				"attempts", tries, "reopen", time.Since(began).Round(time.Millisecond))
			g, tries = s.newGroup(), 0
		}
	}
}

func (s *Store) newGroup() *group {
	return newGroup(s.opts.StreamCacheSize, func() (uint64, error) { return durableApplied(s.index) })
}

// recover reopens the databases after a failed write, as a restart of the
// process would: after a failed fsync nothing Pebble holds in memory can
// be trusted, nor can the page cache (PostgreSQL's "fsyncgate"), so the
// store closes both databases without flushing and reopens them, Pebble
// recovering the log from what its WAL holds on disk and Open re-indexing
// what the index lacks. A write probe comes first, so that a disk still
// full or failing costs no reopen; readers keep reading the old databases
// up to the head until then, and wait for the reopen (or their context)
// while it runs. The reopened log may hold the failed group, whose
// appends were answered with errors (as an append whose caller stopped
// waiting may still commit); it must hold every acknowledged event.
func (s *Store) recover() error {
	if err := probe(s.probeFS, s.dir); err != nil {
		return err
	}
	s.dbMu.Lock()
	reopened := make(chan struct{})
	s.reopening = reopened
	old := opened{db: s.db, index: s.index}
	s.db, s.index = nil, nil
	s.dbMu.Unlock()
	old.close(s.log) // without flushing the index: Open re-indexes

	o, err := s.openDBs(context.Background(), 0)
	s.dbMu.Lock()
	s.db, s.index = o.db, o.index
	s.reopening = nil
	close(reopened)
	s.dbMu.Unlock()
	if err != nil {
		return err
	}
	if head := s.head.Load(); o.head < head {
		return fmt.Errorf("the log reopened at position %d, below the %d acknowledged: the disk lost acknowledged events; "+
			"stop the server and run callledger check: %w", o.head, head, ErrCorrupt)
	}
	s.opts.scanIDs = o.scan
	if o.head > s.head.Load() {
		s.publish(o.head)
	}
	s.faultMu.Lock()
	s.fault, s.recoverErr = nil, nil
	s.faultMu.Unlock()
	s.broken.Store(false)
	s.recoveries.Add(1)
	return nil
}

// group is the committer's state: the stream cache, which outlives
// groups, and the per-group overlay and scratch space, reused across
// groups.
type group struct {
	cache *streamCache
	// streams holds the streams the current group touched: their state
	// before the group and the group's writes to them. Requests of one
	// group see each other's writes through it; the cache learns them
	// only once the group is durable.
	streams map[string]*pending
	free    []*pending             // recycled pending entries
	key     []byte                 // scratch for keys
	dup     []bool                 // scratch: which events of a request are duplicates
	seen    map[uuid.UUID]struct{} // scratch: IDs of a large request
	replies []appendReply
	// writeErr is the first failure to add to a batch. The batches are
	// then incomplete, so the whole group fails and nothing is committed.
	writeErr error
}

// pending is a stream touched by the current group.
type pending struct {
	base   streamState // committed state; base.ids is shared with the cache, read only
	head   uint64      // the last revision after the group's writes so far
	exists bool
	// added holds the events the group wrote to the stream, in revision
	// order from base.head+1 (or 0 for a new stream).
	added []idPos
}

func newGroup(cacheSize int, durable func() (uint64, error)) *group {
	return &group{
		cache:   newStreamCache(cacheSize, durable),
		streams: make(map[string]*pending),
	}
}

// reset empties the overlay, keeping its entries for reuse.
func (g *group) reset() {
	for _, p := range g.streams {
		*p = pending{added: p.added[:0]}
		g.free = append(g.free, p)
	}
	if len(g.streams) > 4096 {
		// clear costs as much as the map is big, and most groups are small.
		g.streams = make(map[string]*pending)
		g.free = g.free[:0]
	} else {
		clear(g.streams)
	}
	g.writeErr = nil
}

// settle moves the states of the streams the group touched into the
// cache; called only once everything the group wrote is durable and in the
// index.
func (g *group) settle(scan int) error {
	var err error
	for stream, p := range g.streams {
		if !p.exists {
			continue // nothing to remember: the stream is created by a write
		}
		st := streamState{head: p.head, last: p.base.last, exists: true, ids: p.base.ids}
		if n := len(p.added); n > 0 {
			st.last = p.added[n-1].pos
		}
		rev := uint64(0)
		if p.base.exists {
			rev = p.base.head + 1
		}
		for _, e := range p.added {
			if rev >= uint64(scan) {
				break
			}
			if st.ids == nil {
				// Calls have 2–10 events: room for most in one allocation.
				st.ids = make([]idPos, 0, min(8, scan))
			}
			// The cache's entry holds base.ids with this length; appending
			// past it is invisible to that entry, which put replaces.
			st.ids = append(st.ids, e)
			rev++
		}
		if perr := g.cache.put(stream, st); err == nil {
			err = perr
		}
	}
	return err
}

// commitGroup processes reqs in order, writes one batch to the log and one
// to the index, syncs the log, and only then publishes the new head and
// replies.
func (s *Store) commitGroup(g *group, reqs []*appendReq) {
	if s.opts.beforeGroup != nil {
		s.opts.beforeGroup()
	}
	replies := g.replies[:0]
	for range reqs {
		replies = append(replies, appendReply{})
	}
	g.replies = replies
	defer clear(replies)
	refuse := func(err error) {
		for i := range reqs {
			replies[i] = appendReply{err: fmt.Errorf("append %s: %w", reqs[i].stream, err)}
		}
		s.reply(reqs, replies)
	}
	if err := s.unavailable(); err != nil {
		refuse(err)
		return
	}
	g.reset()
	// The barrier runs while the group's batches are built: it only has
	// to cover what was written before these appends were queued.
	var barrier chan error
	if s.opts.BeforeSync != nil {
		barrier = make(chan error, 1)
		go func() { barrier <- s.opts.BeforeSync() }()
	}

	lb, ib := s.db.NewBatch(), s.index.NewBatch()
	defer func() {
		for _, b := range []*pebble.Batch{lb, ib} {
			if err := b.Close(); err != nil {
				s.log.Error("release batch", errAttr(err))
			}
		}
	}()
	head := s.head.Load()
	next := head + 1
	created := time.Now().UnixNano()
	for i, req := range reqs {
		replies[i].res, replies[i].err = s.apply(g, lb, ib, req, &next, created)
	}
	s.appends.Add(uint64(len(reqs)))
	if !lb.Empty() {
		g.write(setApplied(ib, next-1))
	}

	if g.writeErr != nil {
		s.log.Error("group commit abandoned", "appends", len(reqs), errAttr(g.writeErr))
		for i := range reqs {
			replies[i] = appendReply{err: fmt.Errorf("append %s: %w: %w", reqs[i].stream, eventstore.ErrUnavailable, g.writeErr)}
		}
		s.reply(reqs, replies)
		return
	}
	if !lb.Empty() && barrier != nil {
		if err := <-barrier; err != nil {
			s.limit.Log(s.log, slog.LevelError, "before-sync", "group commit refused: what its events depend on is not durable",
				"appends", len(reqs), errAttr(err))
			refuse(fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err))
			return
		}
	}
	if !lb.Empty() {
		var began time.Time
		if s.opts.OnCommit != nil {
			began = time.Now()
		}
		err := s.commitBatch(lb)
		var took time.Duration
		if s.opts.OnCommit != nil {
			took = time.Since(began)
		}
		if err == nil {
			// The log is durable; the index follows it, without a WAL of
			// its own. Should this fail, the events are in the log but not
			// acknowledged: Open indexes them and a retry finds them.
			if err = pebblelog.Catch(func() error { return ib.Commit(pebble.NoSync) }); err != nil {
				err = fmt.Errorf("index: %w", err)
			}
		}
		if err != nil {
			s.fail(err)
			s.log.Error("group commit failed; refusing appends until the store has recovered",
				"appends", len(reqs), errAttr(err))
			refuse(fmt.Errorf("commit failed; the events may or may not be in the log, and appending them again is safe: %w: %w",
				eventstore.ErrUnavailable, err))
			return
		}
		s.commits.Add(1)
		s.events.Add(next - 1 - head)
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(CommitInfo{Appends: len(reqs), Events: int(next - 1 - head), Duration: took})
		}
	}
	if next-1 > head {
		s.publish(next - 1)
	}
	s.reply(reqs, replies)
	// Settling the cache after the answers keeps it off their latency; the
	// committer takes the next group only once this returns.
	if err := g.settle(s.opts.scanIDs); err != nil {
		// The group is durable and its answers stand, but the cache can no
		// longer vouch for what it dropped: stop writing until a reopen.
		s.fail(err)
		s.log.Error("stream cache failed; refusing appends until the store has recovered", errAttr(err))
	}
}

// commitBatch commits the log batch with a sync. When the WAL write or its
// sync fails, Pebble calls Logger.Fatalf ("fatal commit error"), which
// pebblelog turns into a panic that Catch returns here as the error.
func (s *Store) commitBatch(b *pebble.Batch) error {
	if s.opts.commit != nil {
		return s.opts.commit(b)
	}
	return pebblelog.Catch(func() error { return b.Commit(pebble.Sync) })
}

func (s *Store) reply(reqs []*appendReq, replies []appendReply) {
	for i, req := range reqs {
		req.reply <- replies[i]
	}
}

// apply judges one request against the store plus the group's earlier
// writes and, if it succeeds, adds its writes to the log batch lb and the
// index batch ib. next is the position the next written event gets.
func (s *Store) apply(g *group, lb, ib *pebble.Batch, req *appendReq, next *uint64, created int64) (eventstore.AppendResult, error) {
	p, err := s.pending(g, req.stream)
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
		if !isDup && p.exists {
			pos, found, err := s.lookupID(g, p, req.stream, id)
			if err != nil {
				return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", req.stream, err)
			}
			if found {
				isDup = true
				origMax = max(origMax, pos)
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
		return eventstore.AppendResult{NextRevision: p.head, Position: eventstore.Position(origMax), Duplicates: dups}, nil
	}
	if !req.expected.Check(p.head, p.exists) {
		return eventstore.AppendResult{}, &eventstore.WrongExpectedVersionError{
			Stream: req.stream, Expected: req.expected, Actual: p.head, Exists: p.exists,
		}
	}

	rev := uint64(0)
	if p.exists {
		rev = p.head + 1
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
		op := lb.SetDeferred(len(g.key), encodedLen(req.stream, ev.Type, ev.Metadata, ev.Data, rev, created))
		copy(op.Key, g.key)
		appendRecord(op.Value[:0], ev.ID, rev, created, req.stream, ev.Type, ev.Metadata, ev.Data)
		g.write(op.Finish())
		g.write(indexEvent(ib, &g.key, req.stream, rev, pos, ev.ID, s.opts.scanIDs))
		p.added = append(p.added, idPos{id: ev.ID, pos: pos})
		rev++
	}
	p.head, p.exists = rev-1, true
	return eventstore.AppendResult{NextRevision: p.head, Position: eventstore.Position(pos), Duplicates: dups}, nil
}

// write records the first error of adding to a batch.
func (g *group) write(err error) {
	if err != nil && g.writeErr == nil {
		g.writeErr = fmt.Errorf("add to batch: %w", err)
	}
}

// pending returns the stream's entry in the group's overlay, creating it
// from the cache or, on a miss, from the index.
func (s *Store) pending(g *group, stream string) (*pending, error) {
	if p, ok := g.streams[stream]; ok {
		return p, nil
	}
	st, ok := g.cache.get(stream)
	if !ok {
		var err error
		if st, err = loadStream(s.index, stream, s.opts.scanIDs, &g.key); err != nil {
			return nil, err
		}
	}
	var p *pending
	if n := len(g.free); n > 0 {
		p, g.free = g.free[n-1], g.free[:n-1]
	} else {
		p = new(pending)
	}
	p.base, p.head, p.exists = st, st.head, st.exists
	g.streams[stream] = p
	return p, nil
}

// lookupID finds an event ID in the stream: among the group's writes, the
// stream's first events and, in a long stream, the dedup index.
func (s *Store) lookupID(g *group, p *pending, stream string, id uuid.UUID) (uint64, bool, error) {
	for i := range p.added {
		if p.added[i].id == id {
			return p.added[i].pos, true, nil
		}
	}
	if pos, ok := p.base.find(id); ok {
		return pos, true, nil
	}
	if !p.base.exists || p.base.head < uint64(s.opts.scanIDs) {
		return 0, false, nil // every committed event of the stream was in base.ids
	}
	return lookupIDKey(s.index, stream, id, &g.key)
}
