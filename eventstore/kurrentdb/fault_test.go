package kurrentdb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/eventstore/storetest"
)

// Waits below are failure deadlines (storetest.Deadline), never timing
// assertions.

func deadline(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), storetest.Deadline)
	t.Cleanup(cancel)
	return ctx
}

func ev(tag string) eventstore.EventData {
	return eventstore.EventData{ID: uuid.New(), Type: "Test", Data: []byte(tag), Metadata: []byte(`{"tag":"` + tag + `"}`)}
}

func mustAppend(t testing.TB, s eventstore.Store, stream string, expected eventstore.StreamState, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(deadline(t), stream, expected, evs...)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

// eventually retries f until it succeeds or the deadline passes.
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	ctx := deadline(t)
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: still failing after %v: %v", what, storetest.Deadline, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	eventually(t, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
}

// reader reads a subscription and checks what the port promises: events
// in increasing positions, none twice, checkpoints never going back.
type reader struct {
	t          testing.TB
	sub        eventstore.Subscription
	events     []eventstore.RecordedEvent
	seen       map[uuid.UUID]bool
	checkpoint eventstore.Position
	caughtUp   bool
}

func subscribe(t testing.TB, s eventstore.Store, from eventstore.Position, f eventstore.Filter) *reader {
	t.Helper()
	sub, err := s.SubscribeAll(deadline(t), from, f)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return &reader{t: t, sub: sub, seen: map[uuid.UUID]bool{}, checkpoint: from}
}

func (r *reader) next(ctx context.Context) {
	r.t.Helper()
	b, err := r.sub.Next(ctx)
	if err != nil {
		r.t.Fatalf("next after %d events: %v", len(r.events), err)
	}
	for _, e := range b.Events {
		if e.Position <= r.checkpoint {
			r.t.Fatalf("event %s at %d delivered after checkpoint %d", e.ID, e.Position, r.checkpoint)
		}
		if r.seen[e.ID] {
			r.t.Fatalf("event %s delivered twice", e.ID)
		}
		r.seen[e.ID] = true
		r.checkpoint = e.Position
	}
	if b.Checkpoint < r.checkpoint {
		r.t.Fatalf("checkpoint went back from %d to %d", r.checkpoint, b.Checkpoint)
	}
	if r.caughtUp && !b.CaughtUp {
		r.t.Fatalf("CaughtUp turned false")
	}
	r.checkpoint, r.caughtUp = b.Checkpoint, b.CaughtUp
	r.events = append(r.events, b.Events...)
}

func (r *reader) until(cond func() bool) {
	r.t.Helper()
	ctx := deadline(r.t)
	for !cond() {
		r.next(ctx)
	}
}

func readAll(t testing.TB, s eventstore.Store) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	for from := eventstore.Start; ; {
		evs, err := s.ReadAll(deadline(t), from, 1000)
		if err != nil {
			t.Fatalf("read all: %v", err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		from = evs[len(evs)-1].Position
	}
}

func sameIDs(a, b []eventstore.RecordedEvent) bool {
	return slices.EqualFunc(a, b, func(x, y eventstore.RecordedEvent) bool { return x.ID == y.ID && x.Position == y.Position })
}

// TestSubscriptionSurvivesDrops drops the subscription again and again
// (Unavailable, as on a restart; Aborted, as for a consumer too slow)
// while writers append and the server writes its own events: the
// subscriber sees every matching event once, in order.
func TestSubscriptionSurvivesDrops(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	s := openClosed(t, srv.ConnString(), kurrentdb.Options{SubscriptionBatchSize: 7})
	for i := range 30 {
		mustAppend(t, s, fmt.Sprintf("call-pre-%d", i%3), eventstore.Any(), ev("pre"))
		mustAppend(t, s, "other-pre", eventstore.Any(), ev("other"))
	}
	filter := eventstore.Filter{StreamPrefixes: []string{"call-"}}
	r := subscribe(t, s, eventstore.Start, filter)
	r.until(func() bool { return len(r.events) >= 5 })

	sentinel := ev("sentinel")
	go func() {
		for i := range 150 {
			if _, err := s.Append(deadline(t), fmt.Sprintf("call-%d", i%7), eventstore.Any(), ev("live")); err != nil {
				t.Errorf("append: %v", err)
				return
			}
			if _, err := s.Append(deadline(t), "other-live", eventstore.Any(), ev("skipped")); err != nil {
				t.Errorf("append: %v", err)
				return
			}
			switch {
			case i%25 == 10:
				srv.DropSubscriptions(codes.Unavailable, "Server Is Not Ready")
			case i%25 == 20:
				srv.DropSubscriptions(codes.Aborted, "Operation timed out: Consumer too slow to handle event while live. Client resubscription required.")
			case i%10 == 5:
				srv.AppendSystemEvent("$stats-standin", "$statsCollected", []byte("{}"))
			}
		}
		if _, err := s.Append(deadline(t), "call-sentinel", eventstore.NoStream(), sentinel); err != nil {
			t.Errorf("append sentinel: %v", err)
		}
	}()
	ctx := deadline(t)
	for i := 0; !r.seen[sentinel.ID]; i++ {
		if i%5 == 0 {
			time.Sleep(time.Millisecond) // a slow consumer now and then
		}
		r.next(ctx)
	}
	var want []eventstore.RecordedEvent
	for _, e := range readAll(t, s) {
		if filter.Match(e.Stream) {
			want = append(want, e)
		}
	}
	if !sameIDs(r.events, want) {
		t.Fatalf("subscriber saw %d events, the log holds %d matching ones; sequences differ", len(r.events), len(want))
	}
	if st := s.Stats(); st.Resubscriptions < 1 {
		t.Errorf("stats %+v: no resubscription counted after drops", st)
	}
}

// fastDiscovery makes the client give up a discovery after two quick
// attempts instead of ten over a second (TestOpenErrors keeps the defaults).
const fastDiscovery = "&maxDiscoverAttempts=2&discoveryInterval=10"

// TestUnreachableServer stops the server: appends (concurrent ones too)
// and reads fail with ErrUnavailable on their own, well before their
// context's deadline; once the server is back, the same store appends
// again and its subscription resumes without loss or repeat.
func TestUnreachableServer(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	s := openClosed(t, srv.ConnString()+fastDiscovery, kurrentdb.Options{})
	before := mustAppend(t, s, "call-a", eventstore.NoStream(), ev("before"))
	r := subscribe(t, s, eventstore.Start, eventstore.Filter{})
	r.until(func() bool { return r.caughtUp && r.checkpoint >= before.Position })

	srv.Stop()
	// One call first: calls already inside the client when the server goes
	// away can be stranded in it by the client itself (see the package
	// documentation); calls made after it has failed cannot.
	if _, err := s.Append(deadline(t), "call-down", eventstore.Any(), ev("down")); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("append to a stopped server: %v, want ErrUnavailable", err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 {
				ctx := deadline(t)
				_, err := s.Append(ctx, fmt.Sprintf("call-down-%d", w), eventstore.Any(), ev("down"))
				if !errors.Is(err, eventstore.ErrUnavailable) || ctx.Err() != nil {
					t.Errorf("append to a stopped server: %v (context: %v); want ErrUnavailable before the deadline", err, ctx.Err())
				}
			}
		}()
	}
	wg.Wait()
	if _, err := s.ReadStream(deadline(t), "call-a", 0, 10); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("read from a stopped server: %v, want ErrUnavailable", err)
	}
	if _, err := s.Head(deadline(t)); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("head of a stopped server: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(deadline(t)); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("ping of a stopped server: %v, want ErrUnavailable", err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ping after the restart", func() error { return s.Ping(deadline(t)) })
	after := ev("after")
	eventually(t, "append after the restart", func() error {
		_, err := s.Append(deadline(t), "call-a", eventstore.Revision(0), after)
		return err
	})
	r.until(func() bool { return r.seen[after.ID] })
	if len(r.events) != 2 || r.events[1].ID != after.ID {
		t.Errorf("subscriber saw %d events, want the one before and the one after the outage", len(r.events))
	}
	// Every call made during the outage has returned: none is stranded in
	// a client that gave up its discovery.
	waitFor(t, "calls made during the outage to return", func() bool { return s.InFlight() == 0 })
}

// TestRecoversFromPermanentlyClosedClient drives the v4 client into the
// state it cannot leave (closed for good after a failed discovery); the
// store replaces it and carries on without a restart.
func TestRecoversFromPermanentlyClosedClient(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	s := openClosed(t, srv.ConnString()+fastDiscovery, kurrentdb.Options{})
	mustAppend(t, s, "call-a", eventstore.NoStream(), ev("a"))

	srv.Stop()
	c := s.Client()
	waitFor(t, "the client to close itself", func() bool {
		_, err := c.AppendToStream(deadline(t), "x", esdb.AppendToStreamOptions{}, esdb.EventData{EventID: uuid.New(), EventType: "x"})
		var e *esdb.Error
		return errors.As(err, &e) && e.Code() == esdb.ErrorCodeConnectionClosed
	})
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// No retry loop: the store notices the dead client on this very call.
	res := mustAppend(t, s, "call-a", eventstore.Revision(0), ev("b"))
	if res.NextRevision != 1 {
		t.Errorf("append after recovery: %+v", res)
	}
	if st := s.Stats(); st.ClientRebuilds < 1 {
		t.Errorf("stats %+v: no client rebuild counted", st)
	}
}

// TestNotLeader answers like a follower: the call is retried on the leader
// it names, and succeeds there.
func TestNotLeader(t *testing.T) {
	t.Run("leader elsewhere", func(t *testing.T) {
		follower := startServer(t, kurrentdbtest.Options{})
		leader := startServer(t, kurrentdbtest.Options{})
		s := openClosed(t, follower.ConnString(), kurrentdb.Options{})
		follower.NotLeaderNext(1, leader.Addr(), kurrentdbtest.MethodAppend)
		e := ev("x")
		mustAppend(t, s, "call-nl", eventstore.NoStream(), e)
		if f, l := follower.Calls(kurrentdbtest.MethodAppend), leader.Calls(kurrentdbtest.MethodAppend); f != 1 || l != 1 {
			t.Errorf("appends served: follower %d, leader %d; want 1 and 1", f, l)
		}
		got, err := s.ReadStream(deadline(t), "call-nl", 0, 10)
		if err != nil || len(got) != 1 || got[0].ID != e.ID {
			t.Errorf("read from the leader: %v, %v", got, err)
		}
	})
	t.Run("reads and appends", func(t *testing.T) {
		srv := startServer(t, kurrentdbtest.Options{})
		s := openClosed(t, srv.ConnString(), kurrentdb.Options{})
		srv.NotLeaderNext(2, srv.Addr(), kurrentdbtest.MethodRead)
		srv.NotLeaderNext(1, srv.Addr(), kurrentdbtest.MethodAppend)
		mustAppend(t, s, "call-nl", eventstore.NoStream(), ev("x"))
		if got, err := s.ReadStream(deadline(t), "call-nl", 0, 10); err != nil || len(got) != 1 {
			t.Errorf("read: %d events, %v", len(got), err)
		}
	})
}

// TestWrongExpectedVersionRace makes two stores (two processes) race for
// one revision: the server lets exactly one write, and the other re-reads.
func TestWrongExpectedVersionRace(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	a := openClosed(t, srv.ConnString(), kurrentdb.Options{})
	b := openClosed(t, srv.ConnString(), kurrentdb.Options{})
	first := ev("first")
	mustAppend(t, a, "call-race", eventstore.NoStream(), first)

	race := func(expected eventstore.StreamState, ea, eb eventstore.EventData) (resA, resB eventstore.AppendResult, errA, errB error) {
		release := srv.Stall(kurrentdbtest.MethodAppend)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); resA, errA = a.Append(deadline(t), "call-race", expected, ea) }()
		go func() { defer wg.Done(); resB, errB = b.Append(deadline(t), "call-race", expected, eb) }()
		waitFor(t, "both appends at the server", func() bool { return srv.Stalled() == 2 })
		release()
		wg.Wait()
		return resA, resB, errA, errB
	}
	conflicts := func() uint64 { return a.Stats().Conflicts + b.Stats().Conflicts }

	t.Run("exact revision", func(t *testing.T) {
		ea, eb := ev("a"), ev("b")
		_, _, errA, errB := race(eventstore.Revision(0), ea, eb)
		winner, loserErr := ea, errB
		if errA != nil {
			winner, loserErr = eb, errA
		}
		var wev *eventstore.WrongExpectedVersionError
		if (errA == nil) == (errB == nil) || !errors.As(loserErr, &wev) || !wev.Exists || wev.Actual != 1 {
			t.Fatalf("errors %v and %v: want one nil and one WrongExpectedVersionError at revision 1", errA, errB)
		}
		got, err := a.ReadStream(deadline(t), "call-race", 0, 10)
		if err != nil || len(got) != 2 || got[1].ID != winner.ID {
			t.Fatalf("stream after the race: %v, %v", got, err)
		}
		if conflicts() != 1 {
			t.Errorf("%d conflicts counted, want 1 (the loser's re-read)", conflicts())
		}
	})
	t.Run("any", func(t *testing.T) {
		ea, eb := ev("a2"), ev("b2")
		before := conflicts()
		resA, resB, errA, errB := race(eventstore.Any(), ea, eb)
		if errA != nil || errB != nil {
			t.Fatalf("appends expecting any: %v, %v", errA, errB)
		}
		if revs := []uint64{resA.NextRevision, resB.NextRevision}; !slices.Contains(revs, 2) || !slices.Contains(revs, 3) {
			t.Errorf("revisions %v, want 2 and 3", revs)
		}
		got, err := a.ReadStream(deadline(t), "call-race", 2, 10)
		if err != nil || len(got) != 2 {
			t.Fatalf("stream after the race: %v, %v", got, err)
		}
		if conflicts() != before+1 {
			t.Errorf("%d conflicts counted, want %d", conflicts(), before+1)
		}
	})
	t.Run("same event", func(t *testing.T) {
		// Both carry the same event (a Twilio retry reaching two
		// instances): stored once. With a current server the loser cannot
		// tell the server's idempotent answer from a write (documented);
		// see TestSameEventRaceLegacyServer for an old server.
		e := ev("same")
		_, _, errA, errB := race(eventstore.Any(), e, e)
		if errA != nil || errB != nil {
			t.Fatalf("appends: %v, %v", errA, errB)
		}
		got, err := a.ReadStream(deadline(t), "call-race", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range got {
			if g.ID == e.ID {
				n++
			}
		}
		if n != 1 {
			t.Errorf("event stored %d times, want once", n)
		}
	})
}

// TestSameEventRaceLegacyServer: an old server answers an idempotent
// append without a position, so the loser re-reads and reports the event
// as a duplicate.
func TestSameEventRaceLegacyServer(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{LegacyIdempotentReply: true})
	a := openClosed(t, srv.ConnString(), kurrentdb.Options{})
	b := openClosed(t, srv.ConnString(), kurrentdb.Options{})
	e := ev("same")
	release := srv.Stall(kurrentdbtest.MethodAppend)
	results := make([]eventstore.AppendResult, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, s := range []*kurrentdb.Store{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); results[i], errs[i] = s.Append(deadline(t), "call-same", eventstore.Any(), e) }()
	}
	waitFor(t, "both appends at the server", func() bool { return srv.Stalled() == 2 })
	release()
	wg.Wait()
	writers := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
		switch d := results[i].Duplicates; {
		case len(d) == 0:
			writers++
		case !slices.Equal(d, []uuid.UUID{e.ID}):
			t.Errorf("append %d: duplicates %v", i, d)
		}
		if results[i].NextRevision != 0 || results[i].Position == 0 {
			t.Errorf("append %d: %+v", i, results[i])
		}
	}
	if writers != 1 || results[0].Position != results[1].Position {
		t.Errorf("results %+v: want one writer, one duplicate, same position", results)
	}
}

// TestStalledServer: a server that accepts calls and never answers turns
// into ErrUnavailable after OperationTimeout, not a hung caller.
func TestStalledServer(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	s := openClosed(t, srv.ConnString(), kurrentdb.Options{OperationTimeout: 200 * time.Millisecond})
	release := srv.Stall()
	ctx := deadline(t)
	if _, err := s.Append(ctx, "call-stall", eventstore.Any(), ev("x")); !errors.Is(err, eventstore.ErrUnavailable) || ctx.Err() != nil {
		t.Errorf("append to a stalled server: %v, want ErrUnavailable", err)
	}
	if _, err := s.ReadStream(ctx, "call-stall", 0, 1); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("read from a stalled server: %v, want ErrUnavailable", err)
	}
	release()
	eventually(t, "append after the stall", func() error {
		_, err := s.Append(deadline(t), "call-stall", eventstore.Any(), ev("y"))
		return err
	})
}

func TestOpenErrors(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	cases := []struct {
		name, conn string
		want       error
	}{
		{"bad scheme", "kurrentdb://" + srv.Addr() + "?tls=false", eventstore.ErrInvalidArgument},
		{"zero default deadline", srv.ConnString() + "&defaultDeadline=0", eventstore.ErrInvalidArgument},
		{"bad default deadline", srv.ConnString() + "&defaultDeadline=soon", eventstore.ErrInvalidArgument},
		{"bad port", "esdb://admin:secret@" + srv.Addr() + "x?tls=false", eventstore.ErrInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := kurrentdb.Open(deadline(t), tc.conn, kurrentdb.Options{Logger: testLogger(t)})
			if !errors.Is(err, tc.want) {
				if s != nil {
					_ = s.Close()
				}
				t.Fatalf("open %s: %v, want %v", tc.conn, err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
	t.Run("server down", func(t *testing.T) {
		down := startServer(t, kurrentdbtest.Options{})
		down.Stop()
		ctx := deadline(t)
		_, err := kurrentdb.Open(ctx, down.ConnString(), kurrentdb.Options{Logger: testLogger(t)})
		if !errors.Is(err, eventstore.ErrUnavailable) || ctx.Err() != nil {
			t.Errorf("open with the server down: %v, want ErrUnavailable before the deadline", err)
		}
	})
	t.Run("discovery", func(t *testing.T) {
		s := openClosed(t, "esdb+discover://"+srv.Addr()+"?tls=false", kurrentdb.Options{})
		e := ev("x")
		mustAppend(t, s, "call-discover", eventstore.NoStream(), e)
		if got, err := s.ReadStream(deadline(t), "call-discover", 0, 1); err != nil || len(got) != 1 || got[0].ID != e.ID {
			t.Errorf("read through discovery: %v, %v", got, err)
		}
	})
}

// TestSystemEventsHidden: the server's own events ($-prefixed streams and
// types, the $streamDeleted of a tombstone) are not the ledger's, but the
// checkpoint still moves past them.
func TestSystemEventsHidden(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	s := openClosed(t, srv.ConnString(), kurrentdb.Options{IdleCheckpointInterval: 50 * time.Millisecond})
	if h, err := s.Head(deadline(t)); err != nil || h != eventstore.Start {
		t.Errorf("head of a fresh server: %d, %v; want Start", h, err)
	}
	e := ev("a")
	res := mustAppend(t, s, "call-1", eventstore.NoStream(), e)
	sys := srv.AppendSystemEvent("$stats-standin", "$statsCollected", []byte("{}"))
	if h, err := s.Head(deadline(t)); err != nil || h != res.Position {
		t.Errorf("head after a system event: %d, %v; want %d", h, err, res.Position)
	}
	if all := readAll(t, s); len(all) != 1 || all[0].ID != e.ID {
		t.Errorf("read all: %v", all)
	}
	r := subscribe(t, s, eventstore.Start, eventstore.Filter{})
	r.until(func() bool { return r.checkpoint >= eventstore.Position(sys) })
	sys2 := srv.AppendSystemEvent("$stats-standin", "$statsCollected", []byte("{}"))
	r.until(func() bool { return r.checkpoint >= eventstore.Position(sys2) })

	// A tombstone: a $streamDeleted event in the ledger's stream.
	tomb, err := s.Client().TombstoneStream(deadline(t), "call-1", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}})
	if err != nil {
		t.Fatal(err)
	}
	r.until(func() bool { return r.checkpoint >= eventstore.Position(tomb.Position.Commit) })
	if len(r.events) != 1 {
		t.Errorf("subscriber saw %d events, want only the ledger's one", len(r.events))
	}
	if _, err := s.ReadStream(deadline(t), "call-1", 0, 10); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("read a tombstoned stream: %v, want ErrStreamNotFound", err)
	}
	if _, err := s.Append(deadline(t), "call-1", eventstore.Any(), ev("b")); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Errorf("append to a tombstoned stream: %v, want ErrInvalidArgument", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	s := openClosed(t, srv.ConnString(), kurrentdb.Options{})
	big := ev("big")
	big.Data = make([]byte, 2<<20) // over the server's 1 MiB maximum append size
	dollar := ev("x")
	dollar.Type = "$metadata"
	for name, tc := range map[string]struct {
		stream string
		ev     eventstore.EventData
	}{
		"system stream": {"$settings", ev("x")},
		"system type":   {"call-x", dollar},
		"too large":     {"call-big", big},
	} {
		if _, err := s.Append(deadline(t), tc.stream, eventstore.Any(), tc.ev); !errors.Is(err, eventstore.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := s.ReadStream(deadline(t), "$settings", 0, 1); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Errorf("read a system stream: %v, want ErrInvalidArgument", err)
	}
}

// TestCloseEndsSubscriptions: closing the store wakes a waiting Next with
// ErrUnavailable (the subscriber may resume on a reopened store).
func TestCloseEndsSubscriptions(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	s := open(t, srv.ConnString(), kurrentdb.Options{})
	mustAppend(t, s, "call-a", eventstore.NoStream(), ev("a"))
	r := subscribe(t, s, eventstore.Start, eventstore.Filter{})
	r.until(func() bool { return r.caughtUp })
	errc := make(chan error, 1)
	go func() {
		_, err := r.sub.Next(deadline(t))
		errc <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Errorf("next after the store closed: %v, want ErrUnavailable", err)
		}
	case <-deadline(t).Done():
		t.Fatal("next did not return after the store closed")
	}
	if _, err := s.Append(deadline(t), "call-a", eventstore.Any(), ev("b")); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("append after close: %v, want ErrUnavailable", err)
	}
}

// TestCloseEndsANextThatProbes closes a live subscription while its Next,
// idle, is probing the log past filtered events and the server does not
// answer: Next must return ErrSubscriptionClosed at once. The probe's read
// once ended only with Next's own context or the operation's timeout, so
// Close (or the end of the subscription's context) left Next waiting for
// up to twice OperationTimeout.
func TestCloseEndsANextThatProbes(t *testing.T) {
	srv := startServer(t, kurrentdbtest.Options{})
	// An operation timeout beyond the test's deadline: only Close can end
	// the probe in time.
	s := openClosed(t, srv.ConnString(), kurrentdb.Options{OperationTimeout: 2 * storetest.Deadline, IdleCheckpointInterval: 20 * time.Millisecond})
	mustAppend(t, s, "call-a", eventstore.NoStream(), ev("a"))
	r := subscribe(t, s, eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"call-"}})
	r.until(func() bool { return r.caughtUp })
	release := srv.Stall(kurrentdbtest.MethodRead)
	t.Cleanup(release)
	// Next's own context outlives the test's deadline too.
	nextCtx, cancel := context.WithTimeout(context.Background(), 3*storetest.Deadline)
	t.Cleanup(cancel)
	errc := make(chan error, 1)
	go func() { errc <- nextUntilError(nextCtx, r.sub) }()
	waitFor(t, "the idle probe's read held at the server", func() bool { return srv.Stalled() == 1 })
	if err := r.sub.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, eventstore.ErrSubscriptionClosed) {
			t.Errorf("next after Close: %v, want ErrSubscriptionClosed", err)
		}
	case <-deadline(t).Done():
		t.Fatalf("next did not return within %v of Close while probing", storetest.Deadline)
	}
}

func nextUntilError(ctx context.Context, sub eventstore.Subscription) error {
	for {
		if _, err := sub.Next(ctx); err != nil {
			return err
		}
	}
}
