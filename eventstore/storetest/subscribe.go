package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
)

func (su suite) subscribe(t *testing.T) {
	t.Parallel()
	t.Run("CatchUpThenLiveUnderLoad", su.subUnderLoad)
	t.Run("CaughtUp", su.subCaughtUp)
	t.Run("Resume", su.subResume)
	t.Run("Filter", su.subFilter)
	t.Run("Close", su.subClose)
	t.Run("ContextCancel", su.subCancel)
	t.Run("FromHead", su.subFromHead)
}

// collector reads a subscription and checks every batch against the
// port's promises as it goes.
type collector struct {
	t          *testing.T
	sub        eventstore.Subscription
	ctx        context.Context // failure deadline
	filter     eventstore.Filter
	startHead  eventstore.Position // head before the subscription started
	checkpoint eventstore.Position
	caughtUp   bool
	events     []eventstore.RecordedEvent
	seen       map[uuid.UUID]bool
}

func (su suite) collect(t *testing.T, s eventstore.Store, from eventstore.Position, filter eventstore.Filter) *collector {
	t.Helper()
	head := mustHead(t, s)
	sub, err := s.SubscribeAll(t.Context(), from, filter)
	if err != nil {
		t.Fatalf("subscribe from %d: %v", from, err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return &collector{t: t, sub: sub, ctx: deadline(t), filter: filter, startHead: head, checkpoint: from, seen: map[uuid.UUID]bool{}}
}

// next reads one batch and checks it.
func (c *collector) next() eventstore.Batch {
	c.t.Helper()
	b, err := c.sub.Next(c.ctx)
	if err != nil {
		c.t.Fatalf("next after %d events (checkpoint %d): %v", len(c.events), c.checkpoint, err)
	}
	prev := c.checkpoint
	for _, ev := range b.Events {
		if ev.Position <= prev {
			c.t.Fatalf("event %s at position %d delivered after position %d", ev.ID, ev.Position, prev)
		}
		prev = ev.Position
		if !c.filter.Match(ev.Stream) {
			c.t.Fatalf("event of stream %s delivered through filter %v", ev.Stream, c.filter.StreamPrefixes)
		}
		if c.seen[ev.ID] {
			c.t.Fatalf("event %s delivered twice", ev.ID)
		}
		c.seen[ev.ID] = true
	}
	if b.Checkpoint < prev {
		c.t.Fatalf("checkpoint %d is before the batch's last event at %d (previous checkpoint %d)", b.Checkpoint, prev, c.checkpoint)
	}
	if c.caughtUp && !b.CaughtUp {
		c.t.Fatalf("CaughtUp went back to false at checkpoint %d", b.Checkpoint)
	}
	if b.CaughtUp && b.Checkpoint < c.startHead {
		c.t.Fatalf("CaughtUp at checkpoint %d, before the head %d the subscription started with", b.Checkpoint, c.startHead)
	}
	c.checkpoint, c.caughtUp = b.Checkpoint, b.CaughtUp
	c.events = append(c.events, b.Events...)
	return b
}

// until reads batches until done reports true.
func (c *collector) until(done func() bool) {
	c.t.Helper()
	for !done() {
		c.next()
	}
}

// untilSeen reads batches until the event with id has been delivered.
func (c *collector) untilSeen(id uuid.UUID) {
	c.t.Helper()
	c.until(func() bool { return c.seen[id] })
}

// subUnderLoad starts a subscriber from the start of a log that writers
// are appending to: across catch-up and live, it must see every event
// exactly once, in log order.
func (su suite) subUnderLoad(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	for i := range 20 {
		mustAppend(t, s, fmt.Sprintf("load-pre-%d", i%4), eventstore.Any(), events(5, "pre")...)
	}
	prefilled := mustHead(t, s)
	// Writers append; when they are done, one last event marks the end, so
	// that the subscriber knows when it has everything.
	sentinel := event("sentinel")
	written := make(chan []acked, 1)
	go func() {
		acks := appendLoad(t, s, "load", 4, 40)
		if _, err := s.Append(t.Context(), "load-sentinel", eventstore.NoStream(), sentinel); err != nil {
			t.Errorf("append sentinel: %v", err)
		}
		written <- acks
	}()
	// Subscribe once the load has begun.
	for wait := deadline(t); mustHead(t, s) == prefilled; {
		select {
		case <-wait.Done():
			t.Fatalf("no append committed within %v", Deadline)
		case <-time.After(time.Millisecond):
		}
	}
	c := su.collect(t, s, eventstore.Start, eventstore.Filter{})
	c.untilSeen(sentinel.ID)
	acks := <-written
	if t.Failed() {
		t.FailNow()
	}
	if want := 100 + len(acks) + 1; len(c.events) != want {
		t.Errorf("delivered %d events, want %d", len(c.events), want)
	}
	for _, a := range acks {
		if !c.seen[a.ev.ID] {
			t.Errorf("acknowledged event %s of %s not delivered", a.ev.ID, a.stream)
		}
	}
	all := readAll(t, s, 1000)
	if !sameEvents(c.events, all) {
		t.Fatalf("subscriber saw %d events, the log holds %d; sequences differ", len(c.events), len(all))
	}
	if !c.caughtUp {
		t.Errorf("subscription not caught up after delivering the whole log and a live event")
	}
	if c.checkpoint < all[len(all)-1].Position {
		t.Errorf("checkpoint %d, before the last delivered event %d", c.checkpoint, all[len(all)-1].Position)
	}
}

// subCaughtUp checks that CaughtUp turns true once the history is read,
// without waiting for a live event, and stays true for live events.
func (su suite) subCaughtUp(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	for i := range 12 {
		mustAppend(t, s, fmt.Sprintf("cu-%d", i), eventstore.NoStream(), events(100, "cu")...)
	}
	c := su.collect(t, s, eventstore.Start, eventstore.Filter{})
	// Caught up must be reported without waiting for a live event: a
	// projection uses it to tell that it is ready.
	c.until(func() bool { return c.caughtUp })
	if c.checkpoint < c.startHead {
		t.Errorf("caught up at checkpoint %d, before the start head %d", c.checkpoint, c.startHead)
	}
	if len(c.events) != 1200 {
		t.Errorf("caught up after %d events, want 1200", len(c.events))
	}
	live := event("live")
	mustAppend(t, s, "cu-live", eventstore.NoStream(), live)
	c.untilSeen(live.ID)
	if !c.caughtUp {
		t.Errorf("live event delivered without CaughtUp")
	}
	if len(c.events) != 1201 {
		t.Errorf("delivered %d events, want 1201", len(c.events))
	}
}

// subResume checks that a subscription from a checkpoint delivers exactly
// what follows it.
func (su suite) subResume(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	for i := range 6 {
		mustAppend(t, s, fmt.Sprintf("resume-%d", i%2), eventstore.Any(), events(5, "resume")...)
	}
	c1 := su.collect(t, s, eventstore.Start, eventstore.Filter{})
	c1.until(func() bool { return len(c1.events) > 0 })
	checkpoint := c1.checkpoint
	if err := c1.sub.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	later := event("later")
	mustAppend(t, s, "resume-later", eventstore.NoStream(), later)
	all := readAll(t, s, 1000)

	after := func(from eventstore.Position) []eventstore.RecordedEvent {
		var out []eventstore.RecordedEvent
		for _, ev := range all {
			if ev.Position > from {
				out = append(out, ev)
			}
		}
		return out
	}
	for _, from := range []eventstore.Position{checkpoint, all[12].Position, all[12].Position + 1, eventstore.Start} {
		t.Run(fmt.Sprintf("from %d", from), func(t *testing.T) {
			c := su.collect(t, s, from, eventstore.Filter{})
			c.untilSeen(later.ID)
			if want := after(from); !sameEvents(c.events, want) {
				t.Errorf("resumed from %d: delivered %v, want %v", from, positions(c.events), positions(want))
			}
		})
	}
}

// subFilter checks that a prefix filter delivers only matching events, in
// order, while the checkpoint still moves past the others.
func (su suite) subFilter(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	streams := []string{"call-a", "quarantine-status", "call-b", "other-x", "call-a", "calls", "Call-c", "quarantine-dial"}
	for i, stream := range streams {
		mustAppend(t, s, stream, eventstore.Any(), events(1+i%3, stream)...)
	}
	mustAppend(t, s, "zzz-last", eventstore.NoStream(), event("last"))

	for _, prefixes := range [][]string{{"call-"}, {"call-", "quarantine-"}, {"nothing-matches"}} {
		t.Run(fmt.Sprint(prefixes), func(t *testing.T) {
			all := readAll(t, s, 1000)
			head := mustHead(t, s)
			filter := eventstore.Filter{StreamPrefixes: prefixes}
			c := su.collect(t, s, eventstore.Start, filter)
			c.until(func() bool { return c.checkpoint >= head })
			var want []eventstore.RecordedEvent
			for _, ev := range all {
				if filter.Match(ev.Stream) {
					want = append(want, ev)
				}
			}
			if !sameEvents(c.events, want) {
				t.Fatalf("delivered %v, want %v", positions(c.events), positions(want))
			}
			// Live: a skipped event alone must move the checkpoint, then a
			// matching one is delivered.
			skipped := event("skipped")
			skippedAt := mustAppend(t, s, fmt.Sprintf("zzz-live-%v", prefixes), eventstore.Any(), skipped)
			c.until(func() bool { return c.checkpoint >= skippedAt.Position })
			match := event("match")
			res := mustAppend(t, s, prefixes[0]+"live", eventstore.Any(), match)
			c.until(func() bool { return c.checkpoint >= res.Position })
			if c.seen[skipped.ID] {
				t.Errorf("filtered-out live event delivered")
			}
			if !c.seen[match.ID] || len(c.events) != len(want)+1 {
				t.Errorf("delivered %d events after the live append, want %d ending with the matching one", len(c.events), len(want)+1)
			}
		})
	}
}

// subClose checks Close: a closed subscription's Next fails with
// ErrSubscriptionClosed, including a Next that was waiting.
func (su suite) subClose(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	mustAppend(t, s, "close", eventstore.NoStream(), event("one"))
	t.Run("after close", func(t *testing.T) {
		c := su.collect(t, s, eventstore.Start, eventstore.Filter{})
		if err := c.sub.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		for range 2 {
			if b, err := c.sub.Next(c.ctx); !errors.Is(err, eventstore.ErrSubscriptionClosed) {
				t.Errorf("next after close = %d events, %v; want ErrSubscriptionClosed", len(b.Events), err)
			}
		}
	})
	t.Run("while waiting", func(t *testing.T) {
		c := su.collect(t, s, eventstore.Start, eventstore.Filter{})
		c.until(func() bool { return c.caughtUp })
		errc := make(chan error, 1)
		go func() { errc <- nextUntilError(c.ctx, c.sub) }()
		letBlock()
		if err := c.sub.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, eventstore.ErrSubscriptionClosed) {
				t.Errorf("pending next returned %v, want ErrSubscriptionClosed", err)
			}
		case <-c.ctx.Done():
			t.Fatalf("pending next did not return within %v of Close", Deadline)
		}
	})
}

// subCancel checks that the contexts of Next and of SubscribeAll end a
// wait with their error.
func (su suite) subCancel(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	mustAppend(t, s, "cancel", eventstore.NoStream(), event("one"))
	t.Run("Next context", func(t *testing.T) {
		c := su.collect(t, s, eventstore.Start, eventstore.Filter{})
		c.until(func() bool { return c.caughtUp })
		ctx, cancel := context.WithCancel(c.ctx)
		errc := make(chan error, 1)
		go func() { errc <- nextUntilError(ctx, c.sub) }()
		letBlock()
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("next with a canceled context returned %v, want context.Canceled", err)
			}
		case <-c.ctx.Done():
			t.Fatalf("next did not return within %v of its context's cancellation", Deadline)
		}
	})
	t.Run("Next context already done", func(t *testing.T) {
		c := su.collect(t, s, eventstore.Start, eventstore.Filter{})
		ctx, cancel := context.WithCancel(c.ctx)
		cancel()
		if b, err := c.sub.Next(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("next with a canceled context = %d events, %v; want context.Canceled", len(b.Events), err)
		}
	})
	t.Run("SubscribeAll context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		defer sub.Close()
		wait := deadline(t)
		var b eventstore.Batch
		for b.Checkpoint < 1 {
			if b, err = sub.Next(wait); err != nil {
				t.Fatalf("next: %v", err)
			}
		}
		errc := make(chan error, 1)
		go func() { errc <- nextUntilError(wait, sub) }()
		letBlock()
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("pending next after the subscription's context ended: %v, want context.Canceled", err)
			}
		case <-wait.Done():
			t.Fatalf("pending next did not return within %v of its subscription's context ending", Deadline)
		}
		if b, err = sub.Next(wait); !errors.Is(err, context.Canceled) {
			t.Errorf("next after the subscription's context ended = %d events, %v; want context.Canceled", len(b.Events), err)
		}
	})
}

// letBlock gives a goroutine that is about to call Next time to block in
// it, so that the tests exercise waking a waiting Next. It asserts nothing:
// the outcome must be the same if Next has not started yet.
func letBlock() { time.Sleep(20 * time.Millisecond) }

// nextUntilError calls Next until it fails and returns the error. Batches
// may legitimately arrive before: when the log holds events the
// subscription never delivers (a shared server's other streams, its system
// events), checkpoints past them can come at any time.
func nextUntilError(ctx context.Context, sub eventstore.Subscription) error {
	for {
		if _, err := sub.Next(ctx); err != nil {
			return err
		}
	}
}

// subFromHead checks a subscription from the current head: nothing old,
// then exactly the new events.
func (su suite) subFromHead(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	for i := range 3 {
		mustAppend(t, s, "head", eventstore.Any(), event(fmt.Sprint(i)))
	}
	head := mustHead(t, s)
	c := su.collect(t, s, head, eventstore.Filter{})
	fresh := events(2, "fresh")
	res := mustAppend(t, s, "head", eventstore.Revision(2), fresh...)
	c.until(func() bool { return c.checkpoint >= res.Position })
	if len(c.events) != 2 || c.events[0].ID != fresh[0].ID || c.events[1].ID != fresh[1].ID {
		t.Errorf("delivered %v, want the 2 new events only", positions(c.events))
	}
	if !c.caughtUp {
		t.Errorf("live events delivered without CaughtUp")
	}
}
