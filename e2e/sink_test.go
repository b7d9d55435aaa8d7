package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections"
)

// recordingSink is the read model as the runner feeds it, recording every
// event applied: a subscription that loses or repeats an event shows here,
// where the fold's idempotence would hide a repeat from the served state.
type recordingSink struct {
	inner projections.Sink

	mu         sync.Mutex
	applied    map[eventKey]int
	checkpoint eventstore.Position
	violations []string
	changed    chan struct{} // closed and replaced after every Apply
}

type eventKey struct {
	stream string
	id     uuid.UUID
}

func newRecordingSink(inner projections.Sink) *recordingSink {
	return &recordingSink{inner: inner, applied: map[eventKey]int{}, changed: make(chan struct{})}
}

// Checkpoint is the read model's.
func (r *recordingSink) Checkpoint(ctx context.Context) (eventstore.Position, error) {
	return r.inner.Checkpoint(ctx)
}

// Apply applies b to the read model and records it once that succeeded:
// every event must lie after the previous checkpoint and at or before b's.
func (r *recordingSink) Apply(ctx context.Context, b eventstore.Batch) error {
	if err := r.inner.Apply(ctx, b); err != nil {
		return err
	}
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
	return nil
}

// waitFor returns once the read model has applied everything up to pos.
func (r *recordingSink) waitFor(ctx context.Context, pos eventstore.Position) error {
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
// the call streams in store exactly once, and nothing else.
func (r *recordingSink) checkExactlyOnce(ctx context.Context, t *testing.T, store eventstore.Store) {
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
			if strings.HasPrefix(e.Stream, eventcodec.CallStreamPrefix) {
				want[eventKey{e.Stream, e.ID}] = true
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
	for k := range want {
		if r.applied[k] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("event %s of %s is in the log but was never applied", k.id, k.stream)
			}
		}
	}
	for k, n := range r.applied {
		switch {
		case !want[k]:
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
