// Package storetest is the conformance suite of the event store port: every
// adapter of [eventstore.Store] runs it unchanged, so that callers can rely
// on the port's documented semantics whatever the backend.
//
// The suite only assumes what the port promises. In particular global
// positions must strictly increase, but need not be contiguous (KurrentDB's
// are not); adapters whose positions are contiguous test that themselves.
//
// Waits in the suite are failure deadlines, never performance assertions: a
// test fails if something expected has not happened within [Deadline].
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
)

// Factory creates a fresh, empty backing location (a temporary directory, a
// fresh server) and returns how to open a store on it. The suite calls it
// from parallel subtests, once per subtest that needs a store.
type Factory func(t *testing.T) Opener

// Opener opens a store on the backing location it was made for. The suite
// closes every store it opens, and may open the location again after
// closing (never while another store is open on it) to test reopen.
type Opener func(t *testing.T) eventstore.Store

// Deadline bounds every wait of the suite. Reaching it is a failure: it is
// generous so that a loaded machine under the race detector still passes.
const Deadline = 30 * time.Second

// Run runs the whole suite against the adapter that newBacking opens.
func Run(t *testing.T, newBacking Factory) {
	t.Helper()
	s := suite{newBacking: newBacking}
	t.Run("ExpectedState", s.expectedState)
	t.Run("AppendResult", s.appendResult)
	t.Run("InvalidArguments", s.invalidArguments)
	t.Run("ConcurrentWritersOneStream", s.concurrentWriters)
	t.Run("Idempotency", s.idempotency)
	t.Run("ReadStream", s.readStream)
	t.Run("ReadAll", s.readAll)
	t.Run("Subscribe", s.subscribe)
	t.Run("Reopen", s.reopen)
}

type suite struct {
	newBacking Factory
}

// store wraps an opened store so that the test may close it explicitly and
// the cleanup may close it again without calling the adapter twice.
type store struct {
	eventstore.Store
	once sync.Once
	err  error
}

func (s *store) Close() error {
	s.once.Do(func() { s.err = s.Store.Close() })
	return s.err
}

// open creates a fresh backing and opens a store on it; the Opener is
// returned for reopen tests.
func (su suite) open(t *testing.T) (*store, Opener) {
	t.Helper()
	opener := su.newBacking(t)
	return openWith(t, opener), opener
}

func openWith(t *testing.T, opener Opener) *store {
	t.Helper()
	s := &store{Store: opener(t)}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// deadline returns a context that fails the wait after Deadline.
func deadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), Deadline)
	t.Cleanup(cancel)
	return ctx
}

// event returns a new event with a random ID and a payload naming tag, so
// that a mix-up of payloads between events shows.
func event(tag string) eventstore.EventData {
	id := uuid.New()
	return eventstore.EventData{
		ID:       id,
		Type:     "Test" + tag,
		Data:     []byte("data:" + tag + ":" + id.String()),
		Metadata: []byte("meta:" + tag),
	}
}

func events(n int, tag string) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = event(fmt.Sprintf("%s-%d", tag, i))
	}
	return out
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, expected eventstore.StreamState, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), stream, expected, evs...)
	if err != nil {
		t.Fatalf("append %d events to %s expecting %v: %v", len(evs), stream, expected, err)
	}
	return res
}

func mustReadStream(t *testing.T, s eventstore.Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := s.ReadStream(t.Context(), stream, 0, 1<<20)
	if err != nil {
		t.Fatalf("read stream %s: %v", stream, err)
	}
	return evs
}

// readAll pages through the whole log.
func readAll(t *testing.T, s eventstore.Store, page int) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	from := eventstore.Start
	for {
		evs, err := s.ReadAll(t.Context(), from, page)
		if err != nil {
			t.Fatalf("read all from %d: %v", from, err)
		}
		if len(evs) == 0 {
			return out
		}
		if len(evs) > page {
			t.Fatalf("read all from %d with limit %d returned %d events", from, page, len(evs))
		}
		out = append(out, evs...)
		from = evs[len(evs)-1].Position
	}
}

func mustHead(t *testing.T, s eventstore.Store) eventstore.Position {
	t.Helper()
	h, err := s.Head(t.Context())
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	return h
}

// checkEvent compares a recorded event with the data it was appended from.
func checkEvent(t *testing.T, got eventstore.RecordedEvent, want eventstore.EventData, stream string, rev uint64) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.Stream != stream || got.Revision != rev ||
		string(got.Data) != string(want.Data) || string(got.Metadata) != string(want.Metadata) {
		t.Errorf("recorded event = {ID %s Type %q Stream %q Revision %d Data %q Metadata %q}, want {ID %s Type %q Stream %q Revision %d Data %q Metadata %q}",
			got.ID, got.Type, got.Stream, got.Revision, got.Data, got.Metadata,
			want.ID, want.Type, stream, rev, want.Data, want.Metadata)
	}
	if got.Created.IsZero() {
		t.Errorf("event %s has no creation time", got.ID)
	}
	if got.Position == eventstore.Start {
		t.Errorf("event %s has position %d, which is before the first event", got.ID, got.Position)
	}
}

// checkStream asserts that stream holds exactly want, in order, and that
// positions strictly increase with revisions.
func checkStream(t *testing.T, s eventstore.Store, stream string, want []eventstore.EventData) []eventstore.RecordedEvent {
	t.Helper()
	got, err := s.ReadStream(t.Context(), stream, 0, 1<<20)
	if len(want) == 0 {
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("read stream %s = %d events, %v; want ErrStreamNotFound", stream, len(got), err)
		}
		return nil
	}
	if err != nil {
		t.Fatalf("read stream %s: %v", stream, err)
	}
	if len(got) != len(want) {
		t.Fatalf("stream %s holds %d events, want %d", stream, len(got), len(want))
	}
	for i := range got {
		checkEvent(t, got[i], want[i], stream, uint64(i))
		if i > 0 && got[i].Position <= got[i-1].Position {
			t.Errorf("stream %s: revision %d at position %d, not after revision %d at %d", stream, i, got[i].Position, i-1, got[i-1].Position)
		}
	}
	return got
}

func ids(evs []eventstore.EventData) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i := range evs {
		out[i] = evs[i].ID
	}
	return out
}
