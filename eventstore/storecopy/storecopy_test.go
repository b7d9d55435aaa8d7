package storecopy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/eventstore/pebblestore/pebblestoretest"
	"github.com/callledger/callledger/eventstore/storecopy"
)

func openKurrentDB(t *testing.T) *kurrentdb.Store {
	t.Helper()
	kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kdb.Close)
	s, err := kurrentdb.Open(context.Background(), kdb.ConnString(), kurrentdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// source writes n events over a dozen streams, interleaved as calls'
// callbacks are.
func source(t *testing.T, n int) *pebblestore.Store {
	t.Helper()
	s := pebblestoretest.Open(t)
	for i := range n {
		ev := eventstore.EventData{ID: uuid.New(), Type: fmt.Sprintf("Type%d", i%3), Data: []byte(fmt.Sprintf("data %d", i)),
			Metadata: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		if _, err := s.Append(context.Background(), fmt.Sprintf("call-%02d", i%12), eventstore.Any(), ev); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// streams reads every stream of s as it stands: stream → its events.
func streams(t *testing.T, s eventstore.Store) map[string][]eventstore.RecordedEvent {
	t.Helper()
	out := map[string][]eventstore.RecordedEvent{}
	for from := eventstore.Start; ; {
		evs, err := s.ReadAll(context.Background(), from, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		for _, e := range evs {
			out[e.Stream] = append(out[e.Stream], e)
		}
		from = evs[len(evs)-1].Position
	}
}

func sameStreams(t *testing.T, got, want map[string][]eventstore.RecordedEvent, data func(eventstore.RecordedEvent) []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d streams, want %d", len(got), len(want))
	}
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			t.Fatalf("stream %s: %d events, want %d", name, len(g), len(w))
		}
		for i := range w {
			if g[i].ID != w[i].ID || g[i].Type != w[i].Type || g[i].Revision != w[i].Revision ||
				!bytes.Equal(g[i].Data, data(w[i])) || !bytes.Equal(g[i].Metadata, w[i].Metadata) {
				t.Fatalf("stream %s, event %d: %+v, want %+v", name, i, g[i], w[i])
			}
		}
	}
}

// TestCopy copies a ledger into the embedded store and into KurrentDB:
// every stream is the source's, revision for revision; a second run finds
// everything there and writes nothing; a transform's output is what is
// written.
func TestCopy(t *testing.T) {
	t.Parallel()
	const n = 500
	src := source(t, n)
	want := streams(t, src)
	for _, dst := range []struct {
		name  string
		store eventstore.Store
	}{{"embedded", pebblestoretest.Open(t)}, {"kurrentdb", openKurrentDB(t)}} {
		t.Run(dst.name, func(t *testing.T) {
			var progress int
			rep, err := storecopy.Copy(context.Background(), src, dst.store, storecopy.Options{
				ReadBatch: 64, Workers: 5, Progress: func(storecopy.Report) { progress++ },
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Read != n || rep.Written != n || rep.Present != 0 || progress != (n+63)/64 {
				t.Fatalf("copy: %+v, %d progress reports", rep, progress)
			}
			sameStreams(t, streams(t, dst.store), want, func(e eventstore.RecordedEvent) []byte { return e.Data })
			again, err := storecopy.Copy(context.Background(), src, dst.store, storecopy.Options{})
			if err != nil || again.Read != n || again.Written != 0 || again.Present != n {
				t.Fatalf("second copy: %+v, %v; want everything present", again, err)
			}
		})
	}

	dst := pebblestoretest.Open(t)
	upper := func(e eventstore.RecordedEvent) []byte { return bytes.ToUpper(e.Data) }
	_, err := storecopy.Copy(context.Background(), src, dst, storecopy.Options{
		Transform: func(_ context.Context, rec *eventstore.RecordedEvent) (eventstore.EventData, error) {
			return eventstore.EventData{ID: rec.ID, Type: rec.Type, Data: upper(*rec), Metadata: rec.Metadata}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sameStreams(t, streams(t, dst), want, upper)
}

// TestCopyRefusals: a destination whose stream already holds other events
// stops the copy (nothing is appended past them); so does a transform
// that changes an event's ID, and one that fails.
func TestCopyRefusals(t *testing.T) {
	t.Parallel()
	src := source(t, 40)
	dst := pebblestoretest.Open(t)
	if _, err := dst.Append(context.Background(), "call-03", eventstore.NoStream(), eventstore.EventData{ID: uuid.New(), Type: "Other"}); err != nil {
		t.Fatal(err)
	}
	_, err := storecopy.Copy(context.Background(), src, dst, storecopy.Options{})
	if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Fatalf("copy onto a diverging stream: %v", err)
	}
	if evs, err := dst.ReadStream(context.Background(), "call-03", 0, 100); err != nil || len(evs) != 1 {
		t.Fatalf("the diverging stream got %d events, %v", len(evs), err)
	}

	_, err = storecopy.Copy(context.Background(), src, pebblestoretest.Open(t), storecopy.Options{
		Transform: func(_ context.Context, rec *eventstore.RecordedEvent) (eventstore.EventData, error) {
			return eventstore.EventData{ID: uuid.New(), Type: rec.Type, Data: rec.Data}, nil
		},
	})
	if err == nil {
		t.Fatal("a transform that changed the ID was taken")
	}
	errSeal := errors.New("no key")
	_, err = storecopy.Copy(context.Background(), src, pebblestoretest.Open(t), storecopy.Options{
		Transform: func(context.Context, *eventstore.RecordedEvent) (eventstore.EventData, error) {
			return eventstore.EventData{}, errSeal
		},
	})
	if !errors.Is(err, errSeal) {
		t.Fatalf("a failing transform: %v", err)
	}
}
