package kurrentdb

import (
	"context"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
)

// statePage is the page size of the read that precedes every append.
const statePage = 500

// streamState is a stream as an append read it.
type streamState struct {
	exists bool
	head   uint64 // last revision, when exists
	ids    map[uuid.UUID]eventstore.Position
}

// Append writes events to stream exactly once by event ID (see the package
// documentation): it reads the stream, drops the events already there (and
// repeats within the append), checks the caller's expected state against
// the stream as read, and appends the rest with the exact revision it read.
// When another writer gets there first, the server refuses that revision;
// Append then reads again and repeats, as long as the caller's expected
// state still holds.
//
// If ctx ends or the server does not answer, the append may still have
// been written: retrying it with the same event IDs is safe.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	op := "append " + stream
	if err := validateStream(stream); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := validateEvents(events); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("%s: %w", op, err)
	}
	if s.closed.Load() {
		return eventstore.AppendResult{}, fmt.Errorf("%s: %w", op, errClosed)
	}
	// A call given up on (ctx, timeout) may still be sending: it must not
	// read buffers the caller reuses after Append returns.
	events = copyEvents(events)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()

	name := s.ns + stream
	lane := s.lane(stream)
	conflicts, losses := 0, 0
	for {
		// Decide on a read made without the lock, so that appends bound to
		// fail (wrong expected state, duplicates) do not queue behind the
		// writers of the stream.
		ver := lane.ver.Load()
		st, err := s.readState(ctx, name)
		if err != nil {
			// A tombstoned stream can never be appended to again.
			return eventstore.AppendResult{}, s.portErr(ctx, op, err, eventstore.ErrInvalidArgument)
		}
		if res, err, done := decide(stream, expected, events, st); done {
			return res, err
		}
		if err := lane.lock(ctx); err != nil {
			return eventstore.AppendResult{}, s.portErr(ctx, op, err, eventstore.ErrUnavailable)
		}
		if lane.ver.Load() != ver {
			// Another append of this process wrote to the stream since the
			// read: decide again on a new read. After a few such losses,
			// read under the lock, where nothing of this process can
			// intervene, so that every append makes progress.
			if losses++; losses < 3 {
				lane.unlock()
				continue
			}
			if st, err = s.readState(ctx, name); err != nil {
				lane.unlock()
				return eventstore.AppendResult{}, s.portErr(ctx, op, err, eventstore.ErrInvalidArgument)
			}
			if res, err, done := decide(stream, expected, events, st); done {
				lane.unlock()
				return res, err
			}
		}
		fresh, dups, dupPos := dedupe(events, st)
		wr, err := s.write(ctx, name, st, fresh)
		if err == nil {
			lane.ver.Add(1)
		}
		lane.unlock()
		switch {
		case err == nil:
			next := uint64(len(fresh)) - 1
			if st.exists {
				next += st.head + 1
			}
			if wr.CommitPosition != 0 && wr.NextExpectedVersion == next {
				pos := eventstore.Position(wr.CommitPosition)
				if len(fresh) > 1 {
					pos = s.positionOf(ctx, name, next, pos)
				}
				return eventstore.AppendResult{NextRevision: next, Position: max(pos, dupPos), Duplicates: dups}, nil
			}
			// An answer without a position (servers before 21.x) or with
			// another revision: the server found the events already there,
			// written meanwhile by another process. Read again to report
			// them as duplicates.
		case hasCode(err, esdb.ErrorCodeWrongExpectedVersion):
			// Another process wrote first.
			s.conflicts.Add(1)
		default:
			return eventstore.AppendResult{}, s.portErr(ctx, op, err, eventstore.ErrInvalidArgument)
		}
		if conflicts++; conflicts >= s.opts.MaxAppendAttempts {
			return eventstore.AppendResult{}, fmt.Errorf("%s: still racing other writers after %d attempts: %w", op, conflicts, eventstore.ErrUnavailable)
		}
		s.log.Debug("append lost a race; reading the stream again", "stream", stream, "attempt", conflicts)
		if !sleep(ctx, jitter(conflicts)) {
			return eventstore.AppendResult{}, s.portErr(ctx, op, ctx.Err(), eventstore.ErrUnavailable)
		}
	}
}

// decide answers an append from the stream as read, when it needs no
// write: every event is a duplicate (success whatever the expected state),
// or the expected state does not hold.
func decide(stream string, expected eventstore.StreamState, events []eventstore.EventData, st streamState) (eventstore.AppendResult, error, bool) {
	fresh, dups, dupPos := dedupe(events, st)
	if len(fresh) == 0 {
		return eventstore.AppendResult{NextRevision: st.head, Position: dupPos, Duplicates: dups}, nil, true
	}
	if !expected.Check(st.head, st.exists) {
		return eventstore.AppendResult{}, &eventstore.WrongExpectedVersionError{
			Stream: stream, Expected: expected, Actual: st.head, Exists: st.exists,
		}, true
	}
	return eventstore.AppendResult{}, nil, false
}

// readState reads the stream: its head and the IDs it holds. It starts
// after the prefix the cache knows (the events of a stream never change),
// and pages through long streams.
func (s *Store) readState(ctx context.Context, name string) (streamState, error) {
	st, known := s.prefixes.get(name)
	from := uint64(0)
	if known {
		from = st.head + 1
	}
	var ids map[uuid.UUID]eventstore.Position // copied on the first new event
	for rev := from; ; {
		r := rev
		evs, err := call(s, ctx, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
			return s.readStreamPage(ctx, c, name, r, statePage)
		})
		if err != nil {
			if hasCode(err, esdb.ErrorCodeResourceNotFound) && rev == from {
				// No events to read: a new stream, or one deleted since the
				// cache learnt it (its revisions go on, but the old events
				// are no longer the stream's).
				s.prefixes.drop(name)
				return streamState{ids: map[uuid.UUID]eventstore.Position{}}, nil
			}
			return streamState{}, err
		}
		if len(evs) > 0 && ids == nil {
			ids = make(map[uuid.UUID]eventstore.Position, len(st.ids)+len(evs))
			for id, pos := range st.ids {
				ids[id] = pos
			}
			st.ids = ids
		}
		for _, e := range evs {
			ids[e.EventID] = eventstore.Position(e.Position.Commit)
			st.head, st.exists = e.EventNumber, true
		}
		if len(evs) < statePage {
			break
		}
		rev = st.head + 1
	}
	if st.ids == nil {
		st.ids = map[uuid.UUID]eventstore.Position{}
	}
	if ids != nil {
		s.prefixes.put(name, st)
	}
	return st, nil
}

// dedupe splits events into those to write and the IDs already in the
// stream or repeated within the append, in input order, with the highest
// position among the originals.
func dedupe(events []eventstore.EventData, st streamState) (fresh []eventstore.EventData, dups []uuid.UUID, dupPos eventstore.Position) {
	seen := make(map[uuid.UUID]bool, len(events))
	for _, ev := range events {
		if pos, ok := st.ids[ev.ID]; ok {
			dups = append(dups, ev.ID)
			dupPos = max(dupPos, pos)
			continue
		}
		if seen[ev.ID] {
			dups = append(dups, ev.ID)
			continue
		}
		seen[ev.ID] = true
		fresh = append(fresh, ev)
	}
	return fresh, dups, dupPos
}

// write appends fresh with the exact expected revision the stream was read
// at (NoStream when it had no events): the server checks it against the
// log, so a concurrent writer makes it fail rather than write twice. The
// server's recent-ID cache (Any) is never relied on.
func (s *Store) write(ctx context.Context, name string, st streamState, fresh []eventstore.EventData) (*esdb.WriteResult, error) {
	var exp esdb.ExpectedRevision = esdb.NoStream{}
	if st.exists {
		exp = esdb.Revision(st.head)
	}
	data := make([]esdb.EventData, len(fresh))
	for i, e := range fresh {
		data[i] = esdb.EventData{EventID: e.ID, EventType: e.Type, ContentType: esdb.ContentTypeBinary, Data: e.Data, Metadata: e.Metadata}
	}
	return call(s, ctx, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, name, esdb.AppendToStreamOptions{ExpectedRevision: exp, Deadline: &s.opTimeout}, data...)
	})
}

// positionOf returns the position of the event at revision rev, read back:
// for an append of several events, the server's commit position is not
// documented to be the last event's, and the port promises exactly that.
// If the read fails, the written result stands with fallback.
func (s *Store) positionOf(ctx context.Context, name string, rev uint64, fallback eventstore.Position) eventstore.Position {
	evs, err := call(s, ctx, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		return s.readStreamPage(ctx, c, name, rev, 1)
	})
	if err != nil || len(evs) != 1 || evs[0].EventNumber != rev {
		s.log.Debug("cannot read back the last appended event; using the commit position", "stream", name, "revision", rev, "err", err)
		return fallback
	}
	return eventstore.Position(evs[0].Position.Commit)
}

// copyEvents copies the events and their payloads.
func copyEvents(events []eventstore.EventData) []eventstore.EventData {
	out := make([]eventstore.EventData, len(events))
	for i, ev := range events {
		out[i] = eventstore.EventData{ID: ev.ID, Type: ev.Type, Data: clone(ev.Data), Metadata: clone(ev.Metadata)}
	}
	return out
}
