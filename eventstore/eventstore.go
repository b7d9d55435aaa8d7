// Package eventstore is the port to the event log: the only way the rest of
// callledger reads or writes events. Adapters (pebblestore, kurrentdb) implement
// [Store] and prove it by passing the storetest conformance suite unchanged.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Position is a place in the global log (the $all order). Positions of
// committed events strictly increase in commit order; the zero Position is
// the start of the log, before the first event. Adapters decide whether
// positions are contiguous (the embedded store's are, KurrentDB's are not).
type Position uint64

// Start is the position before the first event.
const Start Position = 0

// EventData is an event to append. ID must be set: it is the idempotency key,
// and callledger derives it deterministically from the fact it records.
type EventData struct {
	ID       uuid.UUID
	Type     string
	Data     []byte
	Metadata []byte
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	ID       uuid.UUID
	Type     string
	Stream   string
	Revision uint64   // 0 for the first event of a stream
	Position Position // place in the global log
	Created  time.Time
	Data     []byte
	Metadata []byte
}

// StreamState is what an append expects of the stream it writes to.
type StreamState struct {
	kind     stateKind
	revision uint64
}

type stateKind uint8

const (
	stateAny stateKind = iota
	stateNoStream
	stateExists
	stateRevision
)

// Any accepts the stream in any state.
func Any() StreamState { return StreamState{kind: stateAny} }

// NoStream expects the stream not to exist yet.
func NoStream() StreamState { return StreamState{kind: stateNoStream} }

// StreamExists expects the stream to hold at least one event.
func StreamExists() StreamState { return StreamState{kind: stateExists} }

// Revision expects the stream's last event to be at revision rev.
func Revision(rev uint64) StreamState { return StreamState{kind: stateRevision, revision: rev} }

// IsAny reports whether s accepts any stream state.
func (s StreamState) IsAny() bool { return s.kind == stateAny }

// IsNoStream reports whether s expects a stream that does not exist.
func (s StreamState) IsNoStream() bool { return s.kind == stateNoStream }

// IsStreamExists reports whether s expects an existing stream of any revision.
func (s StreamState) IsStreamExists() bool { return s.kind == stateExists }

// ExactRevision returns the revision s expects and whether it expects one.
func (s StreamState) ExactRevision() (uint64, bool) {
	return s.revision, s.kind == stateRevision
}

// Check reports whether a stream whose last revision is head (exists false
// when the stream has no events) satisfies s. Adapters share it so that every
// backend judges expected states alike.
func (s StreamState) Check(head uint64, exists bool) bool {
	switch s.kind {
	case stateNoStream:
		return !exists
	case stateExists:
		return exists
	case stateRevision:
		return exists && head == s.revision
	default:
		return true
	}
}

// String renders s the way error messages show it.
func (s StreamState) String() string {
	switch s.kind {
	case stateNoStream:
		return "no stream"
	case stateExists:
		return "stream exists"
	case stateRevision:
		return fmt.Sprintf("revision %d", s.revision)
	default:
		return "any"
	}
}

// AppendResult describes a successful append.
type AppendResult struct {
	// NextRevision is the revision of the stream's last event after the append.
	NextRevision uint64
	// Position is the global position of the last of the appended events; when
	// every event was a duplicate, the highest position among the originals.
	// A reader that has seen this position has seen every event of the append.
	Position Position
	// Duplicates lists, in input order, the IDs that were already in the
	// stream (or repeated within the append). They were not written again.
	Duplicates []uuid.UUID
}

// Filter selects the events a subscription delivers.
type Filter struct {
	// StreamPrefixes keeps events whose stream name starts with any of them;
	// empty keeps every event.
	StreamPrefixes []string
}

// Match reports whether f keeps events of stream.
func (f Filter) Match(stream string) bool {
	if len(f.StreamPrefixes) == 0 {
		return true
	}
	for _, p := range f.StreamPrefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return false
}

// Batch is what a subscription delivers at each step.
type Batch struct {
	// Events in log order, all after the previous batch's Checkpoint.
	Events []RecordedEvent
	// Checkpoint is a position up to which every matching event has been
	// delivered. Persist it with the effects of Events; resuming from it
	// loses nothing and repeats nothing. It may advance with no events (a
	// filtered subscription moving past events it skips).
	Checkpoint Position
	// CaughtUp is true once the subscription has read everything that was in
	// the log when it started and is now live; it never turns false again.
	// Adapters report it without waiting for a live event (in an empty batch
	// if need be), so that a consumer can tell when it is current.
	CaughtUp bool
}

// Subscription is a catch-up subscription to the global log: first the
// history after its start position, then live events, without gaps or
// repeats across the hand-over.
type Subscription interface {
	// Next blocks until there is something to deliver, ctx ends, or the
	// subscription fails. It returns ErrSubscriptionClosed after Close. Next
	// is not safe for concurrent use.
	Next(ctx context.Context) (Batch, error)
	// Close ends the subscription and releases its resources; a Next waiting
	// in another goroutine returns ErrSubscriptionClosed.
	Close() error
}

// Store is an append-only log of streams with a global order.
//
// Appends are exactly-once by event ID, permanently: appending an event whose
// ID the stream already holds writes nothing and reports it in
// AppendResult.Duplicates, however long ago the original was written. When
// every event of an append is a duplicate the append succeeds whatever the
// expected state; otherwise the expected state is checked against the stream
// as it is, and ErrWrongExpectedVersion reports a mismatch.
//
// A nil error from Append means the events are durable (fsync or quorum).
type Store interface {
	// Append writes events to stream atomically. An append without events
	// is refused with ErrInvalidArgument.
	Append(ctx context.Context, stream string, expected StreamState, events ...EventData) (AppendResult, error)
	// ReadStream returns up to limit events of stream from revision from
	// (inclusive), in revision order. A stream without events gives
	// ErrStreamNotFound.
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]RecordedEvent, error)
	// ReadAll returns up to limit events after position from (exclusive), in
	// log order. An empty result means from is the end of the log.
	ReadAll(ctx context.Context, from Position, limit int) ([]RecordedEvent, error)
	// Head returns the position of the last committed event (Start for an
	// empty log), so that readers can tell how far behind they are.
	Head(ctx context.Context) (Position, error)
	// SubscribeAll follows the log from after position from (exclusive),
	// catching up and then staying live. ctx bounds the subscription's life:
	// once it ends, Next returns an error wrapping ctx's error.
	SubscribeAll(ctx context.Context, from Position, filter Filter) (Subscription, error)
	// Close releases the store. Appends already acknowledged stay durable.
	Close() error
}

// Errors callers branch on. Adapters wrap them with context; test with
// errors.Is.
var (
	// ErrWrongExpectedVersion: the stream is not in the expected state.
	ErrWrongExpectedVersion = errors.New("wrong expected version")
	// ErrStreamNotFound: the stream has no events.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrUnavailable: the store cannot serve now (closed, overloaded,
	// unreachable, not the leader). The operation may be retried.
	ErrUnavailable = errors.New("event store unavailable")
	// ErrInvalidArgument: the request can never succeed (bad stream name,
	// missing event ID, event too large).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrSubscriptionClosed: Next was called after Close.
	ErrSubscriptionClosed = errors.New("subscription closed")
)

// WrongExpectedVersionError details an ErrWrongExpectedVersion.
type WrongExpectedVersionError struct {
	Stream   string
	Expected StreamState
	// Actual is the stream's last revision; meaningful when Exists.
	Actual uint64
	Exists bool
}

func (e *WrongExpectedVersionError) Error() string {
	actual := "no stream"
	if e.Exists {
		actual = fmt.Sprintf("revision %d", e.Actual)
	}
	return fmt.Sprintf("append %s: expected %s, stream is at %s: %v", e.Stream, e.Expected, actual, ErrWrongExpectedVersion)
}

// Unwrap makes errors.Is(err, ErrWrongExpectedVersion) true.
func (e *WrongExpectedVersionError) Unwrap() error { return ErrWrongExpectedVersion }

// ValidateStreamName rejects names adapters cannot store: empty, longer than
// MaxStreamNameLen, or holding a NUL byte (used as a key separator).
func ValidateStreamName(stream string) error {
	if stream == "" {
		return fmt.Errorf("stream name is empty: %w", ErrInvalidArgument)
	}
	if len(stream) > MaxStreamNameLen {
		return fmt.Errorf("stream name of %d bytes exceeds %d: %w", len(stream), MaxStreamNameLen, ErrInvalidArgument)
	}
	for i := 0; i < len(stream); i++ {
		if stream[i] == 0 {
			return fmt.Errorf("stream name holds a NUL byte: %w", ErrInvalidArgument)
		}
	}
	return nil
}

// MaxStreamNameLen bounds stream names; call streams are 39 bytes.
const MaxStreamNameLen = 256
