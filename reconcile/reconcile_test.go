package reconcile_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callstore/callstoretest"
	"github.com/callledger/callledger/reconcile"
	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

// failBound bounds every wait: reaching it is a failure.
const failBound = 20 * time.Second

const acct = "AC0123456789abcdef0123456789abcdef"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a hand-driven reconcile.Clock: time moves only on Advance.
type clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// Advance moves time on and wakes whoever waited until then.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// waiting reports whether the reconciler's loop is blocked on the clock:
// its only user of After.
func (c *clock) waiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters) > 0
}

type env struct {
	events  *pebblestore.Store
	calls   *callstore.Store
	fake    *resttest.Fake
	clock   *clock
	rec     *reconcile.Reconciler
	mu      sync.Mutex
	actions map[string]int
}

func newEnv(t testing.TB) *env {
	t.Helper()
	events, calls := callstoretest.Start(t)
	account := rest.Account{AccountSid: acct, AuthToken: "token1"}
	fake := resttest.New(t, account)
	return &env{events: events, calls: calls, fake: fake, clock: &clock{now: t0}, actions: map[string]int{}}
}

// start runs the reconciler, once the read model has every event so far.
func (e *env) start(t testing.TB, cfg reconcile.Config) {
	t.Helper()
	head, err := e.events.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), failBound)
	defer wcancel()
	if err := e.calls.WaitFor(wctx, head); err != nil {
		t.Fatal(err)
	}
	rc, err := rest.New(rest.Config{Accounts: []rest.Account{{AccountSid: acct, AuthToken: "token1"}}, Transport: e.fake.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Calls == nil {
		cfg.Calls = e.calls
	}
	cfg.Store, cfg.Twilio = e.events, rc
	if e.clock != nil {
		cfg.Clock = e.clock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.OnAction = func(a string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.actions[a]++
	}
	if e.rec, err = reconcile.New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.rec.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// testWriter sends the reconciler's log to the test's.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (e *env) action(a string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.actions[a]
}

func sid(n int) string { return fmt.Sprintf("CA%032x", n) }

func (e *env) append(t testing.TB, ev *callledgerv1.Event) {
	t.Helper()
	if ev.EventId == "" {
		ev.EventId = eventcodec.EventID("test", fmt.Appendf(nil, "%d %v", len(ev.GetCallSid()), ev)).String()
	}
	if ev.ReceivedAt == nil {
		ev.ReceivedAt = ev.GetReportedAt()
	}
	rec, err := eventcodec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.events.Append(context.Background(), eventcodec.CallStream(ev.GetCallSid()), eventstore.Any(), rec); err != nil {
		t.Fatal(err)
	}
}

// status appends a status callback reported at at.
func (e *env) status(t testing.TB, callSid, st string, at time.Time, extra ...func(*callledgerv1.CallStatusReported)) {
	t.Helper()
	r := &callledgerv1.CallStatusReported{StatusRaw: st, AccountSid: acct, From: "+15550000001", To: "+15550000002", Direction: "outbound-api"}
	r.Status = callledgerv1.CallStatus(callledgerv1.CallStatus_value["CALL_STATUS_"+strings.ToUpper(strings.ReplaceAll(st, "-", "_"))])
	for _, f := range extra {
		f(r)
	}
	e.append(t, &callledgerv1.Event{
		CallSid: callSid, Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK, ReportedAt: timestamppb.New(at),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: r},
	})
}

// waitPending waits until the reconciler tracks exactly want (sorted).
// It learns that calls ended from the read model's change feed, on its
// own goroutine, so it converges shortly after the read model does.
func (e *env) waitPending(t testing.TB, want ...string) {
	t.Helper()
	deadline := time.Now().Add(failBound)
	for {
		got := e.rec.Pending()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still pending: %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCall waits until the read model shows sid as ok says.
func (e *env) waitCall(t testing.TB, callSid string, ok func(*callledgerv1.Call) bool) *callledgerv1.Call {
	t.Helper()
	deadline := time.Now().Add(failBound)
	for {
		c, err := e.calls.Get(context.Background(), callSid)
		if err == nil && ok(c) {
			return c
		}
		if time.Now().After(deadline) {
			var pending []string
			if e.rec != nil {
				pending = e.rec.Pending()
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			t.Fatalf("%s never reached the expected state; last: %v (%v); pending %v, actions %v, waiting %v, requests %d",
				callSid, c, err, pending, e.actions, e.clock != nil && e.clock.waiting(), e.fake.Count(nil))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits until the reconciler's loop is blocked on the clock.
func (e *env) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(failBound)
	for !e.clock.waiting() {
		if time.Now().After(deadline) {
			t.Fatal("the reconciler never waited")
		}
		time.Sleep(time.Millisecond)
	}
}

func fetches(callSid string) func(resttest.Request) bool {
	return func(r resttest.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/Calls/"+callSid+".json")
	}
}

// TestStuckCallsAreReconciled: an idle call whose completed callback was
// lost, a hang-up request without a terminal report, a placeholder child
// and a child never heard of all end up with Twilio's answer.
func TestStuckCallsAreReconciled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	idle, ending, parent, placeholder, unheard, fresh := sid(1), sid(2), sid(3), sid(4), sid(5), sid(6)
	hour := t0.Add(-time.Hour)

	e.status(t, idle, "in-progress", hour)
	e.fake.Put(resttest.Call{Sid: idle, AccountSid: acct, Status: "completed", Duration: "300", StartTime: hour, EndTime: hour.Add(5 * time.Minute), Updated: hour.Add(5 * time.Minute)})

	e.status(t, ending, "in-progress", t0.Add(-time.Minute))
	e.append(t, &callledgerv1.Event{
		CallSid: ending, Source: callledgerv1.Source_SOURCE_HANGUP_REQUEST, ReceivedAt: timestamppb.New(t0.Add(-10 * time.Second)),
		Body: &callledgerv1.Event_HangupRequested{HangupRequested: &callledgerv1.HangupRequested{RequestId: "r", RequestedBy: "agent", EndCall: true}},
	})
	e.fake.Put(resttest.Call{Sid: ending, AccountSid: acct, Status: "completed", Duration: "50", EndTime: t0.Add(-9 * time.Second)})

	// parent: only a Dial action, which names placeholder.
	e.append(t, &callledgerv1.Event{
		CallSid: parent, Source: callledgerv1.Source_SOURCE_DIAL_ACTION, ReceivedAt: timestamppb.New(hour),
		Body: &callledgerv1.Event_DialCompleted{DialCompleted: &callledgerv1.DialCompleted{
			DialCallSid: placeholder, DialCallStatus: callledgerv1.CallStatus_CALL_STATUS_COMPLETED, DialCallStatusRaw: "completed",
			ParentStatus: callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, ParentStatusRaw: "in-progress", AccountSid: acct,
		}},
	})
	e.fake.Put(resttest.Call{Sid: parent, AccountSid: acct, Status: "completed", Duration: "700", Direction: "inbound"})
	e.fake.Put(resttest.Call{Sid: placeholder, AccountSid: acct, ParentCallSid: parent, Status: "completed", Duration: "640", From: "+15551111111", Direction: "outbound-dial"})
	e.fake.Put(resttest.Call{Sid: unheard, AccountSid: acct, ParentCallSid: parent, Status: "no-answer", Duration: "0", Direction: "outbound-dial"})

	// A call that is simply under way is left alone.
	e.status(t, fresh, "in-progress", t0.Add(-time.Minute))
	e.fake.Put(resttest.Call{Sid: fresh, AccountSid: acct, Status: "in-progress"})

	// A bucket for every request, so that the clock need not move.
	e.start(t, reconcile.Config{IdleAfter: 30 * time.Minute, Burst: 20})

	c := e.waitCall(t, idle, func(c *callledgerv1.Call) bool { return c.GetTerminal() })
	if c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED || c.GetStatusSource() != callledgerv1.Source_SOURCE_RECONCILIATION || c.GetDurationSeconds() != 300 {
		t.Errorf("idle call: %v", c)
	}
	c = e.waitCall(t, ending, func(c *callledgerv1.Call) bool { return c.GetTerminal() })
	if c.GetEnding() || c.GetDurationSeconds() != 50 {
		t.Errorf("ending call: %v", c)
	}
	c = e.waitCall(t, parent, func(c *callledgerv1.Call) bool { return c.GetTerminal() && len(c.GetChildCallSids()) == 2 })
	if c.GetDurationSeconds() != 700 {
		t.Errorf("parent: %v", c)
	}
	c = e.waitCall(t, unheard, func(c *callledgerv1.Call) bool { return c.GetTerminal() })
	if c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_NO_ANSWER || c.GetParentCallSid() != parent || c.GetRootCallSid() != parent {
		t.Errorf("child never heard of: %v", c)
	}
	// The placeholder is filled: Twilio's identity, the Dial action's
	// status (it outranks REST).
	c = e.waitCall(t, placeholder, func(c *callledgerv1.Call) bool { return !c.GetPlaceholder() })
	if c.GetFrom() != "+15551111111" || c.GetStatusSource() != callledgerv1.Source_SOURCE_DIAL_ACTION {
		t.Errorf("placeholder: %v", c)
	}
	e.settle(t)
	if n := e.fake.Count(fetches(fresh)); n != 0 {
		t.Errorf("a call under way for a minute was fetched %d times", n)
	}
	e.waitPending(t, fresh)
}

// TestInferredEndIsStillReconciled: a child whose final callback was lost
// shows as ended as soon as its parent ends (inferred, without REST); with
// REST credentials it is still read once idle, and Twilio's answer
// replaces the inferred end.
func TestInferredEndIsStillReconciled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	parent, child := sid(21), sid(22)
	hour := t0.Add(-time.Hour)
	e.status(t, parent, "in-progress", hour)
	e.status(t, child, "in-progress", hour.Add(time.Second), func(r *callledgerv1.CallStatusReported) { r.ParentCallSid = parent })
	e.status(t, parent, "completed", hour.Add(time.Minute), func(r *callledgerv1.CallStatusReported) { r.CallDurationSeconds = proto.Int64(60) })
	c := e.waitCall(t, child, func(c *callledgerv1.Call) bool { return c.GetTerminal() })
	if c.GetStatusSource() != callledgerv1.Source_SOURCE_INFERRED || c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED ||
		!c.GetEndedAt().AsTime().Equal(hour.Add(time.Minute)) {
		t.Fatalf("child of an ended parent: %v", c)
	}
	e.fake.Put(resttest.Call{Sid: child, AccountSid: acct, ParentCallSid: parent, Status: "completed", Duration: "58", Direction: "outbound-dial",
		EndTime: hour.Add(59 * time.Second)})
	e.fake.Put(resttest.Call{Sid: parent, AccountSid: acct, Status: "completed", Duration: "60", Direction: "inbound"})
	e.start(t, reconcile.Config{IdleAfter: 30 * time.Minute, Burst: 20})
	c = e.waitCall(t, child, func(c *callledgerv1.Call) bool {
		return c.GetStatusSource() == callledgerv1.Source_SOURCE_RECONCILIATION
	})
	if c.GetDurationSeconds() != 58 {
		t.Errorf("reconciled child: %v", c)
	}
}

// TestLaggingRESTNeverMovesStateBack: Twilio's resource still says
// ringing while the webhooks said in-progress; the call stays in progress
// and a late completed callback still decides.
func TestLaggingRESTNeverMovesStateBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	call := sid(10)
	at := t0.Add(-time.Hour)
	e.status(t, call, "ringing", at)
	e.status(t, call, "in-progress", at.Add(5*time.Second))
	e.fake.Put(resttest.Call{Sid: call, AccountSid: acct, Status: "ringing", From: "+15559999999", Updated: at})
	e.start(t, reconcile.Config{IdleAfter: time.Minute})

	c := e.waitCall(t, call, func(c *callledgerv1.Call) bool { return c.GetReconciliation() != nil })
	if c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS || c.GetStatusSource() != callledgerv1.Source_SOURCE_STATUS_CALLBACK ||
		c.GetFrom() != "+15550000001" || c.GetReconciliation().GetStatus() != callledgerv1.CallStatus_CALL_STATUS_RINGING {
		t.Errorf("after a lagging read: %v", c)
	}
	e.status(t, call, "completed", t0, func(r *callledgerv1.CallStatusReported) { d := int64(3595); r.CallDurationSeconds = &d })
	c = e.waitCall(t, call, func(c *callledgerv1.Call) bool { return c.GetTerminal() })
	if c.GetStatusSource() != callledgerv1.Source_SOURCE_STATUS_CALLBACK || c.GetDurationSeconds() != 3595 {
		t.Errorf("after the completed callback: %v", c)
	}
}

// TestNotFoundIsRecordedAndNotAskedAgain: a 404 is stored and the call
// never fetched again, however long it stays idle.
func TestNotFoundIsRecordedAndNotAskedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	call := sid(20)
	e.status(t, call, "in-progress", t0.Add(-time.Hour))
	e.start(t, reconcile.Config{IdleAfter: time.Minute})
	c := e.waitCall(t, call, func(c *callledgerv1.Call) bool { return c.GetReconciliation().GetNotFound() })
	if c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS {
		t.Errorf("a 404 changed the status: %v", c)
	}
	for range 5 {
		e.settle(t)
		e.clock.Advance(time.Hour)
	}
	e.settle(t)
	if n := e.fake.Count(fetches(call)); n != 1 {
		t.Errorf("fetched %d times, want 1", n)
	}
	if e.action(reconcile.ActionNotFound) != 1 {
		t.Errorf("actions %v", e.actions)
	}
	e.waitPending(t)
}

// TestBackoffOnTemporaryErrors: a 429 or 5xx is retried after MinBackoff,
// then after twice as long, and the third read succeeds. Requests are
// counted at each step of the clock.
func TestBackoffOnTemporaryErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fault  resttest.Fault
		action string
	}{
		{"429", resttest.Fault{Status: 429, Code: 20429}, reconcile.ActionRateLimited},
		{"503", resttest.Fault{Status: 503, Code: 20503}, reconcile.ActionError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			call := sid(30)
			e.status(t, call, "in-progress", t0.Add(-time.Hour))
			e.fake.Put(resttest.Call{Sid: call, AccountSid: acct, Status: "completed", Duration: "7"})
			e.fake.Fail(call, tc.fault, tc.fault)
			e.start(t, reconcile.Config{IdleAfter: time.Minute, MinBackoff: 10 * time.Second, Interval: time.Second})
			step := func(d time.Duration, want int) {
				t.Helper()
				e.clock.Advance(d)
				e.settle(t)
				if n := e.fake.Count(fetches(call)); n != want {
					t.Fatalf("after %s more: %d fetches, want %d", d, n, want)
				}
			}
			step(0, 1)
			step(9*time.Second, 1)  // 9 s after the first failure: still backing off
			step(time.Second, 2)    // 10 s: the second attempt fails too
			step(19*time.Second, 2) // backing off 20 s now
			step(time.Second, 3)
			e.waitCall(t, call, func(c *callledgerv1.Call) bool { return c.GetTerminal() })
			if e.action(tc.action) != 2 {
				t.Errorf("actions %v", e.actions)
			}
		})
	}
}

// TestRateLimitHolds: with a bucket of 3 and 2 requests per second, 12
// stuck calls are read 3 at once, then 2 per second of the clock, never
// more.
func TestRateLimitHolds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const calls, burst, perSecond = 12, 3, 2
	for i := range calls {
		call := sid(100 + i)
		e.status(t, call, "in-progress", t0.Add(-time.Hour))
		e.fake.Put(resttest.Call{Sid: call, AccountSid: acct, Status: "in-progress"})
	}
	e.start(t, reconcile.Config{IdleAfter: time.Minute, Rate: perSecond, Burst: burst, Interval: 10 * time.Second})
	for second := 0; ; second++ {
		e.settle(t)
		want := min(calls, burst+perSecond*second)
		if n := e.fake.Count(nil); n != want {
			t.Fatalf("after %d s: %d requests, want %d", second, n, want)
		}
		if want == calls {
			break
		}
		e.clock.Advance(time.Second)
	}
}

// BenchmarkReconcileThroughput: stuck calls reconciled per second through
// the whole path (read model, fake Twilio on loopback, append, projection)
// under a rate limit of 1000 requests per second on the real clock.
func BenchmarkReconcileThroughput(b *testing.B) {
	e := newEnv(b)
	e.clock = nil
	n := b.N
	for i := range n {
		call := sid(1_000_000 + i)
		e.status(b, call, "in-progress", time.Now().Add(-time.Hour))
		e.fake.Put(resttest.Call{Sid: call, AccountSid: acct, Status: "completed", Duration: "1"})
	}
	b.ResetTimer()
	e.start(b, reconcile.Config{IdleAfter: time.Minute, Rate: 1000, Burst: 1})
	for i := range n {
		e.waitCall(b, sid(1_000_000+i), func(c *callledgerv1.Call) bool { return c.GetTerminal() })
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "calls/s")
}

// swappable is a read model that another replaces, as a projection
// version switch does: Watch and Tree go to the current one.
type swappable struct {
	mu  sync.Mutex
	cur *callstore.Store
}

func (s *swappable) get() *callstore.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *swappable) Watch(ctx context.Context, f callstore.Filter) (*callstore.Watcher, error) {
	return s.get().Watch(ctx, f)
}

func (s *swappable) Tree(ctx context.Context, sid string) (callstate.Tree, error) {
	return s.get().Tree(ctx, sid)
}

// TestReplacedReadModelIsFollowed: the read model the reconciler follows
// is closed and replaced (a version switch); it follows the new one and
// still reconciles a stuck call that only the new one shows.
func TestReplacedReadModelIsFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The replacement is opened first so that it closes after the
	// reconciler stops, as serve orders them.
	next, err := callstore.Open(t.TempDir(), callstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })
	callstoretest.Project(t, e.events, next)
	calls := &swappable{cur: e.calls}
	e.start(t, reconcile.Config{Calls: calls, IdleAfter: time.Minute})
	e.settle(t)

	calls.mu.Lock()
	calls.cur = next
	calls.mu.Unlock()
	if err := e.calls.Close(); err != nil {
		t.Fatal(err)
	}

	stuck := sid(30)
	e.status(t, stuck, "in-progress", t0.Add(-time.Hour))
	e.fake.Put(resttest.Call{Sid: stuck, AccountSid: acct, Status: "completed", Duration: "60"})
	e.waitPending(t, stuck) // seen through the new read model's feed
	e.settle(t)
	e.clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(failBound)
	for {
		c, err := next.Get(context.Background(), stuck)
		if err == nil && c.GetTerminal() {
			if c.GetStatusSource() != callledgerv1.Source_SOURCE_RECONCILIATION {
				t.Errorf("ended by %v, want reconciliation", c.GetStatusSource())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stuck call was never reconciled: %v (%v)", c, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pausingClock holds the reconciler's loop inside After until the test
// lets it go, and then never fires: the loop's next select sees only
// the cancellation and the end of following.
type pausingClock struct {
	paused chan struct{}
	resume chan struct{}
}

func (c *pausingClock) Now() time.Time { return time.Now() }

func (c *pausingClock) After(time.Duration) <-chan time.Time {
	c.paused <- struct{}{}
	<-c.resume
	return nil
}

// TestRunReturnsWhenCancelled cancels Run while its loop is between two
// selects, so that following the read model has ended (without error) by
// the time the loop looks: Run must return, every time. It once waited
// forever for an error the loop had already taken.
func TestRunReturnsWhenCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc, err := rest.New(rest.Config{Accounts: []rest.Account{{AccountSid: acct, AuthToken: "token1"}}, Transport: e.fake.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		clk := &pausingClock{paused: make(chan struct{}), resume: make(chan struct{})}
		rec, err := reconcile.New(reconcile.Config{Calls: e.calls, Store: e.events, Twilio: rc, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rec.Run(ctx) }()
		select {
		case <-clk.paused:
		case <-time.After(failBound):
			t.Fatalf("round %d: the loop never waited on the clock", i)
		}
		cancel()
		// Following ends within microseconds of the cancellation; the
		// loop resumes after it.
		time.Sleep(10 * time.Millisecond)
		close(clk.resume)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Run: %v", i, err)
			}
		case <-time.After(failBound):
			t.Fatalf("round %d: Run did not return within %v of its cancellation", i, failBound)
		}
	}
}
