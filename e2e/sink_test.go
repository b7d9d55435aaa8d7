package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
)

// projectionRecorder records every batch the call-state projection
// applied, as its subscriptions delivered them: a subscription that loses
// or repeats an event shows here, where the fold's idempotence would hide
// a repeat from the served state. The server hands it every subscription
// the projection opens (server.Seams.ProjectionSubscription).
type projectionRecorder struct {
	mu         sync.Mutex
	applied    map[eventKey]int
	checkpoint eventstore.Position
	violations []string
	changed    chan struct{} // closed and replaced after every recorded batch
}

type eventKey struct {
	stream string
	id     uuid.UUID
}

func newProjectionRecorder() *projectionRecorder {
	return &projectionRecorder{applied: map[eventKey]int{}, changed: make(chan struct{})}
}

// wrap records what sub delivers once the projection has applied it.
func (r *projectionRecorder) wrap(sub eventstore.Subscription) eventstore.Subscription {
	return &recordedSubscription{Subscription: sub, rec: r}
}

// recordedSubscription tells a batch applied by the next call of Next: the
// projection asks for the next batch only once the previous one is
// applied with its checkpoint, and drops the subscription (Close) instead
// when applying failed.
type recordedSubscription struct {
	eventstore.Subscription
	rec     *projectionRecorder
	pending *eventstore.Batch
}

func (s *recordedSubscription) Next(ctx context.Context) (eventstore.Batch, error) {
	if s.pending != nil {
		s.rec.record(*s.pending)
		s.pending = nil
	}
	b, err := s.Subscription.Next(ctx)
	if err == nil {
		s.pending = &b
	}
	return b, err
}

// record records b as applied: every event must lie after the previous
// checkpoint and at or before b's.
func (r *projectionRecorder) record(b eventstore.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.Checkpoint < r.checkpoint {
		r.violations = append(r.violations, fmt.Sprintf("checkpoint went back from %d to %d", r.checkpoint, b.Checkpoint))
	}
	for _, e := range b.Events {
		if e.Position <= r.checkpoint || e.Position > b.Checkpoint {
			r.violations = append(r.violations, fmt.Sprintf("event %s of %s at %d outside (%d, %d]", e.ID, e.Stream, e.Position, r.checkpoint, b.Checkpoint))
		}
		r.applied[eventKey{e.Stream, e.ID}]++
	}
	r.checkpoint = max(r.checkpoint, b.Checkpoint)
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor returns once the read model has applied everything up to pos.
func (r *projectionRecorder) waitFor(ctx context.Context, pos eventstore.Position) error {
	for {
		r.mu.Lock()
		cp, ch := r.checkpoint, r.changed
		r.mu.Unlock()
		if cp >= pos {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projection at %d, waiting for %d: %w", cp, pos, ctx.Err())
		}
	}
}

// checkExactlyOnce fails t unless the read model applied every event of
// the streams it folds (calls and conferences) in store exactly once, and
// nothing else.
func (r *projectionRecorder) checkExactlyOnce(ctx context.Context, t *testing.T, store eventstore.Store) {
	t.Helper()
	r.checkExactlyOnceAfter(ctx, t, store, 0)
}

func inLog(want map[eventKey]bool, k eventKey) bool {
	_, ok := want[k]
	return ok
}

// checkExactlyOnceAfter is checkExactlyOnce for a read model rebuilt from
// the ledger up to at most rebuilt (a heal): the rebuild folds the events
// up to its checkpoint from the log, not from a subscription, so an event
// at or before rebuilt that no subscription delivered is not missing.
// Every other event must still have been delivered once, and none twice.
func (r *projectionRecorder) checkExactlyOnceAfter(ctx context.Context, t *testing.T, store eventstore.Store, rebuilt eventstore.Position) {
	t.Helper()
	want := map[eventKey]bool{}
	var head eventstore.Position
	for from := eventstore.Start; ; {
		evs, err := store.ReadAll(ctx, from, 1000)
		if err != nil {
			t.Fatalf("read the log after %d: %v", from, err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			if slices.ContainsFunc(eventcodec.ProjectedStreamPrefixes(), func(p string) bool { return strings.HasPrefix(e.Stream, p) }) {
				want[eventKey{e.Stream, e.ID}] = e.Position > rebuilt
				head = e.Position
			}
		}
		from = evs[len(evs)-1].Position
	}
	if err := r.waitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Errorf("projection: %s", v)
	}
	missing := 0
	for k, mustDeliver := range want {
		if mustDeliver && r.applied[k] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("event %s of %s is in the log but was never applied", k.id, k.stream)
			}
		}
	}
	for k, n := range r.applied {
		switch {
		case !inLog(want, k):
			t.Errorf("event %s of %s was applied but is not in the log", k.id, k.stream)
		case n > 1:
			t.Errorf("event %s of %s was applied %d times", k.id, k.stream, n)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d events never applied", missing, len(want))
	}
	if len(want) == 0 {
		t.Error("the log holds no call events")
	}
}
