package callstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sid(n int) string { return fmt.Sprintf("CA%032x", n) }

// log builds stored events and hands them to a store in batches.
type log struct {
	pos uint64
}

func (l *log) status(t testing.TB, call, parent string, st callledgerv1.CallStatus, at time.Time) eventstore.RecordedEvent {
	t.Helper()
	l.pos++
	ev := &callledgerv1.Event{
		EventId: uuid.NewString(), CallSid: call, Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK,
		ReceivedAt: timestamppb.New(at), ReportedAt: timestamppb.New(at),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{Status: st, ParentCallSid: parent}},
	}
	rec, err := eventcodec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.RecordedEvent{ID: rec.ID, Type: rec.Type, Stream: eventcodec.CallStream(call), Position: eventstore.Position(l.pos), Data: rec.Data}
}

func open(t testing.TB, dir string, opts callstore.Options) *callstore.Store {
	t.Helper()
	s, err := callstore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func apply(t testing.TB, s *callstore.Store, evs ...eventstore.RecordedEvent) {
	t.Helper()
	if err := s.Apply(context.Background(), eventstore.Batch{Events: evs, Checkpoint: evs[len(evs)-1].Position}); err != nil {
		t.Fatal(err)
	}
}

const (
	ringing    = callledgerv1.CallStatus_CALL_STATUS_RINGING
	inProgress = callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS
	completed  = callledgerv1.CallStatus_CALL_STATUS_COMPLETED
	busy       = callledgerv1.CallStatus_CALL_STATUS_BUSY
)

// fixture: 30 calls started a minute apart; every third completed, every
// fifth busy, the rest ringing.
func fixture(t testing.TB, s *callstore.Store) *log {
	l := &log{}
	var evs []eventstore.RecordedEvent
	for i := range 30 {
		st := ringing
		switch {
		case i%3 == 0:
			st = completed
		case i%5 == 0:
			st = busy
		}
		evs = append(evs, l.status(t, sid(i), "", st, t0.Add(time.Duration(i)*time.Minute)))
	}
	apply(t, s, evs...)
	return l
}

func listAll(t *testing.T, s *callstore.Store, f callstore.Filter, page int) []string {
	t.Helper()
	var out []string
	token := ""
	for pages := 0; ; pages++ {
		p, err := s.List(context.Background(), f, page, token)
		if err != nil {
			t.Fatal(err)
		}
		calls, next := p.Calls, p.Next
		if len(calls) > page {
			t.Fatalf("page of %d calls, limit %d", len(calls), page)
		}
		for _, c := range calls {
			out = append(out, c.GetCallSid())
		}
		if next == "" {
			return out
		}
		if pages > 100 {
			t.Fatal("paging does not end")
		}
		token = next
	}
}

func TestListFiltersAndPages(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), callstore.Options{})
	fixture(t, s)
	newestFirst := func(keep func(i int) bool) []string {
		var out []string
		for i := 29; i >= 0; i-- {
			if keep(i) {
				out = append(out, sid(i))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		filter callstore.Filter
		want   []string
	}{
		{"all", callstore.Filter{}, newestFirst(func(int) bool { return true })},
		{"active", callstore.Filter{ActiveOnly: true}, newestFirst(func(i int) bool { return i%3 != 0 && i%5 != 0 })},
		{"busy or completed", callstore.Filter{Statuses: []callledgerv1.CallStatus{busy, completed}}, newestFirst(func(i int) bool { return i%3 == 0 || i%5 == 0 })},
		{"started in [10m, 20m)", callstore.Filter{StartedAfter: t0.Add(10 * time.Minute).UnixNano(), StartedBefore: t0.Add(20 * time.Minute).UnixNano()},
			newestFirst(func(i int) bool { return i >= 10 && i < 20 })},
		{"active and started after 25m", callstore.Filter{ActiveOnly: true, StartedAfter: t0.Add(25 * time.Minute).UnixNano()},
			newestFirst(func(i int) bool { return i >= 25 && i%3 != 0 && i%5 != 0 })},
	} {
		for _, page := range []int{1, 4, 7, 1000} {
			t.Run(fmt.Sprintf("%s/page %d", tc.name, page), func(t *testing.T) {
				t.Parallel()
				got := listAll(t, s, tc.filter, page)
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("got  %v\nwant %v", got, tc.want)
				}
			})
		}
	}
}

func TestPageTokenIsBoundToItsFilter(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), callstore.Options{})
	fixture(t, s)
	first, err := s.List(context.Background(), callstore.Filter{}, 2, "")
	if err != nil || first.Next == "" {
		t.Fatalf("first page: token %q, %v", first.Next, err)
	}
	if _, err := s.List(context.Background(), callstore.Filter{ActiveOnly: true}, 2, first.Next); !errors.Is(err, callstore.ErrBadPageToken) {
		t.Errorf("token of another filter: %v, want ErrBadPageToken", err)
	}
	if _, err := s.List(context.Background(), callstore.Filter{}, 2, "!!not-base64"); !errors.Is(err, callstore.ErrBadPageToken) {
		t.Errorf("garbage token: %v, want ErrBadPageToken", err)
	}
}

func TestTreeAndChildren(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), callstore.Options{})
	l := &log{}
	parent, c1, c2 := sid(100), sid(101), sid(102)
	// The children arrive first: the parent is a placeholder.
	apply(t, s, l.status(t, c2, parent, ringing, t0.Add(2*time.Second)), l.status(t, c1, parent, inProgress, t0.Add(time.Second)))
	tr, err := s.Tree(context.Background(), c1)
	if err != nil {
		t.Fatal(err)
	}
	call, legs := tr.Call, tr.Legs
	if call.GetCallSid() != c1 || len(legs) != 3 || legs[0].GetCallSid() != parent || !legs[0].GetPlaceholder() ||
		legs[1].GetCallSid() != c1 || legs[2].GetCallSid() != c2 {
		t.Fatalf("tree of %s: %v", c1, legs)
	}
	apply(t, s, l.status(t, parent, "", inProgress, t0))
	p, err := s.Get(context.Background(), parent)
	if err != nil {
		t.Fatal(err)
	}
	if p.GetPlaceholder() || len(p.GetChildCallSids()) != 2 {
		t.Errorf("parent after its own callback: %v", p)
	}
	kids := listAll(t, s, callstore.Filter{ParentCallSid: parent}, 1)
	if fmt.Sprint(kids) != fmt.Sprint([]string{c2, c1}) {
		t.Errorf("children newest first: %v", kids)
	}
	if _, err := s.Tree(context.Background(), sid(999)); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("unknown call: %v, want ErrNotFound", err)
	}
}

func TestCheckpointSurvivesReopenAndOldBatchesAreSkipped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := callstore.Open(dir, callstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := &log{}
	first := l.status(t, sid(1), "", ringing, t0)
	apply(t, s, first, l.status(t, sid(2), "", ringing, t0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, callstore.Options{})
	if cp, _ := s.Checkpoint(context.Background()); cp != 2 {
		t.Fatalf("checkpoint after reopen: %d, want 2", cp)
	}
	// A resubscription that overlaps the checkpoint re-delivers event 1.
	apply(t, s, first)
	c, err := s.Get(context.Background(), sid(1))
	if err != nil {
		t.Fatal(err)
	}
	if c.GetEventCount() != 1 || c.GetLastPosition() != 1 {
		t.Errorf("re-delivered event changed the call: %v", c)
	}
}

func TestWatchSnapshotThenChanges(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), callstore.Options{})
	l := fixture(t, s)
	w, err := s.Watch(context.Background(), callstore.Filter{ActiveOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var snap []string
	if err := w.Snapshot(context.Background(), func(c *callledgerv1.Call) error {
		snap = append(snap, c.GetCallSid())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(snap) != 16 || w.Position() != 30 {
		t.Fatalf("snapshot: %d active calls at %d, want 16 at 30", len(snap), w.Position())
	}
	// sid(1) is active and ends: an active-only watcher must hear it.
	apply(t, s, l.status(t, sid(1), "", completed, t0.Add(time.Hour)))
	select {
	case ch := <-w.Changes():
		if ch.Call.GetCallSid() != sid(1) || !ch.Call.GetTerminal() || ch.Position != 31 {
			t.Errorf("change: %v at %d", ch.Call, ch.Position)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change delivered")
	}
	// A call that was never active and stays inactive is not news to it.
	apply(t, s, l.status(t, sid(0), "", completed, t0.Add(2*time.Hour)), l.status(t, sid(2), "", inProgress, t0))
	select {
	case ch := <-w.Changes():
		if ch.Call.GetCallSid() != sid(2) {
			t.Errorf("active-only watcher got %s", ch.Call.GetCallSid())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change delivered")
	}
}

func TestSlowWatcherIsEnded(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), callstore.Options{WatchBuffer: 2})
	l := fixture(t, s)
	w, err := s.Watch(context.Background(), callstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 5 {
		apply(t, s, l.status(t, sid(200+i), "", ringing, t0))
	}
	n := 0
	for range w.Changes() {
		n++
	}
	if !errors.Is(w.Err(), callstore.ErrSlowConsumer) || n != 2 {
		t.Errorf("after %d unread changes with a buffer of 2: read %d, err %v; want 2 and ErrSlowConsumer", 5, n, w.Err())
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), callstore.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitFor(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a position never applied: %v", err)
	}
	l := &log{}
	done := make(chan error)
	go func() { done <- s.WaitFor(context.Background(), 1) }()
	apply(t, s, l.status(t, sid(1), "", ringing, t0))
	if err := <-done; err != nil {
		t.Errorf("WaitFor after the position was applied: %v", err)
	}
}

// TestWatcherEndedWhileItsSnapshotIsRead ends a watcher (too slow: the
// projection's Apply overflows its buffer) while a page of its snapshot is
// being read. The page must be read to its end from the snapshot it
// started on: ending the watcher once closed the Pebble snapshot under
// the reader, which panicked ("pebble: closed") and, through WatchCalls,
// took the server down.
func TestWatcherEndedWhileItsSnapshotIsRead(t *testing.T) {
	t.Parallel()
	var (
		s    *callstore.Store
		l    *log
		once sync.Once
	)
	overflow := func() {
		once.Do(func() {
			for i := range 3 {
				apply(t, s, l.status(t, sid(200+i), "", ringing, t0))
			}
		})
	}
	s = open(t, t.TempDir(), callstore.WithBeforePage(callstore.Options{WatchBuffer: 2}, overflow))
	l = fixture(t, s)
	w, err := s.Watch(context.Background(), callstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	n := 0
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("reading the snapshot of a watcher ended meanwhile panicked: %v", p)
			}
		}()
		err = w.Snapshot(context.Background(), func(*callledgerv1.Call) error { n++; return nil })
	}()
	if err != nil || n != 30 {
		t.Errorf("snapshot: %d calls, err %v; want the 30 calls of its position", n, err)
	}
	if !errors.Is(w.Err(), callstore.ErrSlowConsumer) {
		t.Errorf("watcher ended with %v, want ErrSlowConsumer", w.Err())
	}
}
