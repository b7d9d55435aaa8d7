// Package projections runs projections: it follows the event log from a
// projection's checkpoint, catching up and then staying live, and hands
// each batch to the projection, which applies it together with its new
// checkpoint atomically. After a failure it resubscribes from the
// checkpoint, so nothing is skipped and nothing applied twice.
package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/callledger/callledger/eventstore"
)

// Source is the part of the event store a runner reads.
type Source interface {
	SubscribeAll(ctx context.Context, from eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error)
}

// Sink is a projection's storage: where it stands, and how a batch is
// applied with its checkpoint in one atomic write.
type Sink interface {
	Checkpoint(ctx context.Context) (eventstore.Position, error)
	Apply(ctx context.Context, batch eventstore.Batch) error
}

// Runner feeds a Sink from a Source.
type Runner struct {
	src      Source
	sink     Sink
	filter   eventstore.Filter
	log      *slog.Logger
	caughtUp atomic.Bool
	// MinBackoff and MaxBackoff bound the wait before resubscribing.
	MinBackoff, MaxBackoff time.Duration
}

// NewRunner returns a runner that feeds sink with the events of src that
// filter keeps.
func NewRunner(src Source, sink Sink, filter eventstore.Filter, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{src: src, sink: sink, filter: filter, log: log, MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second}
}

// CaughtUp reports whether the runner has reached the head of the log at
// least once since it started: before that, queries answer from the past.
func (r *Runner) CaughtUp() bool { return r.caughtUp.Load() }

// Run follows the log until ctx ends, resubscribing with backoff after any
// failure. It returns ctx's error.
func (r *Runner) Run(ctx context.Context) error {
	backoff := r.MinBackoff
	for {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errProgress) {
			// It worked until now: retry soon, not after the backoff of
			// failures before that.
			backoff = r.MinBackoff
		}
		r.log.Warn("projection subscription ended; resubscribing", "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, r.MaxBackoff)
	}
}

// errProgress marks a subscription that delivered before it failed, so the
// next attempt starts with the shortest backoff.
var errProgress = errors.New("subscription failed after progress")

func (r *Runner) follow(ctx context.Context) error {
	from, err := r.sink.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	sub, err := r.src.SubscribeAll(ctx, from, r.filter)
	if err != nil {
		return fmt.Errorf("subscribe from %d: %w", from, err)
	}
	defer sub.Close()
	progressed := false
	for {
		batch, err := sub.Next(ctx)
		if err != nil {
			if progressed {
				return fmt.Errorf("%w: %w", errProgress, err)
			}
			return fmt.Errorf("next batch after %d: %w", from, err)
		}
		if err := r.sink.Apply(ctx, batch); err != nil {
			return fmt.Errorf("apply batch up to %d: %w", batch.Checkpoint, err)
		}
		progressed = true
		if batch.CaughtUp && !r.caughtUp.Swap(true) {
			r.log.Info("projection caught up", "position", batch.Checkpoint)
		}
	}
}
