package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/projections"
)

// fixedSink is a projection that stands at a given checkpoint.
type fixedSink struct{ cp eventstore.Position }

func (s *fixedSink) Checkpoint(context.Context) (eventstore.Position, error) { return s.cp, nil }
func (s *fixedSink) Apply(context.Context, eventstore.Batch) error           { return nil }

func TestMeasureLag(t *testing.T) {
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	var first time.Time
	for i := range 3 {
		if _, err := store.Append(ctx, "call-x", eventstore.Any(), eventstore.EventData{ID: uuid.New(), Type: "T"}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			evs, err := store.ReadAll(ctx, 0, 1)
			if err != nil || len(evs) != 1 {
				t.Fatalf("read first event: %v %v", evs, err)
			}
			first = evs[0].Created
		}
	}
	now := first.Add(90 * time.Second)

	behind, err := projections.MeasureLag(ctx, store, &fixedSink{cp: 0}, now)
	if err != nil {
		t.Fatal(err)
	}
	if behind.Positions != 3 || behind.Head != 3 || behind.Checkpoint != 0 || behind.Age != 90*time.Second {
		t.Errorf("lag of an empty projection = %+v, want 3 positions, 90s", behind)
	}
	current, err := projections.MeasureLag(ctx, store, &fixedSink{cp: 3}, now)
	if err != nil {
		t.Fatal(err)
	}
	if current.Positions != 0 || current.Age != 0 {
		t.Errorf("lag of a current projection = %+v, want zero", current)
	}
	store.Close()
	if _, err := projections.MeasureLag(ctx, store, &fixedSink{cp: 0}, now); err == nil {
		t.Error("lag of a closed store: no error")
	}
}
