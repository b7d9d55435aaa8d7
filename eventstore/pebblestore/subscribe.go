package pebblestore

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/callledger/callledger/eventstore"
)

// SubscribeAll follows the log after position from: the history first, then
// live events as they commit. ctx bounds the subscription's life: once it
// ends, Next returns its error. Next must not be called concurrently; Close
// may be called from any goroutine and wakes a pending Next.
func (s *Store) SubscribeAll(ctx context.Context, from eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("subscribe from %d: %w", from, err)
	}
	head, _, closed := s.snapshot()
	if closed {
		return nil, fmt.Errorf("subscribe from %d: %w", from, errClosed)
	}
	sub := &subscription{
		store:      s,
		ctx:        ctx,
		checkpoint: uint64(from),
		startHead:  head,
		max:        s.opts.SubscriptionBatchSize,
		window:     uint64(s.opts.SubscriptionBatchSize),
		closed:     make(chan struct{}),
	}
	if len(filter.StreamPrefixes) > 0 {
		sub.filter = &eventstore.Filter{StreamPrefixes: slices.Clone(filter.StreamPrefixes)}
		// Look further per batch when most events may be filtered out, so
		// that a sparse filter does not turn into many empty batches.
		sub.window *= 16
	}
	return sub, nil
}

type subscription struct {
	store      *Store
	ctx        context.Context
	filter     *eventstore.Filter
	checkpoint uint64 // everything up to here has been delivered
	startHead  uint64 // head when the subscription started
	caughtUp   bool
	max        int    // events per batch
	window     uint64 // positions looked at per batch

	closeOnce sync.Once
	closed    chan struct{}
}

// Next returns the next batch: events after the previous checkpoint, or an
// empty batch when the checkpoint moved past filtered events or the
// subscription first caught up.
func (sub *subscription) Next(ctx context.Context) (eventstore.Batch, error) {
	for {
		select {
		case <-sub.closed:
			return eventstore.Batch{}, eventstore.ErrSubscriptionClosed
		default:
		}
		if err := sub.ctx.Err(); err != nil {
			return eventstore.Batch{}, fmt.Errorf("subscription: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return eventstore.Batch{}, fmt.Errorf("subscription: %w", err)
		}
		head, wake, closed := sub.store.snapshot()
		if closed {
			return eventstore.Batch{}, fmt.Errorf("subscription: %w", errClosed)
		}
		if sub.checkpoint < head {
			return sub.read(ctx, head)
		}
		if !sub.caughtUp {
			// Nothing to deliver and nothing left from before the start:
			// tell the consumer it is live.
			sub.caughtUp = true
			return eventstore.Batch{Checkpoint: eventstore.Position(sub.checkpoint), CaughtUp: true}, nil
		}
		select {
		case <-wake:
		case <-sub.closed:
			return eventstore.Batch{}, eventstore.ErrSubscriptionClosed
		case <-sub.ctx.Done():
			return eventstore.Batch{}, fmt.Errorf("subscription: %w", sub.ctx.Err())
		case <-ctx.Done():
			return eventstore.Batch{}, fmt.Errorf("subscription: %w", ctx.Err())
		}
	}
}

// read delivers the next batch from (checkpoint, head].
func (sub *subscription) read(ctx context.Context, head uint64) (eventstore.Batch, error) {
	s := sub.store
	release, err := s.acquire(ctx)
	if err != nil {
		return eventstore.Batch{}, fmt.Errorf("subscription: %w", err)
	}
	defer release()
	to := min(head, saturatingAdd(sub.checkpoint, sub.window))
	var dst []eventstore.RecordedEvent
	if sub.filter == nil {
		dst = make([]eventstore.RecordedEvent, 0, min(uint64(sub.max), to-sub.checkpoint))
	}
	evs, last, err := s.scan(ctx, sub.checkpoint, to, sub.max, sub.filter, dst)
	if err != nil {
		return eventstore.Batch{}, fmt.Errorf("subscription after %d: %w", sub.checkpoint, err)
	}
	sub.checkpoint = last
	if sub.checkpoint >= sub.startHead {
		sub.caughtUp = true
	}
	return eventstore.Batch{Events: evs, Checkpoint: eventstore.Position(last), CaughtUp: sub.caughtUp}, nil
}

// Close ends the subscription; a pending Next returns ErrSubscriptionClosed.
func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() { close(sub.closed) })
	return nil
}
