package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
)

// idempotency checks that an event ID is written at most once per stream,
// however and whenever it is appended again.
func (su suite) idempotency(t *testing.T) {
	t.Parallel()
	t.Run("Sequential", su.dupSequential)
	t.Run("MixedBatch", su.dupMixed)
	t.Run("RepeatedInOneAppend", su.dupRepeated)
	t.Run("Concurrent", su.dupConcurrent)
	t.Run("ConcurrentMixed", su.dupConcurrentMixed)
	t.Run("PerStream", su.dupPerStream)
	t.Run("LongAgo", su.dupLongAgo)
	t.Run("AfterReopen", su.dupAfterReopen)
}

// checkAllDuplicates asserts the result of an append whose events were all
// already in the stream.
func checkAllDuplicates(t *testing.T, res eventstore.AppendResult, err error, appended []eventstore.EventData, head uint64, lastOriginal eventstore.Position) {
	t.Helper()
	if err != nil {
		t.Fatalf("append of duplicates only: %v", err)
	}
	if !slices.Equal(res.Duplicates, ids(appended)) {
		t.Errorf("Duplicates = %v, want %v", res.Duplicates, ids(appended))
	}
	if res.NextRevision != head {
		t.Errorf("NextRevision = %d, want the stream's head %d", res.NextRevision, head)
	}
	if res.Position != lastOriginal {
		t.Errorf("Position = %d, want %d (the last original's)", res.Position, lastOriginal)
	}
}

func (su suite) dupSequential(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	const stream = "dup-seq"
	evs := events(2, "seq")
	first := mustAppend(t, s, stream, eventstore.NoStream(), evs...)
	// Duplicates only: success whatever the expected state, even a wrong one.
	for _, expected := range []eventstore.StreamState{
		eventstore.Any(), eventstore.NoStream(), eventstore.StreamExists(),
		eventstore.Revision(1), eventstore.Revision(0), eventstore.Revision(7),
	} {
		t.Run(expected.String(), func(t *testing.T) {
			res, err := s.Append(t.Context(), stream, expected, evs...)
			checkAllDuplicates(t, res, err, evs, 1, first.Position)
		})
	}
	t.Run("one of them", func(t *testing.T) {
		got := mustReadStream(t, s, stream)
		res, err := s.Append(t.Context(), stream, eventstore.NoStream(), evs[0])
		checkAllDuplicates(t, res, err, evs[:1], 1, got[0].Position)
	})
	t.Run("reversed", func(t *testing.T) {
		// Position covers every original, so a reader that has seen it has
		// seen the whole append.
		rev := []eventstore.EventData{evs[1], evs[0]}
		res, err := s.Append(t.Context(), stream, eventstore.Any(), rev...)
		checkAllDuplicates(t, res, err, rev, 1, first.Position)
	})
	checkStream(t, s, stream, evs)
}

func (su suite) dupMixed(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	const stream = "dup-mixed"
	a, b := event("a"), event("b")
	mustAppend(t, s, stream, eventstore.NoStream(), a, b)

	c := event("c")
	res := mustAppend(t, s, stream, eventstore.Revision(1), a, c)
	if !slices.Equal(res.Duplicates, []uuid.UUID{a.ID}) || res.NextRevision != 2 {
		t.Errorf("append [a c]: %+v, want Duplicates [a] and NextRevision 2", res)
	}
	got := checkStream(t, s, stream, []eventstore.EventData{a, b, c})
	if res.Position != got[2].Position {
		t.Errorf("Position = %d, want c's %d", res.Position, got[2].Position)
	}

	// A new event after a duplicate one.
	d := event("d")
	res = mustAppend(t, s, stream, eventstore.Any(), d, b)
	if !slices.Equal(res.Duplicates, []uuid.UUID{b.ID}) || res.NextRevision != 3 {
		t.Errorf("append [d b]: %+v, want Duplicates [b] and NextRevision 3", res)
	}

	// With new events the expected state counts: a wrong one writes nothing.
	e := event("e")
	for _, expected := range []eventstore.StreamState{eventstore.Revision(1), eventstore.NoStream(), eventstore.Revision(4)} {
		_, err := s.Append(t.Context(), stream, expected, a, e)
		var wev *eventstore.WrongExpectedVersionError
		if !errors.As(err, &wev) || wev.Actual != 3 || !wev.Exists {
			t.Errorf("append [a e] expecting %v: %v, want a WrongExpectedVersionError at revision 3", expected, err)
		}
	}
	checkStream(t, s, stream, []eventstore.EventData{a, b, c, d})
}

func (su suite) dupRepeated(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	d, e := event("d"), event("e")
	res := mustAppend(t, s, "dup-rep-1", eventstore.NoStream(), d, d, e)
	if !slices.Equal(res.Duplicates, []uuid.UUID{d.ID}) || res.NextRevision != 1 {
		t.Errorf("append [d d e]: %+v, want Duplicates [d] and NextRevision 1", res)
	}
	got := checkStream(t, s, "dup-rep-1", []eventstore.EventData{d, e})
	if res.Position != got[1].Position {
		t.Errorf("Position = %d, want e's %d", res.Position, got[1].Position)
	}

	f, g := event("f"), event("g")
	res = mustAppend(t, s, "dup-rep-2", eventstore.Any(), f, g, f, g, f)
	if want := []uuid.UUID{f.ID, g.ID, f.ID}; !slices.Equal(res.Duplicates, want) || res.NextRevision != 1 {
		t.Errorf("append [f g f g f]: %+v, want Duplicates %v and NextRevision 1", res, want)
	}
	checkStream(t, s, "dup-rep-2", []eventstore.EventData{f, g})

	// Repeats of events already stored: duplicates only.
	res, err := s.Append(t.Context(), "dup-rep-1", eventstore.NoStream(), e, d, e)
	checkAllDuplicates(t, res, err, []eventstore.EventData{e, d, e}, 1, got[1].Position)

	// Many events, some repeated: adapters may switch strategy with size.
	var many []eventstore.EventData
	var want []eventstore.EventData
	var wantDups []uuid.UUID
	for i := range 100 {
		ev := event(fmt.Sprintf("many-%d", i))
		many = append(many, ev)
		want = append(want, ev)
		if i%10 == 9 {
			many = append(many, want[i-5])
			wantDups = append(wantDups, want[i-5].ID)
		}
	}
	res = mustAppend(t, s, "dup-rep-3", eventstore.NoStream(), many...)
	if !slices.Equal(res.Duplicates, wantDups) || res.NextRevision != 99 {
		t.Errorf("append of 110 events with 10 repeats: NextRevision %d and %d duplicates, want 99 and %v", res.NextRevision, len(res.Duplicates), wantDups)
	}
	checkStream(t, s, "dup-rep-3", want)
}

// dupConcurrent races 16 appends of the same events, half of them
// expecting no stream: exactly one writes, all succeed. It runs several
// rounds so that racers also meet inside one batch of the adapter.
func (su suite) dupConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	for round := range 10 {
		raceSameEvents(t, s, fmt.Sprintf("dup-race-%d", round))
	}
}

func raceSameEvents(t *testing.T, s eventstore.Store, stream string) {
	t.Helper()
	const racers = 16
	evs := events(3, "race")
	results := make([]eventstore.AppendResult, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			expected := eventstore.Any()
			if i%2 == 0 {
				expected = eventstore.NoStream()
			}
			<-start
			results[i], errs[i] = s.Append(t.Context(), stream, expected, evs...)
		}()
	}
	close(start)
	wg.Wait()
	got := checkStream(t, s, stream, evs)
	writers := 0
	for i := range racers {
		if errs[i] != nil {
			t.Errorf("%s: racer %d: %v", stream, i, errs[i])
			continue
		}
		res := results[i]
		if res.NextRevision != 2 || res.Position != got[2].Position {
			t.Errorf("%s: racer %d: %+v, want NextRevision 2 and Position %d", stream, i, res, got[2].Position)
		}
		switch {
		case len(res.Duplicates) == 0:
			writers++
		case !slices.Equal(res.Duplicates, ids(evs)):
			t.Errorf("%s: racer %d: Duplicates %v, want none or all of %v", stream, i, res.Duplicates, ids(evs))
		}
	}
	if writers != 1 {
		t.Errorf("%s: %d racers wrote the events, want exactly 1", stream, writers)
	}
}

// dupConcurrentMixed races 16 appends that share one event and each add
// their own: the shared one is written once, every own event once.
func (su suite) dupConcurrentMixed(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	const (
		racers = 16
		stream = "dup-race-mixed"
	)
	shared := event("shared")
	own := events(racers, "own")
	results := make([]eventstore.AppendResult, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = s.Append(t.Context(), stream, eventstore.Any(), shared, own[i])
		}()
	}
	close(start)
	wg.Wait()
	sharedWriters := 0
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		switch d := results[i].Duplicates; {
		case len(d) == 0:
			sharedWriters++
		case !slices.Equal(d, []uuid.UUID{shared.ID}):
			t.Errorf("racer %d: Duplicates %v, want none or [shared]", i, d)
		}
	}
	if sharedWriters != 1 {
		t.Errorf("%d racers wrote the shared event, want exactly 1", sharedWriters)
	}
	got := mustReadStream(t, s, stream)
	if len(got) != racers+1 {
		t.Fatalf("stream holds %d events, want %d", len(got), racers+1)
	}
	count := map[uuid.UUID]int{}
	for i, ev := range got {
		count[ev.ID]++
		if ev.Revision != uint64(i) {
			t.Errorf("event %d has revision %d", i, ev.Revision)
		}
	}
	for _, ev := range append([]eventstore.EventData{shared}, own...) {
		if count[ev.ID] != 1 {
			t.Errorf("event %s stored %d times, want once", ev.Type, count[ev.ID])
		}
	}
	for i := range racers {
		var mine eventstore.RecordedEvent
		for _, ev := range got {
			if ev.ID == own[i].ID {
				mine = ev
			}
		}
		if results[i].Position != mine.Position || results[i].NextRevision != mine.Revision {
			t.Errorf("racer %d: %+v, want Position %d and NextRevision %d (its own event's)", i, results[i], mine.Position, mine.Revision)
		}
	}
}

// dupPerStream checks that dedup is per stream: the same ID in two streams
// is two events.
func (su suite) dupPerStream(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	ev := event("both")
	for _, stream := range []string{"dup-one", "dup-two"} {
		res := mustAppend(t, s, stream, eventstore.NoStream(), ev)
		if len(res.Duplicates) != 0 {
			t.Errorf("append to %s: Duplicates %v, want none", stream, res.Duplicates)
		}
		checkStream(t, s, stream, []eventstore.EventData{ev})
	}
}

// dupLongAgo re-appends the first event of a stream after many others.
func (su suite) dupLongAgo(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	const stream = "dup-long-ago"
	first := event("first")
	res1 := mustAppend(t, s, stream, eventstore.NoStream(), first)
	later := events(300, "later")
	for i := 0; i < len(later); i += 100 {
		mustAppend(t, s, stream, eventstore.Any(), later[i:i+100]...)
		mustAppend(t, s, fmt.Sprintf("dup-long-ago-other-%d", i), eventstore.Any(), events(50, "other")...)
	}
	res, err := s.Append(t.Context(), stream, eventstore.NoStream(), first)
	checkAllDuplicates(t, res, err, []eventstore.EventData{first}, 300, res1.Position)
	checkStream(t, s, stream, append([]eventstore.EventData{first}, later...))
}

// dupAfterReopen checks that the dedup index survives a reopen.
func (su suite) dupAfterReopen(t *testing.T) {
	t.Parallel()
	s, opener := su.open(t)
	const stream = "dup-reopen"
	evs := events(2, "reopen")
	first := mustAppend(t, s, stream, eventstore.NoStream(), evs...)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = openWith(t, opener)
	res, err := s.Append(t.Context(), stream, eventstore.NoStream(), evs...)
	checkAllDuplicates(t, res, err, evs, 1, first.Position)

	c := event("c")
	res = mustAppend(t, s, stream, eventstore.Revision(1), evs[1], c)
	if !slices.Equal(res.Duplicates, []uuid.UUID{evs[1].ID}) || res.NextRevision != 2 || res.Position <= first.Position {
		t.Errorf("append [b c] after reopen: %+v, want Duplicates [b], NextRevision 2 and a Position after %d", res, first.Position)
	}
	checkStream(t, s, stream, append(slices.Clone(evs), c))
}
