package pebblestore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
)

// TestBeforeSync: the barrier runs before every group that writes, and a
// failing barrier refuses the group's appends as unavailable with nothing
// written (a pure duplicate, which writes nothing, is still answered),
// after which the store goes on.
func TestBeforeSync(t *testing.T) {
	var calls atomic.Int64
	var fail atomic.Bool
	barrier := errors.New("key store down")
	s := openClosed(t, t.TempDir(), pebblestore.Options{BeforeSync: func() error {
		calls.Add(1)
		if fail.Load() {
			return barrier
		}
		return nil
	}})
	ctx := context.Background()
	a := ev("a")
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), a); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("barrier ran %d times for one writing group, want 1", n)
	}
	// A pure duplicate writes nothing, so a failing barrier does not
	// refuse it (the barrier may run for it all the same: it starts with
	// the group, before the group knows it writes nothing).
	fail.Store(true)
	if res, err := s.Append(ctx, "call-1", eventstore.Any(), a); err != nil || len(res.Duplicates) != 1 {
		t.Fatalf("duplicate with a failing barrier = %+v, %v; want it answered as a duplicate", res, err)
	}

	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, "call-2", eventstore.Any(), ev("b"))
	if !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, barrier) {
		t.Fatalf("append with a failing barrier = %v, want ErrUnavailable wrapping the barrier's error", err)
	}
	if got, err := s.Head(ctx); err != nil || got != head {
		t.Fatalf("head %d after the refused group (%v), want %d: nothing written", got, err, head)
	}
	if recs, err := s.ReadStream(ctx, "call-2", 0, 10); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("call-2 after a refused append: %d events, %v; want ErrStreamNotFound", len(recs), err)
	}

	fail.Store(false)
	res, err := s.Append(ctx, "call-2", eventstore.Any(), ev("b"))
	if err != nil || len(res.Duplicates) != 0 {
		t.Fatalf("append after the barrier recovered = %+v, %v; want a new event", res, err)
	}
}
