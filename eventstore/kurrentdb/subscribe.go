package kurrentdb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/eventstore"
)

const (
	// searchWindow is the server's filtered read page and checkpoint
	// interval (in considered events, with a multiplier of 1).
	searchWindow = 128
	// Resubscription backoff after a drop.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	// probeScan bounds the events one idle probe considers.
	probeScan = 512
	// maxIdleFactor bounds the idle probe's backoff.
	maxIdleFactor = 16
)

// jitter returns a randomised wait around attempt × 5 ms.
func jitter(attempt int) time.Duration {
	base := time.Duration(attempt) * 5 * time.Millisecond
	return base/2 + rand.N(base)
}

// SubscribeAll follows the ledger's log after position from: a catch-up
// subscription to $all with a server-side stream-prefix filter (or, with
// no prefixes, one that excludes the server's system streams), catching up
// and then live.
//
// Drops (the server restarting or unreachable, Aborted "consumer too
// slow", a follower's not-leader…) are hidden: the subscription resubscribes
// with backoff from the last position it received, so that nothing is lost
// or repeated. Only Close, the end of ctx, or Close of the store end it.
//
// The head of the log is read first, to report CaughtUp even on servers
// that do not send caught_up (before 23.10).
func (s *Store) SubscribeAll(ctx context.Context, from eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	op := fmt.Sprintf("subscribe from %d", from)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("%s: %w", op, errClosed)
	}
	head, err := s.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	pumpCtx, cancel := context.WithCancel(ctx)
	unregister := context.AfterFunc(s.stopCtx, cancel)
	sub := &subscription{
		s:         s,
		ctx:       ctx,
		pumpCtx:   pumpCtx,
		cancel:    cancel,
		filter:    eventstore.Filter{StreamPrefixes: slices.Clone(filter.StreamPrefixes)},
		startHead: head,
		received:  from,
		delivered: from,
		wake:      make(chan struct{}, 1),
		room:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
	sub.server = s.serverFilter(sub.filter)
	if from >= head {
		sub.caughtUp, sub.caughtUpAt = true, from
	}
	go func() {
		defer unregister()
		sub.pump()
	}()
	return sub, nil
}

// serverFilter is the filter the server applies: the port's prefixes
// (within the namespace), else the namespace, else every stream that is
// not the server's own. The subscription still checks every event itself.
func (s *Store) serverFilter(f eventstore.Filter) *esdb.SubscriptionFilter {
	if len(f.StreamPrefixes) == 0 || slices.Contains(f.StreamPrefixes, "") {
		if s.ns != "" {
			return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{s.ns}}
		}
		return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: "^[^$]"}
	}
	prefixes := make([]string, len(f.StreamPrefixes))
	for i, p := range f.StreamPrefixes {
		prefixes[i] = s.ns + p
	}
	return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: prefixes}
}

type subscription struct {
	s         *Store
	ctx       context.Context // SubscribeAll's: the subscription's life
	pumpCtx   context.Context // ends with ctx, Close, or the store's Close
	cancel    context.CancelFunc
	filter    eventstore.Filter
	server    *esdb.SubscriptionFilter
	startHead eventstore.Position

	mu sync.Mutex
	// pending holds events received and not yet delivered.
	pending []eventstore.RecordedEvent
	// received is the highest position received from the server (event or
	// checkpoint) or proven by a probe: every matching event up to it is
	// delivered or pending. Resubscriptions start after it.
	received eventstore.Position
	// delivered is the last batch's checkpoint.
	delivered eventstore.Position
	// caughtUp is set once received reaches the head the subscription
	// started with, or the server says caught_up; batches report it from
	// caughtUpAt on, and reported stays true for good.
	caughtUp   bool
	caughtUpAt eventstore.Position
	reported   bool
	// override is where to resubscribe instead of after received, when the
	// server refused received as a position (not an event's).
	override esdb.AllPosition

	wake   chan struct{} // something to deliver
	room   chan struct{} // pending shrank
	closed chan struct{}

	closeOnce sync.Once
}

// Next returns the next batch: events (coalesced from what arrived), or an
// empty batch when the checkpoint moved past skipped events or the
// subscription caught up.
func (sub *subscription) Next(ctx context.Context) (eventstore.Batch, error) {
	idle := sub.s.opts.IdleCheckpointInterval
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
		if sub.s.closed.Load() {
			return eventstore.Batch{}, fmt.Errorf("subscription: %w", errClosed)
		}
		sub.mu.Lock()
		b, ok := sub.takeLocked()
		live := sub.reported
		sub.mu.Unlock()
		if ok {
			select {
			case sub.room <- struct{}{}:
			default:
			}
			return b, nil
		}
		var timer *time.Timer
		var probe <-chan time.Time
		if live && idle > 0 {
			timer = time.NewTimer(idle)
			probe = timer.C
		}
		select {
		case <-sub.wake:
		case <-probe:
			if !sub.probe(ctx) {
				idle = min(2*idle, maxIdleFactor*sub.s.opts.IdleCheckpointInterval)
			}
		case <-sub.closed:
		case <-sub.ctx.Done():
		case <-ctx.Done():
		case <-sub.s.stopCtx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// takeLocked takes the next batch, if there is anything to deliver.
func (sub *subscription) takeLocked() (eventstore.Batch, bool) {
	n := len(sub.pending)
	newlyCaughtUp := sub.caughtUp && !sub.reported && sub.received >= sub.caughtUpAt
	if n == 0 && sub.received <= sub.delivered && !newlyCaughtUp {
		return eventstore.Batch{}, false
	}
	var b eventstore.Batch
	if max := sub.s.opts.SubscriptionBatchSize; n > max {
		b.Events = slices.Clone(sub.pending[:max])
		sub.pending = sub.pending[max:]
		b.Checkpoint = b.Events[max-1].Position
	} else {
		b.Events, sub.pending = sub.pending, nil
		b.Checkpoint = sub.received
	}
	sub.delivered = b.Checkpoint
	if sub.caughtUp && b.Checkpoint >= sub.caughtUpAt {
		sub.reported = true
	}
	b.CaughtUp = sub.reported
	return b, true
}

// Close ends the subscription; a pending Next returns ErrSubscriptionClosed.
func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() {
		close(sub.closed)
		sub.cancel()
	})
	return nil
}

func (sub *subscription) signal() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// keep reports whether the subscription delivers e.
func (sub *subscription) keep(e *esdb.RecordedEvent) bool {
	return sub.s.visible(e) && sub.filter.Match(e.StreamID[len(sub.s.ns):])
}

// noteCaughtUpLocked marks the subscription caught up once it has received
// everything up to the head it started with.
func (sub *subscription) noteCaughtUpLocked() {
	if !sub.caughtUp && sub.received >= sub.startHead {
		sub.caughtUp, sub.caughtUpAt = true, sub.received
	}
}

// pump keeps a server subscription open from the last position received,
// resubscribing after drops, until the subscription ends.
func (sub *subscription) pump() {
	s := sub.s
	backoff := minBackoff
	for sub.pumpCtx.Err() == nil {
		es, release, err := s.openSubscription(sub.pumpCtx, sub.start(), sub.server)
		if err == nil {
			var progressed bool
			err, progressed = sub.consume(es)
			_ = es.Close()
			release()
			if progressed {
				backoff = minBackoff
			}
		}
		if sub.pumpCtx.Err() != nil {
			return
		}
		if status.Code(err) == codes.InvalidArgument && sub.resolve() {
			continue
		}
		s.resubscriptions.Add(1)
		s.log.Warn("subscription dropped; resubscribing", "after", sub.start(), "backoff", backoff, "err", err)
		if !sleep(sub.pumpCtx, backoff/2+rand.N(backoff)) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// start is where the next server subscription starts (exclusive).
func (sub *subscription) start() esdb.AllPosition {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.override != nil {
		return sub.override
	}
	if sub.received == 0 {
		return esdb.Start{}
	}
	return esdb.Position{Commit: uint64(sub.received), Prepare: uint64(sub.received)}
}

// resolve handles a server refusing the start position (a position that
// is not an event's, which the port allows): it looks up the event before
// it once, and reports whether to resubscribe at once.
func (sub *subscription) resolve() bool {
	sub.mu.Lock()
	p, again := sub.received, sub.override != nil
	sub.mu.Unlock()
	if again || p == 0 {
		return false
	}
	start, err := sub.s.floor(sub.pumpCtx, uint64(p))
	if err != nil {
		return false
	}
	sub.mu.Lock()
	if sub.received == p {
		sub.override = start
	}
	sub.mu.Unlock()
	return true
}

// openSubscription subscribes to $all; the release function ends it and
// frees its client.
func (s *Store) openSubscription(ctx context.Context, from esdb.AllPosition, f *esdb.SubscriptionFilter) (*esdb.Subscription, func(), error) {
	opts := esdb.SubscribeToAllOptions{From: from, Filter: f, MaxSearchWindow: searchWindow, CheckpointInterval: 1}
	return runOn(s.conn, ctx, s.bound, true, func(ctx context.Context, c *esdb.Client) (*esdb.Subscription, error) {
		return c.SubscribeToAll(ctx, opts)
	}, func(es *esdb.Subscription) { _ = es.Close() })
}

// consume reads a server subscription until it drops, returning why and
// whether it moved the subscription forward.
func (sub *subscription) consume(es *esdb.Subscription) (dropped error, progressed bool) {
	for {
		e := es.Recv()
		switch {
		case e.SubscriptionDropped != nil:
			return e.SubscriptionDropped.Error, progressed
		case e.EventAppeared != nil:
			if sub.onEvent(e.EventAppeared.OriginalEvent()) {
				progressed = true
			}
			if !sub.waitRoom() {
				return sub.pumpCtx.Err(), progressed
			}
		case e.CheckPointReached != nil:
			if sub.onPosition(eventstore.Position(e.CheckPointReached.Commit)) {
				progressed = true
			}
		case e.CaughtUp != nil:
			sub.onCaughtUp()
		}
	}
}

// onEvent takes an event from the server; events at or before the last
// position received (a resubscription's overlap) are ignored.
func (sub *subscription) onEvent(e *esdb.RecordedEvent) bool {
	p := eventstore.Position(e.Position.Commit)
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if p <= sub.received {
		return false
	}
	sub.received, sub.override = p, nil
	if sub.keep(e) {
		sub.pending = append(sub.pending, sub.s.recorded(e))
	}
	sub.noteCaughtUpLocked()
	sub.signal()
	return true
}

// onPosition takes a checkpoint: every matching event up to p has been
// sent.
func (sub *subscription) onPosition(p eventstore.Position) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if p <= sub.received {
		return false
	}
	sub.received, sub.override = p, nil
	sub.noteCaughtUpLocked()
	sub.signal()
	return true
}

// onCaughtUp takes the server's caught_up: it has sent every matching event
// up to its end of the log, which is at or after the head this
// subscription started with.
func (sub *subscription) onCaughtUp() {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.received < sub.startHead {
		sub.received, sub.override = sub.startHead, nil
	}
	sub.noteCaughtUpLocked()
	sub.signal()
}

// waitRoom bounds pending: while the consumer lags, the pump stops reading
// and the server's flow control (or, on old servers, a "consumer too
// slow" drop and a resubscription) takes over.
func (sub *subscription) waitRoom() bool {
	limit := 4 * sub.s.opts.SubscriptionBatchSize
	sub.mu.Lock()
	for len(sub.pending) >= limit {
		sub.mu.Unlock()
		select {
		case <-sub.room:
		case <-sub.pumpCtx.Done():
			return false
		}
		sub.mu.Lock()
	}
	sub.mu.Unlock()
	return true
}

// probe moves a live subscription's checkpoint past events its filter
// skips, which the server reports only once per window of considered
// events: it reads the log after the last checkpoint and advances to just
// before the first event the subscription would deliver. Sound because the
// read sees committed events only, so no event can later appear at or
// before a position it has read past. It reports whether it advanced.
func (sub *subscription) probe(ctx context.Context) bool {
	sub.mu.Lock()
	from := sub.delivered
	busy := len(sub.pending) > 0 || sub.received > sub.delivered
	sub.mu.Unlock()
	if busy {
		return true
	}
	// The read ends with the subscription too (Close, its context, the
	// store's Close), not only with Next's context: a Close must wake Next.
	pctx, cancel := sub.s.opCtx(ctx)
	defer cancel()
	defer context.AfterFunc(sub.pumpCtx, cancel)()
	proven, considered := from, 0
	err := sub.s.scanAll(pctx, from, probeScan, func(e *esdb.RecordedEvent) bool {
		if sub.keep(e) {
			return false
		}
		proven = eventstore.Position(e.Position.Commit)
		considered++
		return considered < probeScan
	})
	if err != nil {
		sub.s.log.Debug("idle checkpoint probe failed", "after", from, "err", err)
	}
	if proven <= from {
		return false
	}
	sub.mu.Lock()
	advanced := proven > sub.received
	if advanced {
		sub.received, sub.override = proven, nil
		sub.noteCaughtUpLocked()
	}
	sub.mu.Unlock()
	sub.signal()
	return advanced
}
