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

func (su suite) readStream(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	const stream = "read-stream"
	evs := events(10, "rs")
	mustAppend(t, s, stream, eventstore.NoStream(), evs[:5]...)
	mustAppend(t, s, "read-stream-x", eventstore.NoStream(), event("interleaved"))
	mustAppend(t, s, stream, eventstore.Revision(4), evs[5:]...)
	// Streams whose names extend or prefix the one read.
	mustAppend(t, s, "read-stream-2", eventstore.NoStream(), event("longer"))
	mustAppend(t, s, "read-strea", eventstore.NoStream(), event("shorter"))
	mustAppend(t, s, "read-stream\x01", eventstore.NoStream(), event("control"))

	t.Run("ranges", func(t *testing.T) {
		cases := []struct {
			from  uint64
			limit int
			want  []int // revisions
		}{
			{0, 100, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
			{0, 10, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
			{0, 1, []int{0}},
			{3, 4, []int{3, 4, 5, 6}},
			{4, 2, []int{4, 5}},
			{9, 5, []int{9}},
			{10, 5, []int{}},
			{1000, 5, []int{}},
		}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("from %d limit %d", tc.from, tc.limit), func(t *testing.T) {
				got, err := s.ReadStream(t.Context(), stream, tc.from, tc.limit)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("read %d events, want revisions %v", len(got), tc.want)
				}
				for i, rev := range tc.want {
					checkEvent(t, got[i], evs[rev], stream, uint64(rev))
				}
			})
		}
	})
	t.Run("matches the log", func(t *testing.T) {
		byID := map[uuid.UUID]eventstore.RecordedEvent{}
		for _, ev := range readAll(t, s, 100) {
			byID[ev.ID] = ev
		}
		for _, ev := range mustReadStream(t, s, stream) {
			if all, ok := byID[ev.ID]; !ok || all.Position != ev.Position || all.Stream != ev.Stream || all.Revision != ev.Revision {
				t.Errorf("stream event %s@%d at %d; the log has %+v", ev.Stream, ev.Revision, ev.Position, all)
			}
		}
	})
	t.Run("not found", func(t *testing.T) {
		for _, name := range []string{"never-written", "read-stream-"} {
			got, err := s.ReadStream(t.Context(), name, 0, 10)
			if !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Errorf("read %s = %d events, %v; want ErrStreamNotFound", name, len(got), err)
			}
		}
		// A refused append does not create the stream.
		if _, err := s.Append(t.Context(), "refused", eventstore.StreamExists(), event("x")); !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			t.Fatalf("append expecting an existing stream to a new one: %v", err)
		}
		if got, err := s.ReadStream(t.Context(), "refused", 0, 10); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("read a stream whose only append was refused = %d events, %v; want ErrStreamNotFound", len(got), err)
		}
	})
}

func (su suite) readAll(t *testing.T) {
	t.Parallel()
	t.Run("empty", func(t *testing.T) {
		t.Parallel()
		s, _ := su.open(t)
		got, err := s.ReadAll(t.Context(), eventstore.Start, 10)
		if err != nil || len(got) != 0 {
			t.Errorf("read all of an empty log = %d events, %v; want none", len(got), err)
		}
		if h := mustHead(t, s); h != eventstore.Start {
			t.Errorf("Head of an empty log = %d, want %d", h, eventstore.Start)
		}
	})
	t.Run("ordered and gap-free", func(t *testing.T) {
		t.Parallel()
		s, _ := su.open(t)
		acked := appendConcurrently(t, s, "all", 8, 25)
		all := checkLog(t, s, acked)
		if h := mustHead(t, s); h != all[len(all)-1].Position {
			t.Errorf("Head = %d, want the last event's position %d", h, all[len(all)-1].Position)
		}
		for _, page := range []int{1, 3, 64, 1000} {
			if got := readAll(t, s, page); !sameEvents(got, all) {
				t.Errorf("paging by %d gives a different sequence than one read", page)
			}
		}
		// from is exclusive, and need not be an event's position.
		for _, k := range []int{0, 1, len(all) / 2, len(all) - 2} {
			for _, from := range []eventstore.Position{all[k].Position, all[k].Position + 1} {
				got, err := s.ReadAll(t.Context(), from, 5)
				if err != nil {
					t.Fatalf("read all from %d: %v", from, err)
				}
				var want []eventstore.RecordedEvent
				for _, ev := range all {
					if ev.Position > from && len(want) < 5 {
						want = append(want, ev)
					}
				}
				if !sameEvents(got, want) {
					t.Errorf("read all from %d returned %v, want %v", from, positions(got), positions(want))
				}
			}
		}
		last := all[len(all)-1].Position
		if got, err := s.ReadAll(t.Context(), last, 10); err != nil || len(got) != 0 {
			t.Errorf("read all from the head = %d events, %v; want none", len(got), err)
		}
	})
}

// acked is what the writers of a test were told: each acknowledged event,
// its stream and revision, and the position of the append's last event.
type acked struct {
	ev       eventstore.EventData
	stream   string
	revision uint64
	last     eventstore.Position // AppendResult.Position of its append
	isLast   bool                // the last event of its append
}

// appendConcurrently runs writers goroutines, each doing appends appends of
// 1–3 events to streams of its own, and returns every acknowledged event.
func appendConcurrently(t *testing.T, s eventstore.Store, prefix string, writers, appends int) []acked {
	t.Helper()
	out := appendLoad(t, s, prefix, writers, appends)
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// appendLoad is appendConcurrently for callers off the test goroutine: it
// reports failures with t.Errorf only.
func appendLoad(t *testing.T, s eventstore.Store, prefix string, writers, appends int) []acked {
	var (
		mu  sync.Mutex
		out []acked
		wg  sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range appends {
				stream := fmt.Sprintf("%s-%d-%d", prefix, w, i%5)
				evs := events(1+i%3, fmt.Sprintf("%s-%d-%d", prefix, w, i))
				res, err := s.Append(t.Context(), stream, eventstore.Any(), evs...)
				if err != nil {
					t.Errorf("writer %d: append: %v", w, err)
					return
				}
				mu.Lock()
				for j, ev := range evs {
					out = append(out, acked{
						ev: ev, stream: stream, last: res.Position, isLast: j == len(evs)-1,
						revision: res.NextRevision - uint64(len(evs)-1-j),
					})
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// checkLog reads the whole log and asserts that positions strictly increase
// and that every acknowledged event is there exactly once, where its append
// said. It returns the log.
func checkLog(t *testing.T, s eventstore.Store, acks []acked) []eventstore.RecordedEvent {
	t.Helper()
	all := readAll(t, s, 1000)
	seen := map[uuid.UUID]eventstore.RecordedEvent{}
	for i, ev := range all {
		if i > 0 && ev.Position <= all[i-1].Position {
			t.Errorf("log position %d follows %d", ev.Position, all[i-1].Position)
		}
		if prev, ok := seen[ev.ID]; ok && prev.Stream == ev.Stream {
			t.Errorf("event %s in %s twice, at %d and %d", ev.ID, ev.Stream, prev.Position, ev.Position)
		}
		seen[ev.ID] = ev
	}
	for _, a := range acks {
		got, ok := seen[a.ev.ID]
		if !ok {
			t.Errorf("acknowledged event %s of %s missing from the log", a.ev.ID, a.stream)
			continue
		}
		checkEvent(t, got, a.ev, a.stream, a.revision)
		if (a.isLast && got.Position != a.last) || got.Position > a.last {
			t.Errorf("event %s at position %d; its append reported %d", a.ev.ID, got.Position, a.last)
		}
	}
	if len(all) != len(acks) {
		t.Errorf("log holds %d events, %d were acknowledged", len(all), len(acks))
	}
	if t.Failed() {
		t.FailNow()
	}
	return all
}

func sameEvents(a, b []eventstore.RecordedEvent) bool {
	return slices.EqualFunc(a, b, func(x, y eventstore.RecordedEvent) bool {
		return x.ID == y.ID && x.Position == y.Position && x.Stream == y.Stream && x.Revision == y.Revision
	})
}

func positions(evs []eventstore.RecordedEvent) []eventstore.Position {
	out := make([]eventstore.Position, len(evs))
	for i := range evs {
		out[i] = evs[i].Position
	}
	return out
}

// reopen checks that a closed and reopened store holds every acknowledged
// event, field for field, and carries on where it stopped.
func (su suite) reopen(t *testing.T) {
	t.Parallel()
	s, opener := su.open(t)
	acks := appendConcurrently(t, s, "reopen", 4, 10)
	bulk := events(50, "bulk")
	res := mustAppend(t, s, "reopen-bulk", eventstore.NoStream(), bulk...)
	for i, ev := range bulk {
		acks = append(acks, acked{ev: ev, stream: "reopen-bulk", revision: uint64(i), last: res.Position, isLast: i == len(bulk)-1})
	}
	before := checkLog(t, s, acks)
	head := mustHead(t, s)
	for round := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		s = openWith(t, opener)
		after := checkLog(t, s, acks)
		if len(after) != len(before) {
			t.Fatalf("reopen %d: log holds %d events, want %d", round, len(after), len(before))
		}
		for i := range before {
			b, a := before[i], after[i]
			if a.ID != b.ID || a.Stream != b.Stream || a.Revision != b.Revision || a.Position != b.Position ||
				a.Type != b.Type || string(a.Data) != string(b.Data) || string(a.Metadata) != string(b.Metadata) || !a.Created.Equal(b.Created) {
				t.Fatalf("reopen %d: event %d = %+v, was %+v", round, i, a, b)
			}
		}
		if h := mustHead(t, s); h != head {
			t.Errorf("reopen %d: Head = %d, want %d", round, h, head)
		}
	}
	checkStream(t, s, "reopen-bulk", bulk)
	// Stream heads survive: the next append continues the revisions.
	if _, err := s.Append(t.Context(), "reopen-bulk", eventstore.NoStream(), event("x")); !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Errorf("append expecting no stream to a reopened stream: %v, want ErrWrongExpectedVersion", err)
	}
	next := event("next")
	res = mustAppend(t, s, "reopen-bulk", eventstore.Revision(49), next)
	if res.NextRevision != 50 || res.Position <= head {
		t.Errorf("append after reopen: %+v, want NextRevision 50 and a Position after %d", res, head)
	}
	checkStream(t, s, "reopen-bulk", append(bulk, next))
}
