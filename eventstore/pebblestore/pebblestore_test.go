package pebblestore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/eventstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func(t *testing.T) eventstore.Store {
			return open(t, dir, pebblestore.Options{})
		}
	})
}

// testLogger shows warnings and errors in the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// open opens a store in dir; the caller (or the suite) closes it.
func open(t testing.TB, dir string, opts pebblestore.Options) *pebblestore.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// openClosed opens a store in dir that the test's cleanup closes.
func openClosed(t testing.TB, dir string, opts pebblestore.Options) *pebblestore.Store {
	t.Helper()
	s := open(t, dir, opts)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func ev(tag string) eventstore.EventData {
	return eventstore.EventData{ID: uuid.New(), Type: "Test", Data: []byte(tag)}
}

func readAll(t testing.TB, s eventstore.Store) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	from := eventstore.Start
	for {
		evs, err := s.ReadAll(context.Background(), from, 997)
		if err != nil {
			t.Fatalf("read all from %d: %v", from, err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		from = evs[len(evs)-1].Position
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(storetest.Deadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, storetest.Deadline)
		}
		time.Sleep(time.Millisecond)
	}
}

// gate holds the committer at its first group until released, so that
// appends can be queued behind it in a known order.
type gate struct {
	calls   atomic.Int32
	release chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) hook() {
	if g.calls.Add(1) == 1 {
		<-g.release
	}
}

type appendOutcome struct {
	res eventstore.AppendResult
	err error
}

// queue starts an append and waits until it is queued behind the held
// committer (the queue then holds want requests).
func queue(t *testing.T, s *pebblestore.Store, want int, ctx context.Context, stream string, expected eventstore.StreamState, evs ...eventstore.EventData) <-chan appendOutcome {
	t.Helper()
	out := make(chan appendOutcome, 1)
	go func() {
		res, err := s.Append(ctx, stream, expected, evs...)
		out <- appendOutcome{res, err}
	}()
	waitFor(t, fmt.Sprintf("append %d queued", want), func() bool { return pebblestore.QueueLen(s) == want })
	return out
}

// plug appends one event that the gated committer takes and holds.
func plug(t *testing.T, s *pebblestore.Store, g *gate) <-chan appendOutcome {
	t.Helper()
	out := make(chan appendOutcome, 1)
	go func() {
		res, err := s.Append(context.Background(), "plug", eventstore.Any(), ev("plug"))
		out <- appendOutcome{res, err}
	}()
	waitFor(t, "committer holds the plug", func() bool { return g.calls.Load() == 1 })
	return out
}

func TestPositionsContiguous(t *testing.T) {
	t.Parallel()
	s := openClosed(t, t.TempDir(), pebblestore.Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				stream := fmt.Sprintf("contig-%d", i%3)
				evs := make([]eventstore.EventData, 1+i%4)
				for j := range evs {
					evs[j] = ev(fmt.Sprintf("%d/%d/%d", w, i, j))
				}
				if _, err := s.Append(ctx, stream, eventstore.Any(), evs...); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				// Appends that write nothing must not consume positions.
				if _, err := s.Append(ctx, stream, eventstore.NoStream(), evs...); err != nil {
					t.Errorf("append of duplicates: %v", err)
				}
				if _, err := s.Append(ctx, stream, eventstore.NoStream(), ev("refused")); !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
					t.Errorf("append expecting no stream: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	all := readAll(t, s)
	for i, e := range all {
		if e.Position != eventstore.Position(i+1) {
			t.Fatalf("event %d at position %d, want %d", i, e.Position, i+1)
		}
	}
	want := 0
	for i := range 30 {
		want += 8 * (1 + i%4)
	}
	if len(all) != want {
		t.Errorf("log holds %d events, want %d", len(all), want)
	}
	h, err := s.Head(ctx)
	if err != nil || h != eventstore.Position(len(all)) {
		t.Errorf("Head = %d, %v; want %d", h, err, len(all))
	}
	if st := s.Stats(); st.Events != uint64(len(all)) || st.Appends != 8*30*3 {
		t.Errorf("Stats = %+v, want %d events in %d appends", st, len(all), 8*30*3)
	}
}

// TestGroupSeesEarlierRequests queues appends behind a held committer so
// that they commit as one group, and checks that each is judged against
// the ones before it.
func TestGroupSeesEarlierRequests(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := openClosed(t, t.TempDir(), pebblestore.WithBeforeGroup(pebblestore.Options{}, g.hook))
	ctx := context.Background()
	held := plug(t, s, g)
	a, b, c := ev("a"), ev("b"), ev("c")
	r1 := queue(t, s, 1, ctx, "x", eventstore.NoStream(), a)
	r2 := queue(t, s, 2, ctx, "x", eventstore.Revision(0), b)
	r3 := queue(t, s, 3, ctx, "x", eventstore.NoStream(), c)           // x exists by now
	r4 := queue(t, s, 4, ctx, "x", eventstore.NoStream(), a)           // a duplicate written by r1
	r5 := queue(t, s, 5, ctx, "x", eventstore.Revision(1), c, a)       // c is new, a a duplicate
	r6 := queue(t, s, 6, ctx, "y", eventstore.StreamExists(), ev("y")) // y does not exist
	r7 := queue(t, s, 7, ctx, "y", eventstore.Any(), a)                // dedup is per stream
	close(g.release)

	if o := <-held; o.err != nil || o.res.Position != 1 {
		t.Fatalf("plug: %+v", o)
	}
	check := func(name string, r <-chan appendOutcome, next uint64, pos eventstore.Position, dups []uuid.UUID) {
		t.Helper()
		o := <-r
		if o.err != nil {
			t.Errorf("%s: %v", name, o.err)
			return
		}
		if o.res.NextRevision != next || o.res.Position != pos || fmt.Sprint(o.res.Duplicates) != fmt.Sprint(dups) {
			t.Errorf("%s: %+v, want NextRevision %d, Position %d, Duplicates %v", name, o.res, next, pos, dups)
		}
	}
	check("r1", r1, 0, 2, nil)
	check("r2", r2, 1, 3, nil)
	if o := <-r3; !errors.Is(o.err, eventstore.ErrWrongExpectedVersion) {
		t.Errorf("r3: %+v, want ErrWrongExpectedVersion", o)
	}
	check("r4", r4, 1, 2, []uuid.UUID{a.ID})
	check("r5", r5, 2, 4, []uuid.UUID{a.ID})
	if o := <-r6; !errors.Is(o.err, eventstore.ErrWrongExpectedVersion) {
		t.Errorf("r6: %+v, want ErrWrongExpectedVersion", o)
	}
	check("r7", r7, 0, 5, nil)
	if st := s.Stats(); st.Commits != 2 || st.Appends != 8 || st.Events != 5 {
		t.Errorf("Stats = %+v, want 2 commits of 8 appends writing 5 events", st)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := newGate()
	s := open(t, dir, pebblestore.WithBeforeGroup(pebblestore.Options{}, g.hook))
	held := plug(t, s, g)
	var queued []<-chan appendOutcome
	var evs []eventstore.EventData
	for i := range 20 {
		e := ev(fmt.Sprint(i))
		evs = append(evs, e)
		queued = append(queued, queue(t, s, i+1, context.Background(), fmt.Sprintf("drain-%d", i%3), eventstore.Any(), e))
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close refuses new appends at once, while the queued ones still wait.
	waitFor(t, "close begins", func() bool { return pebblestore.Closing(s) })
	if _, err := s.Append(context.Background(), "late", eventstore.Any(), ev("late")); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("append during close: %v, want ErrUnavailable", err)
	}
	close(g.release)
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if o := <-held; o.err != nil {
		t.Errorf("plug: %v", o.err)
	}
	for i, r := range queued {
		if o := <-r; o.err != nil {
			t.Errorf("queued append %d: %v", i, o.err)
		}
	}
	s = openClosed(t, dir, pebblestore.Options{})
	all := readAll(t, s)
	if len(all) != 21 {
		t.Fatalf("log holds %d events after reopen, want 21", len(all))
	}
	for i, e := range evs {
		if all[i+1].ID != e.ID {
			t.Errorf("event %d is %s, want queued append %d's %s", i+1, all[i+1].ID, i, e.ID)
		}
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), pebblestore.Options{})
	ctx := context.Background()
	if _, err := s.Append(ctx, "s", eventstore.Any(), ev("one")); err != nil {
		t.Fatal(err)
	}
	sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := sub.Next(ctx); err != nil || len(b.Events) != 1 {
		t.Fatalf("next: %d events, %v", len(b.Events), err)
	}
	pending := make(chan error, 1)
	go func() {
		_, err := sub.Next(ctx)
		pending <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Next block; either order must pass
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	select {
	case err := <-pending:
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Errorf("live subscription at close: %v, want ErrUnavailable", err)
		}
	case <-time.After(storetest.Deadline):
		t.Fatal("live subscription not ended by close")
	}
	checks := map[string]error{}
	_, checks["Append"] = s.Append(ctx, "s", eventstore.Any(), ev("two"))
	_, checks["ReadStream"] = s.ReadStream(ctx, "s", 0, 10)
	_, checks["ReadAll"] = s.ReadAll(ctx, 0, 10)
	_, checks["Head"] = s.Head(ctx)
	_, checks["SubscribeAll"] = s.SubscribeAll(ctx, 0, eventstore.Filter{})
	_, checks["Next"] = sub.Next(ctx)
	for op, err := range checks {
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Errorf("%s after close: %v, want ErrUnavailable", op, err)
		}
	}
}

func TestOpenLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openClosed(t, dir, pebblestore.Options{})
	if s, err := pebblestore.Open(dir, pebblestore.Options{Logger: testLogger(t)}); err == nil {
		s.Close()
		t.Fatal("second open of an open store succeeded")
	}
}

func TestCommitFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := newGate()
	var commits atomic.Int32
	opts := pebblestore.WithBeforeGroup(pebblestore.Options{}, g.hook)
	opts = pebblestore.WithCommit(opts, func(b *pebble.Batch) error {
		if commits.Add(1) > 1 {
			return errors.New("injected sync failure")
		}
		return b.Commit(pebble.Sync)
	})
	s := open(t, dir, opts)
	ctx := context.Background()
	held := plug(t, s, g)
	var queued []<-chan appendOutcome
	for i := range 5 {
		queued = append(queued, queue(t, s, i+1, ctx, "fail", eventstore.Any(), ev(fmt.Sprint(i))))
	}
	// The plug's group commits; the next one, of the queued appends, fails.
	close(g.release)
	if o := <-held; o.err != nil {
		t.Fatalf("plug: %v", o.err)
	}
	for i, r := range queued {
		if o := <-r; !errors.Is(o.err, eventstore.ErrUnavailable) {
			t.Errorf("append %d of the failed group: %+v, want ErrUnavailable", i, o)
		}
	}
	if h, err := s.Head(ctx); err != nil || h != 1 {
		t.Errorf("Head after the failed commit = %d, %v; want 1", h, err)
	}
	if all := readAll(t, s); len(all) != 1 {
		t.Errorf("log shows %d events after the failed commit, want 1", len(all))
	}
	if _, err := s.ReadStream(ctx, "fail", 0, 10); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("read stream of the failed group: %v, want ErrStreamNotFound", err)
	}
	if _, err := s.Append(ctx, "after", eventstore.Any(), ev("after")); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("append after a failed commit: %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = openClosed(t, dir, pebblestore.Options{})
	if _, err := s.Append(ctx, "after", eventstore.Any(), ev("after")); err != nil {
		t.Errorf("append after reopen: %v", err)
	}
	if all := readAll(t, s); len(all) != 2 || all[1].Position != 2 {
		t.Errorf("log after reopen holds %d events, want the plug and the new one at 1 and 2", len(all))
	}
}

func TestContextBeforeEnqueue(t *testing.T) {
	t.Parallel()
	s := openClosed(t, t.TempDir(), pebblestore.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "ctx", eventstore.Any(), ev("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("append with a canceled context: %v, want context.Canceled", err)
	}
	if h, _ := s.Head(context.Background()); h != 0 {
		t.Errorf("Head = %d after a canceled append, want 0", h)
	}
}

// TestContextAfterEnqueue checks that a caller may stop waiting for a
// queued append, which still commits.
func TestContextAfterEnqueue(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := openClosed(t, t.TempDir(), pebblestore.WithBeforeGroup(pebblestore.Options{}, g.hook))
	held := plug(t, s, g)
	ctx, cancel := context.WithCancel(context.Background())
	data := []byte("abandoned")
	e := eventstore.EventData{ID: uuid.New(), Type: "Test", Data: data}
	r := queue(t, s, 1, ctx, "abandoned", eventstore.NoStream(), e)
	cancel()
	if o := <-r; !errors.Is(o.err, context.Canceled) {
		t.Errorf("append whose caller stopped waiting: %+v, want context.Canceled", o)
	}
	copy(data, "clobbered") // the caller may reuse its buffer
	close(g.release)
	<-held
	waitFor(t, "abandoned append committed", func() bool {
		h, err := s.Head(context.Background())
		return err == nil && h == 2
	})
	got, err := s.ReadStream(context.Background(), "abandoned", 0, 10)
	if err != nil || len(got) != 1 || got[0].ID != e.ID || string(got[0].Data) != "abandoned" {
		t.Errorf("abandoned append: %+v, %v", got, err)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	s := openClosed(t, t.TempDir(), pebblestore.Options{MaxAppendBytes: 1000})
	ctx := context.Background()
	big := eventstore.EventData{ID: uuid.New(), Type: "Big", Data: make([]byte, 1001)}
	if _, err := s.Append(ctx, "big", eventstore.Any(), big); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Errorf("append over MaxAppendBytes: %v, want ErrInvalidArgument", err)
	}
	for _, limit := range []int{0, -1} {
		if _, err := s.ReadAll(ctx, 0, limit); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Errorf("read all with limit %d: %v, want ErrInvalidArgument", limit, err)
		}
		if _, err := s.ReadStream(ctx, "big", 0, limit); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Errorf("read stream with limit %d: %v, want ErrInvalidArgument", limit, err)
		}
	}
}

// TestSubscriptionBatches checks batching on a long history: batches are
// bounded, CaughtUp turns true with the batch that reaches the start head,
// and a filter skips through positions without delivering.
func TestSubscriptionBatches(t *testing.T) {
	t.Parallel()
	s := openClosed(t, t.TempDir(), pebblestore.Options{SubscriptionBatchSize: 10})
	ctx := context.Background()
	for i := range 10 {
		evs := make([]eventstore.EventData, 10)
		for j := range evs {
			evs[j] = ev(fmt.Sprint(j))
		}
		stream := "other"
		if i == 9 {
			stream = "call-1"
		}
		if _, err := s.Append(ctx, stream, eventstore.Any(), evs...); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 10 {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Events) != 10 || b.Checkpoint != eventstore.Position(10*(i+1)) || b.CaughtUp != (i == 9) {
			t.Fatalf("batch %d: %d events, checkpoint %d, caught up %t", i, len(b.Events), b.Checkpoint, b.CaughtUp)
		}
	}

	filtered, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"call-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer filtered.Close()
	var got []eventstore.Position
	var checkpoints []eventstore.Position
	for len(got) < 10 {
		b, err := filtered.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkpoints = append(checkpoints, b.Checkpoint)
		for _, e := range b.Events {
			got = append(got, e.Position)
		}
	}
	if got[0] != 91 || got[9] != 100 || checkpoints[len(checkpoints)-1] != 100 {
		t.Errorf("filtered subscription delivered %v with checkpoints %v", got, checkpoints)
	}

	// At the head with nothing to deliver, a new subscription says once
	// that it is live.
	live, err := s.SubscribeAll(ctx, 100, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if b, err := live.Next(ctx); err != nil || len(b.Events) != 0 || !b.CaughtUp || b.Checkpoint != 100 {
		t.Errorf("subscription at the head: %+v, %v; want an empty caught-up batch at 100", b, err)
	}
}

// withPebble opens dir with Pebble directly, for tests that damage it.
func withPebble(t *testing.T, dir string, f func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatalf("open pebble: %v", err)
	}
	f(db)
	if err := db.Close(); err != nil {
		t.Fatalf("close pebble: %v", err)
	}
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// eventKey is the store's key of the event at pos (see the package doc).
func eventKey(pos uint64) []byte {
	return []byte{'e', byte(pos >> 56), byte(pos >> 48), byte(pos >> 40), byte(pos >> 32), byte(pos >> 24), byte(pos >> 16), byte(pos >> 8), byte(pos)}
}

// TestCorruption damages the record of event 2 of 3 in several ways: every
// read that meets it fails with ErrCorrupt, none panics.
func TestCorruption(t *testing.T) {
	t.Parallel()
	damage := map[string]func(t *testing.T, db *pebble.DB){
		"garbage": func(t *testing.T, db *pebble.DB) {
			if err := db.Set(eventKey(2), []byte("not a record"), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, db *pebble.DB) {
			v, closer, err := db.Get(eventKey(2))
			if err != nil {
				t.Fatal(err)
			}
			short := append([]byte(nil), v[:len(v)-3]...)
			closer.Close()
			if err := db.Set(eventKey(2), short, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		},
		"unknown version": func(t *testing.T, db *pebble.DB) {
			v, closer, err := db.Get(eventKey(2))
			if err != nil {
				t.Fatal(err)
			}
			bad := append([]byte(nil), v...)
			closer.Close()
			bad[0] = 99
			if err := db.Set(eventKey(2), bad, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		},
		"missing": func(t *testing.T, db *pebble.DB) {
			if err := db.Delete(eventKey(2), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := open(t, dir, pebblestore.Options{})
			ctx := context.Background()
			if _, err := s.Append(ctx, "c", eventstore.NoStream(), ev("1"), ev("2"), ev("3")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			withPebble(t, dir, func(db *pebble.DB) { f(t, db) })
			s = openClosed(t, dir, pebblestore.Options{})
			if _, err := s.ReadAll(ctx, eventstore.Start, 10); !errors.Is(err, pebblestore.ErrCorrupt) {
				t.Errorf("read all: %v, want ErrCorrupt", err)
			}
			if evs, err := s.ReadAll(ctx, 2, 10); err != nil || len(evs) != 1 {
				t.Errorf("read all after the damage: %d events, %v; want event 3", len(evs), err)
			}
			if _, err := s.ReadStream(ctx, "c", 0, 10); !errors.Is(err, pebblestore.ErrCorrupt) {
				t.Errorf("read stream: %v, want ErrCorrupt", err)
			}
			if evs, err := s.ReadStream(ctx, "c", 0, 1); err != nil || len(evs) != 1 {
				t.Errorf("read stream before the damage: %d events, %v; want event 1", len(evs), err)
			}
			sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if b, err := sub.Next(ctx); !errors.Is(err, pebblestore.ErrCorrupt) {
				t.Errorf("subscription: %d events, %v; want ErrCorrupt", len(b.Events), err)
			}
		})
	}
	t.Run("last record", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s := open(t, dir, pebblestore.Options{})
		if _, err := s.Append(context.Background(), "c", eventstore.NoStream(), ev("1")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		withPebble(t, dir, func(db *pebble.DB) {
			if err := db.Set(eventKey(1), []byte{1, 2, 3}, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		})
		if s, err := pebblestore.Open(dir, pebblestore.Options{Logger: testLogger(t)}); !errors.Is(err, pebblestore.ErrCorrupt) {
			if err == nil {
				s.Close()
			}
			t.Errorf("open with a corrupt last record: %v, want ErrCorrupt", err)
		}
	})
}

func TestOpenTwiceReportsLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	second, err := pebblestore.Open(dir, pebblestore.Options{})
	if err == nil {
		second.Close()
		t.Fatal("a second Open of a directory in use succeeded")
	}
	if !errors.Is(err, pebblestore.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}
