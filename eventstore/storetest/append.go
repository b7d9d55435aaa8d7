package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
)

// expectedState checks every expected state against empty and non-empty
// streams: the right ones append, the wrong ones fail with a detailed
// WrongExpectedVersionError and write nothing.
func (su suite) expectedState(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	cases := []struct {
		name     string
		prior    int // events in the stream before the append
		expected eventstore.StreamState
		ok       bool
	}{
		{"Any on empty stream", 0, eventstore.Any(), true},
		{"NoStream on empty stream", 0, eventstore.NoStream(), true},
		{"StreamExists on empty stream", 0, eventstore.StreamExists(), false},
		{"Revision 0 on empty stream", 0, eventstore.Revision(0), false},
		{"Revision 3 on empty stream", 0, eventstore.Revision(3), false},
		{"Any on stream at 2", 3, eventstore.Any(), true},
		{"NoStream on stream at 2", 3, eventstore.NoStream(), false},
		{"StreamExists on stream at 2", 3, eventstore.StreamExists(), true},
		{"Revision 2 on stream at 2", 3, eventstore.Revision(2), true},
		{"Revision 1 on stream at 2", 3, eventstore.Revision(1), false},
		{"Revision 3 on stream at 2", 3, eventstore.Revision(3), false},
		{"Revision 0 on stream at 0", 1, eventstore.Revision(0), true},
		{"NoStream on stream at 0", 1, eventstore.NoStream(), false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := fmt.Sprintf("expected-%d", i)
			prior := events(tc.prior, "prior")
			var priorRes eventstore.AppendResult
			if tc.prior > 0 {
				priorRes = mustAppend(t, s, stream, eventstore.Any(), prior...)
				if priorRes.NextRevision != uint64(tc.prior-1) {
					t.Fatalf("priming append: NextRevision %d, want %d", priorRes.NextRevision, tc.prior-1)
				}
			}
			next := events(2, "next")
			res, err := s.Append(t.Context(), stream, tc.expected, next...)
			if tc.ok {
				if err != nil {
					t.Fatalf("append expecting %v: %v", tc.expected, err)
				}
				if want := uint64(tc.prior + 1); res.NextRevision != want {
					t.Errorf("NextRevision = %d, want %d", res.NextRevision, want)
				}
				if len(res.Duplicates) != 0 {
					t.Errorf("Duplicates = %v, want none", res.Duplicates)
				}
				got := checkStream(t, s, stream, append(prior, next...))
				if res.Position != got[len(got)-1].Position {
					t.Errorf("Position = %d, want %d (the last appended event's)", res.Position, got[len(got)-1].Position)
				}
				if tc.prior > 0 && res.Position <= priorRes.Position {
					t.Errorf("Position = %d, not after the previous append's %d", res.Position, priorRes.Position)
				}
				return
			}
			if err == nil {
				t.Fatalf("append expecting %v to a stream of %d events succeeded: %+v", tc.expected, tc.prior, res)
			}
			if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
				t.Fatalf("error %v does not match ErrWrongExpectedVersion", err)
			}
			for _, other := range []error{eventstore.ErrStreamNotFound, eventstore.ErrUnavailable, eventstore.ErrInvalidArgument} {
				if errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
			var wev *eventstore.WrongExpectedVersionError
			if !errors.As(err, &wev) {
				t.Fatalf("error %v (%T) is not a *WrongExpectedVersionError", err, err)
			}
			want := eventstore.WrongExpectedVersionError{Stream: stream, Expected: tc.expected, Exists: tc.prior > 0}
			if tc.prior > 0 {
				want.Actual = uint64(tc.prior - 1)
			}
			if wev.Stream != want.Stream || wev.Expected != want.Expected || wev.Exists != want.Exists || (want.Exists && wev.Actual != want.Actual) {
				t.Errorf("error = %+v, want %+v", *wev, want)
			}
			if !strings.Contains(err.Error(), stream) {
				t.Errorf("error %q does not name the stream", err)
			}
			checkStream(t, s, stream, prior)
		})
	}
}

// appendResult checks what an append reports and that events read back as
// they were written, payloads included.
func (su suite) appendResult(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	first := []eventstore.EventData{
		{ID: uuid.New(), Type: "NoPayload"},
		{ID: uuid.New(), Type: "EmptyPayload", Data: []byte{}, Metadata: []byte{}},
		{ID: uuid.New(), Type: "Binary", Data: []byte{0, 1, 0, 255, 0}, Metadata: []byte{0}},
		{ID: uuid.New(), Type: "Big", Data: big, Metadata: []byte(`{"k":"v"}`)},
		{ID: uuid.New(), Type: "Ünïcödé type", Data: []byte("x")},
	}
	res1 := mustAppend(t, s, "result-a", eventstore.NoStream(), first...)
	if res1.NextRevision != uint64(len(first)-1) || len(res1.Duplicates) != 0 {
		t.Errorf("first append: %+v, want NextRevision %d and no duplicates", res1, len(first)-1)
	}
	// An append to another stream in between: positions are global.
	other := mustAppend(t, s, "result-b", eventstore.Any(), event("b"))
	second := events(3, "second")
	res2 := mustAppend(t, s, "result-a", eventstore.Revision(res1.NextRevision), second...)
	if res2.NextRevision != uint64(len(first)+len(second)-1) {
		t.Errorf("second append: NextRevision %d, want %d", res2.NextRevision, len(first)+len(second)-1)
	}
	if !(res1.Position < other.Position && other.Position < res2.Position) {
		t.Errorf("positions of successive appends %d, %d, %d do not increase", res1.Position, other.Position, res2.Position)
	}
	got := checkStream(t, s, "result-a", append(slices.Clone(first), second...))
	if got[len(first)-1].Position != res1.Position || got[len(got)-1].Position != res2.Position {
		t.Errorf("reported positions %d and %d, want those of the last events of each append, %d and %d",
			res1.Position, res2.Position, got[len(first)-1].Position, got[len(got)-1].Position)
	}
	if h := mustHead(t, s); h != res2.Position {
		t.Errorf("Head = %d, want the last append's position %d", h, res2.Position)
	}
	// The store must not keep references to the caller's buffers.
	data := []byte("original")
	ev := eventstore.EventData{ID: uuid.New(), Type: "Owned", Data: data}
	mustAppend(t, s, "result-c", eventstore.NoStream(), ev)
	copy(data, "mutated!")
	if evs := mustReadStream(t, s, "result-c"); string(evs[0].Data) != "original" {
		t.Errorf("stored data changed with the caller's buffer: %q", evs[0].Data)
	}
	// Nor may a reader's changes to returned events reach the store, or
	// appending to one event's bytes reach the next field or event.
	want := append(slices.Clone(first), second...)
	evs := mustReadStream(t, s, "result-a")
	evs[2].Data[0] = 42
	evs[2].Data = append(evs[2].Data, 9, 9, 9)
	evs[2].Metadata = append(evs[2].Metadata, 9, 9, 9)
	for i := range evs {
		if i != 2 {
			checkEvent(t, evs[i], want[i], "result-a", uint64(i))
		}
	}
	if !bytes.Equal(evs[2].Metadata, []byte{0, 9, 9, 9}) {
		t.Errorf("appending to one event's data changed its metadata: %v", evs[2].Metadata)
	}
	checkStream(t, s, "result-a", want)
}

// invalidArguments checks that requests that can never succeed are refused
// with ErrInvalidArgument and write nothing.
func (su suite) invalidArguments(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	long := strings.Repeat("x", eventstore.MaxStreamNameLen+1)
	appends := []struct {
		name   string
		stream string
		events []eventstore.EventData
	}{
		{"empty stream name", "", events(1, "a")},
		{"NUL in stream name", "call-\x00x", events(1, "a")},
		{"stream name too long", long, events(1, "a")},
		{"no events", "invalid-none", nil},
		{"nil event ID", "invalid-nil-id", []eventstore.EventData{event("ok"), {Type: "NoID", Data: []byte("x")}}},
	}
	for _, tc := range appends {
		t.Run("Append/"+tc.name, func(t *testing.T) {
			for _, expected := range []eventstore.StreamState{eventstore.Any(), eventstore.NoStream()} {
				res, err := s.Append(t.Context(), tc.stream, expected, tc.events...)
				if !errors.Is(err, eventstore.ErrInvalidArgument) {
					t.Errorf("append expecting %v = %+v, %v; want ErrInvalidArgument", expected, res, err)
				}
			}
		})
	}
	reads := []struct{ name, stream string }{
		{"empty stream name", ""},
		{"NUL in stream name", "a\x00b"},
	}
	for _, tc := range reads {
		t.Run("ReadStream/"+tc.name, func(t *testing.T) {
			evs, err := s.ReadStream(t.Context(), tc.stream, 0, 10)
			if !errors.Is(err, eventstore.ErrInvalidArgument) {
				t.Errorf("read stream %q = %d events, %v; want ErrInvalidArgument", tc.stream, len(evs), err)
			}
		})
	}
	t.Run("nothing written", func(t *testing.T) {
		if h := mustHead(t, s); h != eventstore.Start {
			t.Errorf("Head = %d after refused appends, want %d", h, eventstore.Start)
		}
		for _, stream := range []string{"invalid-none", "invalid-nil-id"} {
			checkStream(t, s, stream, nil)
		}
	})
	t.Run("longest stream name is valid", func(t *testing.T) {
		name := strings.Repeat("y", eventstore.MaxStreamNameLen)
		ev := event("longest")
		mustAppend(t, s, name, eventstore.NoStream(), ev)
		checkStream(t, s, name, []eventstore.EventData{ev})
	})
}

// concurrentWriters runs 16 writers on one stream, each appending with the
// exact revision it believes current and retrying on conflicts: every
// revision must have exactly one winner, and no event may be lost or
// written twice.
func (su suite) concurrentWriters(t *testing.T) {
	t.Parallel()
	s, _ := su.open(t)
	const (
		writers    = 16
		perWriter  = 8
		stream     = "contended"
		maxRetries = 10_000
	)
	type win struct {
		writer int
		rev    uint64
		ev     eventstore.EventData
	}
	var (
		mu     sync.Mutex
		wins   []win
		losers = map[uuid.UUID]bool{}
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			expected := eventstore.NoStream()
			retries := 0
			for written := 0; written < perWriter; {
				ev := event(fmt.Sprintf("w%d-%d", w, written))
				res, err := s.Append(t.Context(), stream, expected, ev)
				var wev *eventstore.WrongExpectedVersionError
				switch {
				case err == nil:
					if len(res.Duplicates) != 0 {
						t.Errorf("writer %d: fresh event reported as duplicate: %+v", w, res)
						return
					}
					mu.Lock()
					wins = append(wins, win{writer: w, rev: res.NextRevision, ev: ev})
					mu.Unlock()
					expected = eventstore.Revision(res.NextRevision)
					written++
				case errors.As(err, &wev):
					mu.Lock()
					losers[ev.ID] = true
					mu.Unlock()
					if wev.Exists {
						expected = eventstore.Revision(wev.Actual)
					} else {
						expected = eventstore.NoStream()
					}
					if retries++; retries > maxRetries {
						t.Errorf("writer %d: still conflicting after %d retries", w, maxRetries)
						return
					}
				default:
					t.Errorf("writer %d: append: %v", w, err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	const total = writers * perWriter
	if len(wins) != total {
		t.Fatalf("%d successful appends, want %d", len(wins), total)
	}
	byRev := make([]*win, total)
	perW := make([]int, writers)
	for i := range wins {
		w := &wins[i]
		if w.rev >= total {
			t.Fatalf("writer %d won revision %d, beyond the %d appended events", w.writer, w.rev, total)
		}
		if prev := byRev[w.rev]; prev != nil {
			t.Fatalf("revision %d won by writer %d and writer %d", w.rev, prev.writer, w.writer)
		}
		byRev[w.rev] = w
		perW[w.writer]++
	}
	for w, n := range perW {
		if n != perWriter {
			t.Errorf("writer %d won %d appends, want %d", w, n, perWriter)
		}
	}
	got := mustReadStream(t, s, stream)
	if len(got) != total {
		t.Fatalf("stream holds %d events, want %d", len(got), total)
	}
	for rev, ev := range got {
		if ev.Revision != uint64(rev) {
			t.Errorf("event %d has revision %d", rev, ev.Revision)
		}
		if ev.ID != byRev[rev].ev.ID {
			t.Errorf("revision %d holds event %s, but writer %d won it with %s", rev, ev.ID, byRev[rev].writer, byRev[rev].ev.ID)
		}
		if losers[ev.ID] {
			t.Errorf("revision %d holds %s, whose append was refused", rev, ev.ID)
		}
		if rev > 0 && ev.Position <= got[rev-1].Position {
			t.Errorf("revision %d at position %d, not after %d", rev, ev.Position, got[rev-1].Position)
		}
	}
	if all := readAll(t, s, 1000); len(all) != total {
		t.Errorf("log holds %d events, want %d", len(all), total)
	}
}
