// Package storecopy copies a ledger from one event store to another —
// from the embedded store to KurrentDB when one machine is no longer
// enough, or between two KurrentDB databases — keeping every event's
// stream, revision, ID and type, in the order of the source. An event the
// destination already holds (same stream and ID) is not written again, so
// an interrupted copy is finished by running it again.
package storecopy

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/callledger/callledger/eventstore"
)

// Transform returns what rec is to be written as; its ID and type must be
// rec's. It may be called from several goroutines, for events of different
// streams.
type Transform func(ctx context.Context, rec *eventstore.RecordedEvent) (eventstore.EventData, error)

// Options tune Copy; the zero value is ready to use.
type Options struct {
	// Workers append concurrently, each the events of its own streams in
	// their order (default 32): a KurrentDB append is a round trip.
	Workers int
	// ReadBatch is how many events one read of the source returns
	// (default 1,024).
	ReadBatch int
	// Transform, when set, makes what is written of each event (sealing
	// its personal data, for instance); nil copies it as it is.
	Transform Transform
	// Progress, when set, is told what has been done after each read
	// batch is written.
	Progress func(Report)
}

// Report says what Copy did.
type Report struct {
	// Read events of the source; Written to the destination; Present were
	// there already (an earlier, interrupted copy).
	Read, Written, Present uint64
	// Last is the source position of the last event copied.
	Last eventstore.Position
}

// Copy appends every event of src, from its start, to dst. Each event is
// appended to its stream expecting the revision before its own, so that
// the destination's streams are the source's, revision for revision: a
// destination whose stream differs (another event at that revision) stops
// the copy with an eventstore.ErrWrongExpectedVersion error. The
// destination gives its own positions and creation times; what callledger
// reads of an event (its data) is copied, as is its metadata.
func Copy(ctx context.Context, src, dst eventstore.Store, opts Options) (Report, error) {
	if opts.Workers <= 0 {
		opts.Workers = 32
	}
	if opts.ReadBatch <= 0 {
		opts.ReadBatch = 1024
	}
	if opts.Transform == nil {
		opts.Transform = func(_ context.Context, rec *eventstore.RecordedEvent) (eventstore.EventData, error) {
			return eventstore.EventData{ID: rec.ID, Type: rec.Type, Data: rec.Data, Metadata: rec.Metadata}, nil
		}
	}
	var rep Report
	seed := maphash.MakeSeed()
	from := eventstore.Start
	for {
		batch, err := src.ReadAll(ctx, from, opts.ReadBatch)
		if err != nil {
			return rep, fmt.Errorf("copy: read from %d: %w", from, err)
		}
		if len(batch) == 0 {
			return rep, nil
		}
		written, present, err := appendBatch(ctx, dst, batch, opts, seed)
		rep.Written += written
		rep.Present += present
		if err != nil {
			return rep, err
		}
		rep.Read += uint64(len(batch))
		from = batch[len(batch)-1].Position
		rep.Last = from
		if opts.Progress != nil {
			opts.Progress(rep)
		}
	}
}

// appendBatch appends the events of batch to dst, each stream's in order
// on the worker its name hashes to, and waits for all of them.
func appendBatch(ctx context.Context, dst eventstore.Store, batch []eventstore.RecordedEvent, opts Options, seed maphash.Seed) (written, present uint64, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lanes := make([][]*eventstore.RecordedEvent, opts.Workers)
	for i := range batch {
		l := maphash.String(seed, batch[i].Stream) % uint64(len(lanes))
		lanes[l] = append(lanes[l], &batch[i])
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		wg.Go(func() {
			for _, rec := range lane {
				dup, err := appendOne(ctx, dst, rec, opts.Transform)
				if err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				if dup {
					present++
				} else {
					written++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return written, present, err
	}
	return written, present, nil
}

// appendOne appends rec to its stream at its revision; dup reports an
// event the destination held already.
func appendOne(ctx context.Context, dst eventstore.Store, rec *eventstore.RecordedEvent, transform Transform) (dup bool, err error) {
	ev, err := transform(ctx, rec)
	if err != nil {
		return false, fmt.Errorf("copy: event %s at position %d: %w", rec.ID, rec.Position, err)
	}
	if ev.ID != rec.ID || ev.Type != rec.Type {
		return false, fmt.Errorf("copy: event %s at position %d: the transform made %s %s of it", rec.ID, rec.Position, ev.Type, ev.ID)
	}
	expected := eventstore.NoStream()
	if rec.Revision > 0 {
		expected = eventstore.Revision(rec.Revision - 1)
	}
	res, err := dst.Append(ctx, rec.Stream, expected, ev)
	if err != nil {
		return false, fmt.Errorf("copy: event %s (stream %s, revision %d, position %d): %w", rec.ID, rec.Stream, rec.Revision, rec.Position, err)
	}
	return len(res.Duplicates) > 0, nil
}
