package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/callledger/callledger/eventstore"
)

// Log is what measuring lag needs of the event store.
type Log interface {
	Head(ctx context.Context) (eventstore.Position, error)
	ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error)
}

// Lag is how far a projection trails the log.
type Lag struct {
	// Checkpoint and Head are the projection's and the log's positions.
	Checkpoint, Head eventstore.Position
	// Positions is Head − Checkpoint: events, for the embedded store,
	// whose positions are contiguous.
	Positions uint64
	// Age is how long ago the oldest event not yet applied was written;
	// zero when the projection is current. It is what a reader of the
	// projection waits for, in time.
	Age time.Duration
}

// Checkpointer is the part of a Sink MeasureLag reads.
type Checkpointer interface {
	Checkpoint(ctx context.Context) (eventstore.Position, error)
}

// MeasureLag compares sink's checkpoint with the head of log. It costs a
// checkpoint read, a head read and, when behind, one event read: cheap
// enough for every metrics scrape.
func MeasureLag(ctx context.Context, log Log, sink Checkpointer, now time.Time) (Lag, error) {
	// The checkpoint first: the head can only move ahead meanwhile, so the
	// lag is never understated.
	cp, err := sink.Checkpoint(ctx)
	if err != nil {
		return Lag{}, fmt.Errorf("measure lag: read checkpoint: %w", err)
	}
	head, err := log.Head(ctx)
	if err != nil {
		return Lag{}, fmt.Errorf("measure lag: read head: %w", err)
	}
	lag := Lag{Checkpoint: cp, Head: head}
	if head <= cp {
		return lag, nil
	}
	lag.Positions = uint64(head - cp)
	next, err := log.ReadAll(ctx, cp, 1)
	if err != nil {
		return Lag{}, fmt.Errorf("measure lag: read the event after %d: %w", cp, err)
	}
	if len(next) > 0 && !next[0].Created.IsZero() {
		lag.Age = max(now.Sub(next[0].Created), 0)
	}
	return lag, nil
}
