package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/callledger/callledger/eventstore"
)

// Page sizes of reads: one page is one call with its own deadline.
const (
	streamPage = 1000 // events of a stream per read
	allPage    = 1000 // most events of $all per forward read
	backPage   = 256  // events of $all per backward read (Head, position lookups)
)

// readStreamPage reads up to n events of stream from revision from on.
func (s *Store) readStreamPage(ctx context.Context, c *esdb.Client, stream string, from uint64, n int) ([]*esdb.RecordedEvent, error) {
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{From: esdb.Revision(from), Deadline: &s.opTimeout}, uint64(n))
	if err != nil {
		return nil, err
	}
	return drain(rs, n)
}

// readAllPage reads up to n events of $all from a position (forwards:
// inclusive; the server's backward reads stop before it).
func (s *Store) readAllPage(ctx context.Context, c *esdb.Client, dir esdb.Direction, from esdb.AllPosition, n int) ([]*esdb.RecordedEvent, error) {
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: dir, From: from, Deadline: &s.opTimeout}, uint64(n))
	if err != nil {
		return nil, err
	}
	return drain(rs, n)
}

// drain reads an iterator to its end and closes it: an abandoned iterator
// keeps its gRPC stream open.
func drain(rs *esdb.ReadStream, n int) ([]*esdb.RecordedEvent, error) {
	defer rs.Close()
	out := make([]*esdb.RecordedEvent, 0, min(n, 256))
	for {
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e.OriginalEvent())
	}
}

// ReadStream returns up to limit events of stream from revision from on.
// A stream without events, or tombstoned, gives ErrStreamNotFound.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	op := "read stream " + stream
	if err := validateStream(stream); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%s: limit %d: %w", op, limit, eventstore.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	name := s.ns + stream
	out := make([]eventstore.RecordedEvent, 0, min(limit, 64))
	for rev := from; len(out) < limit; {
		n := min(limit-len(out), streamPage)
		r := rev
		evs, err := call(s, ctx, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
			return s.readStreamPage(ctx, c, name, r, n)
		})
		if err != nil {
			return nil, s.portErr(ctx, op, err, eventstore.ErrStreamNotFound)
		}
		for _, e := range evs {
			out = append(out, s.recorded(e))
		}
		if len(evs) < n {
			break
		}
		rev = evs[len(evs)-1].EventNumber + 1
	}
	return out, nil
}

// ReadAll returns up to limit events of the ledger after position from, in
// log order. System events are skipped: they are not the ledger's.
func (s *Store) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	op := fmt.Sprintf("read all from %d", from)
	if limit <= 0 {
		return nil, fmt.Errorf("%s: limit %d: %w", op, limit, eventstore.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	out := []eventstore.RecordedEvent{}
	err := s.scanAll(ctx, from, limit+1, func(e *esdb.RecordedEvent) bool {
		if s.visible(e) {
			out = append(out, s.recorded(e))
		}
		return len(out) < limit
	})
	if err != nil {
		return nil, s.portErr(ctx, op, err, eventstore.ErrUnavailable)
	}
	return out, nil
}

// Head returns the position of the ledger's last event, reading $all
// backwards past the server's own events.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	head := eventstore.Start
	err := s.scanBack(ctx, func(e *esdb.RecordedEvent) bool {
		if s.visible(e) {
			head = eventstore.Position(e.Position.Commit)
			return false
		}
		return true
	})
	if err != nil {
		return 0, s.portErr(ctx, "head", err, eventstore.ErrUnavailable)
	}
	return head, nil
}

// scanAll calls visit with each event of $all (system events included)
// after position from, in order, until visit returns false or the log
// ends. page is the read size it starts with; it grows while visit wants
// more.
//
// The server reads from a position inclusively, so scanAll skips the event
// at from. A position that is not an event's (the port allows any) makes
// the server answer InvalidArgument: scanAll then starts from the last
// event at or before it instead.
func (s *Store) scanAll(ctx context.Context, from eventstore.Position, page int, visit func(*esdb.RecordedEvent) bool) error {
	page = max(2, min(page, allPage))
	var start esdb.AllPosition = esdb.Start{}
	if from > 0 {
		start = esdb.Position{Commit: uint64(from), Prepare: uint64(from)}
	}
	cur := uint64(from)
	resolved := false
	for {
		st, n := start, page
		evs, err := call(s, ctx, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
			return s.readAllPage(ctx, c, esdb.Forwards, st, n)
		})
		if err != nil {
			if resolved || cur == 0 || !invalidArgument(err) {
				return err
			}
			resolved = true
			if start, err = s.floor(ctx, cur); err != nil {
				return err
			}
			continue
		}
		progressed := false
		for _, e := range evs {
			if e.Position.Commit <= cur {
				continue
			}
			cur, start, progressed = e.Position.Commit, e.Position, true
			if !visit(e) {
				return nil
			}
		}
		if len(evs) < n || !progressed {
			return nil
		}
		page = min(4*page, allPage)
	}
}

// scanBack calls visit with each event of $all from the end backwards
// until visit returns false or the log's start.
func (s *Store) scanBack(ctx context.Context, visit func(*esdb.RecordedEvent) bool) error {
	var before esdb.AllPosition = esdb.End{}
	lowest := uint64(math.MaxUint64)
	for {
		b := before
		evs, err := call(s, ctx, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
			return s.readAllPage(ctx, c, esdb.Backwards, b, backPage)
		})
		if err != nil {
			return err
		}
		progressed := false
		for _, e := range evs {
			// Tolerate a server whose backward reads include the start.
			if e.Position.Commit >= lowest {
				continue
			}
			lowest, before, progressed = e.Position.Commit, e.Position, true
			if !visit(e) {
				return nil
			}
		}
		if len(evs) < backPage || !progressed {
			return nil
		}
	}
}

// floor returns the position of the last event at or before p, where reads
// and subscriptions may start, or Start when there is none. It scans
// backwards from the end, so it costs a read per backPage events after p:
// it serves only positions this adapter never hands out.
func (s *Store) floor(ctx context.Context, p uint64) (esdb.AllPosition, error) {
	var found esdb.AllPosition = esdb.Start{}
	err := s.scanBack(ctx, func(e *esdb.RecordedEvent) bool {
		if e.Position.Commit <= p {
			found = e.Position
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	s.log.Debug("position is not an event's; starting from the event before it", "position", p, "start", found)
	return found, nil
}
