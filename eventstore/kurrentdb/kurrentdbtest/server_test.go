package kurrentdbtest_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
)

// These tests drive the stand-in with the real v4.2.0 client and check the
// behaviour a real server shows (read in the client's and the server's
// source), so that the adapter's tests rest on a faithful stand-in.

const deadline = 30 * time.Second

func start(t *testing.T, opts kurrentdbtest.Options) *kurrentdbtest.Server {
	t.Helper()
	srv, err := kurrentdbtest.Start(opts)
	if err != nil {
		t.Fatalf("start stand-in: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T, conn string) *esdb.Client {
	t.Helper()
	cfg, err := esdb.ParseConnectionString(conn)
	if err != nil {
		t.Fatalf("parse %s: %v", conn, err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	// Registered after the server's cleanup, so it runs first: the
	// teardown order the client needs (an error reaching a closed client panics).
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), deadline)
	t.Cleanup(cancel)
	return c
}

func ev(typ string) esdb.EventData {
	return esdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdb.ContentTypeBinary, Data: []byte("d:" + typ), Metadata: []byte("m:" + typ)}
}

func code(err error) esdb.ErrorCode {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return -1
}

func readStream(t *testing.T, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, n uint64) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadStream(ctx(t), stream, opts, n)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func readAll(t *testing.T, c *esdb.Client, opts esdb.ReadAllOptions, n uint64) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadAll(ctx(t), opts, n)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func TestAppendAndRead(t *testing.T) {
	srv := start(t, kurrentdbtest.Options{})
	c := client(t, srv.ConnString())
	a, b := ev("A"), ev("B")
	wr, err := c.AppendToStream(ctx(t), "s-1", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, a, b)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if wr.NextExpectedVersion != 1 || wr.CommitPosition == 0 {
		t.Fatalf("write result %+v", wr)
	}
	got, err := readStream(t, c, "s-1", esdb.ReadStreamOptions{}, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("read: %d events, %v", len(got), err)
	}
	for i, want := range []esdb.EventData{a, b} {
		e := got[i].Event
		if e.EventID != want.EventID || e.EventType != want.EventType || string(e.Data) != string(want.Data) ||
			string(e.UserMetadata) != string(want.Metadata) || e.EventNumber != uint64(i) || e.ContentType != "application/octet-stream" {
			t.Errorf("event %d = %+v", i, e)
		}
		if time.Since(e.CreatedDate) > time.Minute || e.CreatedDate.After(time.Now().Add(time.Second)) {
			t.Errorf("created %v", e.CreatedDate)
		}
	}
	if got[1].Event.Position.Commit != wr.CommitPosition || got[1].Event.Position.Commit <= got[0].Event.Position.Commit+1 {
		t.Errorf("positions %v, %v; write result commit %d: want increasing, non-contiguous, the last one reported",
			got[0].Event.Position, got[1].Event.Position, wr.CommitPosition)
	}
	// Backwards, from a revision, with a count.
	back, err := readStream(t, c, "s-1", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil || len(back) != 1 || back[0].Event.EventID != b.EventID {
		t.Errorf("backwards read: %v, %v", back, err)
	}
	past, err := readStream(t, c, "s-1", esdb.ReadStreamOptions{From: esdb.Revision(5)}, 10)
	if err != nil || len(past) != 0 {
		t.Errorf("read past the end: %d events, %v", len(past), err)
	}
	// A fresh server's $all starts with system events.
	all, err := readAll(t, c, esdb.ReadAllOptions{}, 100)
	if err != nil {
		t.Fatalf("read all: %v", err)
	}
	if len(all) != 6 || !strings.HasPrefix(all[0].Event.StreamID, "$") || all[5].Event.EventID != b.EventID {
		t.Errorf("$all holds %d events, first in %q", len(all), all[0].Event.StreamID)
	}
	// $all backwards from a position excludes it; forwards includes it.
	pos := got[1].Event.Position
	before, err := readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: pos}, 1)
	if err != nil || len(before) != 1 || before[0].Event.EventID != a.EventID {
		t.Errorf("backwards from b's position: %v, %v", before, err)
	}
	from, err := readAll(t, c, esdb.ReadAllOptions{From: pos}, 5)
	if err != nil || len(from) != 1 || from[0].Event.EventID != b.EventID {
		t.Errorf("forwards from b's position: %v, %v", from, err)
	}
	// A position inside a record is refused, as the server's invalid
	// position is (the client reports it as ErrorCodeUnknown).
	_, err = readAll(t, c, esdb.ReadAllOptions{From: esdb.Position{Commit: pos.Commit - 1, Prepare: pos.Commit - 1}}, 5)
	if status.Code(err) != codes.InvalidArgument || code(err) != esdb.ErrorCodeUnknown {
		t.Errorf("read from an invalid position: %v", err)
	}
	if _, err := readStream(t, c, "missing", esdb.ReadStreamOptions{}, 10); code(err) != esdb.ErrorCodeResourceNotFound {
		t.Errorf("read missing stream: %v", err)
	}
}

func TestExpectedRevisionsAndIdempotency(t *testing.T) {
	srv := start(t, kurrentdbtest.Options{RecentIDs: 4})
	c := client(t, srv.ConnString())
	a, b := ev("a"), ev("b")
	opt := func(r esdb.ExpectedRevision) esdb.AppendToStreamOptions {
		return esdb.AppendToStreamOptions{ExpectedRevision: r}
	}
	first, err := c.AppendToStream(ctx(t), "s", opt(esdb.NoStream{}), a, b)
	if err != nil {
		t.Fatal(err)
	}
	// Exact revision behind the stream: the stored events are compared.
	again, err := c.AppendToStream(ctx(t), "s", opt(esdb.NoStream{}), a, b)
	if err != nil || again.NextExpectedVersion != 1 || again.CommitPosition != first.CommitPosition {
		t.Errorf("idempotent NoStream append: %+v, %v", again, err)
	}
	if _, err := c.AppendToStream(ctx(t), "s", opt(esdb.NoStream{}), a, ev("c")); code(err) != esdb.ErrorCodeWrongExpectedVersion {
		t.Errorf("partly matching append: %v, want wrong expected version", err)
	}
	if _, err := c.AppendToStream(ctx(t), "s", opt(esdb.Revision(5)), ev("x")); code(err) != esdb.ErrorCodeWrongExpectedVersion ||
		!strings.Contains(err.Error(), "expecting '5' but got '1'") {
		t.Errorf("ahead of the stream: %v", err)
	}
	if _, err := c.AppendToStream(ctx(t), "new", opt(esdb.StreamExists{}), ev("x")); code(err) != esdb.ErrorCodeWrongExpectedVersion ||
		!strings.Contains(err.Error(), "expecting 'stream_exists' but got 'no_stream'") {
		t.Errorf("stream exists on a new stream: %v", err)
	}
	// Any: the recent-ID cache decides.
	if wr, err := c.AppendToStream(ctx(t), "s", opt(esdb.Any{}), a); err != nil || wr.NextExpectedVersion != 0 {
		t.Errorf("any append of a cached event: %+v, %v", wr, err)
	}
	for range 4 {
		if _, err := c.AppendToStream(ctx(t), "other", opt(esdb.Any{}), ev("o")); err != nil {
			t.Fatal(err)
		}
	}
	// a is forgotten now: written again, as on a real server.
	if wr, err := c.AppendToStream(ctx(t), "s", opt(esdb.Any{}), a); err != nil || wr.NextExpectedVersion != 2 {
		t.Errorf("any append of a forgotten event: %+v, %v (want it written again at 2)", wr, err)
	}
	// Too large.
	big := ev("big")
	big.Data = make([]byte, 2<<20)
	if _, err := c.AppendToStream(ctx(t), "s", opt(esdb.Any{}), big); status.Code(err) != codes.InvalidArgument {
		t.Errorf("append over the size limit: %v", err)
	}
}

func TestLegacyIdempotentReply(t *testing.T) {
	srv := start(t, kurrentdbtest.Options{LegacyIdempotentReply: true})
	c := client(t, srv.ConnString())
	a := ev("a")
	opts := esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}
	if _, err := c.AppendToStream(ctx(t), "s", opts, a); err != nil {
		t.Fatal(err)
	}
	wr, err := c.AppendToStream(ctx(t), "s", opts, a)
	if err != nil || wr.CommitPosition != 0 {
		t.Errorf("idempotent append with an old server's reply: %+v, %v; want positions 0", wr, err)
	}
}

func TestErrorsAndFaults(t *testing.T) {
	srv := start(t, kurrentdbtest.Options{})
	c := client(t, srv.ConnString())
	opts := esdb.AppendToStreamOptions{}
	if _, err := c.AppendToStream(ctx(t), "s", opts, ev("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TombstoneStream(ctx(t), "s", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}}); err != nil {
		t.Fatalf("tombstone: %v", err)
	}
	if _, err := readStream(t, c, "s", esdb.ReadStreamOptions{}, 1); code(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("read tombstoned: %v", err)
	}
	if _, err := c.AppendToStream(ctx(t), "s", opts, ev("b")); code(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("append to tombstoned: %v", err)
	}

	srv.FailNext(1, codes.Unavailable, "Server Is Not Ready", kurrentdbtest.MethodAppend)
	if _, err := c.AppendToStream(ctx(t), "f", opts, ev("a")); code(err) != esdb.ErrorUnavailable {
		t.Errorf("append while not ready: %v", err)
	}
	if _, err := c.AppendToStream(ctx(t), "f", opts, ev("a")); err != nil {
		t.Errorf("append after the fault: %v", err)
	}

	// Not leader, pointing at a second server: the client reconnects
	// there.
	leader := start(t, kurrentdbtest.Options{})
	srv.NotLeaderNext(1, leader.Addr(), kurrentdbtest.MethodAppend)
	if _, err := c.AppendToStream(ctx(t), "nl", opts, ev("a")); code(err) != esdb.ErrorCodeNotLeader {
		t.Errorf("append to a follower: %v", err)
	}
	if _, err := c.AppendToStream(ctx(t), "nl", opts, ev("a")); err != nil {
		t.Errorf("append after the redirect: %v", err)
	}
	if leader.Calls(kurrentdbtest.MethodAppend) != 1 {
		t.Errorf("the leader served %d appends, want 1", leader.Calls(kurrentdbtest.MethodAppend))
	}

	// Stalls hold calls until released.
	release := leader.Stall(kurrentdbtest.MethodAppend)
	done := make(chan error, 1)
	go func() {
		_, err := c.AppendToStream(ctx(t), "stall", opts, ev("a"))
		done <- err
	}()
	for wait := ctx(t); leader.Stalled() != 1; {
		select {
		case <-wait.Done():
			t.Fatal("append not stalled")
		case <-time.After(time.Millisecond):
		}
	}
	release()
	if err := <-done; err != nil {
		t.Errorf("released append: %v", err)
	}
}

func TestSubscription(t *testing.T) {
	srv := start(t, kurrentdbtest.Options{})
	c := client(t, srv.ConnString())
	for i := range 40 {
		stream := "other-1"
		if i%10 == 0 {
			stream = "call-1"
		}
		if _, err := c.AppendToStream(ctx(t), stream, esdb.AppendToStreamOptions{}, ev("e")); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := c.SubscribeToAll(ctx(t), esdb.SubscribeToAllOptions{
		From:   esdb.Start{},
		Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{"call-"}},
	})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer sub.Close()
	var events, checkpoints int
	var last uint64
	for caughtUp := false; !caughtUp; {
		e := sub.Recv()
		switch {
		case e.EventAppeared != nil:
			events++
			last = e.EventAppeared.Event.Position.Commit
		case e.CheckPointReached != nil:
			checkpoints++
			if e.CheckPointReached.Commit < last {
				t.Errorf("checkpoint %d before the last event %d", e.CheckPointReached.Commit, last)
			}
			last = e.CheckPointReached.Commit
		case e.CaughtUp != nil:
			caughtUp = true
		case e.SubscriptionDropped != nil:
			t.Fatalf("dropped: %v", e.SubscriptionDropped.Error)
		}
	}
	// 44 records considered with a window of 32: one checkpoint for the
	// window, one when going live.
	if events != 4 || checkpoints != 2 || last != srv.Head() {
		t.Errorf("catch-up: %d events, %d checkpoints, last position %d (head %d)", events, checkpoints, last, srv.Head())
	}
	live := ev("live")
	if _, err := c.AppendToStream(ctx(t), "call-2", esdb.AppendToStreamOptions{}, live); err != nil {
		t.Fatal(err)
	}
	if e := sub.Recv(); e.EventAppeared == nil || e.EventAppeared.Event.EventID != live.EventID {
		t.Fatalf("live: %+v", e)
	}
	srv.DropSubscriptions(codes.Aborted, "Operation timed out: Consumer too slow to handle event while live. Client resubscription required.")
	if e := sub.Recv(); e.SubscriptionDropped == nil || status.Code(e.SubscriptionDropped.Error) != codes.Aborted {
		t.Fatalf("after drop: %+v", e)
	}

	// Resuming from a position is exclusive; from inside a record, the
	// subscription is confirmed and then fails.
	sub2, err := c.SubscribeToAll(ctx(t), esdb.SubscribeToAllOptions{From: esdb.Position{Commit: last, Prepare: last}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	if e := sub2.Recv(); e.EventAppeared == nil || e.EventAppeared.Event.EventID != live.EventID {
		t.Fatalf("resume: %+v", e)
	}
	sub3, err := c.SubscribeToAll(ctx(t), esdb.SubscribeToAllOptions{From: esdb.Position{Commit: last - 1, Prepare: last - 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub3.Close()
	if e := sub3.Recv(); e.SubscriptionDropped == nil || status.Code(e.SubscriptionDropped.Error) != codes.InvalidArgument {
		t.Fatalf("subscribe from an invalid position: %+v", e)
	}
}

func TestRestartAndDiscovery(t *testing.T) {
	srv := start(t, kurrentdbtest.Options{})
	c := client(t, "esdb+discover://"+srv.Addr()+"?tls=false")
	a := ev("a")
	if _, err := c.AppendToStream(ctx(t), "s", esdb.AppendToStreamOptions{}, a); err != nil {
		t.Fatalf("append through discovery: %v", err)
	}
	if v, err := c.GetServerVersion(); err != nil || v.Major != 24 {
		t.Errorf("server version %+v, %v", v, err)
	}
	srv.Stop()
	if _, err := c.AppendToStream(ctx(t), "s", esdb.AppendToStreamOptions{}, ev("b")); err == nil {
		t.Error("append to a stopped server succeeded")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	c2 := client(t, srv.ConnString())
	got, err := readStream(t, c2, "s", esdb.ReadStreamOptions{}, 10)
	if err != nil || len(got) != 1 || got[0].Event.EventID != a.EventID {
		t.Errorf("after restart: %v, %v", got, err)
	}
}
