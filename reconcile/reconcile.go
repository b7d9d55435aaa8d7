// Package reconcile fills what Twilio's webhooks never said. Callbacks get
// lost (a default retry policy gives up for good, a call canceled while
// queued sends none, an inbound parent sends only its last), so a call can
// look "in progress" forever. The reconciler follows the call-state read
// model, picks the calls that have waited too long, reads them from
// Twilio's REST API and appends CallReconciled events. The fold ranks
// those lowest: they fill gaps, never override a webhook.
//
// Which calls, and when (Config):
//   - a hang-up requested and no terminal report after HangupAfter (5 s);
//   - a call not terminal and without any change for IdleAfter;
//   - a placeholder (known only from another leg) for PlaceholderAfter.
//
// Requests are rate-limited per account (a token bucket), a 429 or 5xx
// backs off (exponentially, per call, and a 429 pauses the account), a 404
// is recorded (CallReconciled with not_found) and the call is not asked
// about again. A terminal call's children are listed (ListCall by
// ParentCallSid) and reconciled with it.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	api "github.com/twilio/twilio-go/rest/api/v2010"
	"golang.org/x/time/rate"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/twilio/rest"
)

// Calls is the part of the call-state read model the reconciler follows;
// *callstore.Store and *callversions.Manager implement it.
type Calls interface {
	Watch(ctx context.Context, f callstore.Filter) (*callstore.Watcher, error)
	// TreeReader finds the account of a call through its tree.
	callstate.TreeReader
}

// Store is where CallReconciled events go.
type Store interface {
	Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error)
}

// Twilio is the part of the REST API the reconciler reads; *rest.Client
// implements it. Errors are *rest.Error when Twilio answered.
type Twilio interface {
	// Account resolves the account to ask ("" when the call's is
	// unknown), or fails with rest.ErrUnknownAccount.
	Account(accountSid string) (string, error)
	FetchCall(ctx context.Context, accountSid, callSid string) (*api.ApiV2010Call, error)
	ListChildCalls(ctx context.Context, accountSid, parentSid string) ([]api.ApiV2010Call, error)
}

// Clock is the reconciler's time; tests drive it by hand.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Actions reported to Config.OnAction.
const (
	ActionFetched      = "fetched"       // a Call resource was read
	ActionListed       = "listed"        // a call's children were listed
	ActionReconciled   = "reconciled"    // a CallReconciled event was stored
	ActionUnchanged    = "unchanged"     // the resource said what was already stored
	ActionNotFound     = "not_found"     // Twilio has no such call: recorded, not asked again
	ActionRateLimited  = "rate_limited"  // Twilio answered 429: backing off
	ActionError        = "error"         // another failure: backing off
	ActionNoCredential = "no_credential" // the call's account has no credentials: skipped
)

// AllActions lists every action the reconciler reports, so that metrics can
// show each at zero before it first happens.
func AllActions() []string {
	return []string{ActionFetched, ActionListed, ActionReconciled, ActionUnchanged, ActionNotFound,
		ActionRateLimited, ActionError, ActionNoCredential}
}

// Defaults of Config.
const (
	DefaultHangupAfter      = 5 * time.Second
	DefaultIdleAfter        = 15 * time.Minute
	DefaultPlaceholderAfter = 2 * time.Minute
	DefaultRate             = 5 // requests per second per account
	DefaultBurst            = 5
	DefaultInterval         = time.Second
	DefaultMinBackoff       = time.Second
	DefaultMaxBackoff       = 5 * time.Minute
)

// Config wires a Reconciler. Zero durations and rates take the defaults.
type Config struct {
	Calls  Calls  // required
	Store  Store  // required
	Twilio Twilio // required
	// HangupAfter: a hang-up requested this long ago without a terminal
	// report is reconciled.
	HangupAfter time.Duration
	// IdleAfter: a call not terminal and unchanged this long is reconciled.
	IdleAfter time.Duration
	// PlaceholderAfter: a placeholder this old is reconciled.
	PlaceholderAfter time.Duration
	// Rate (requests per second) and Burst of each account's token bucket.
	Rate  float64
	Burst int
	// Interval between looks for due calls when none is due.
	Interval time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed request.
	MinBackoff, MaxBackoff time.Duration
	// OnAction, when set, is called with each Action*: a hook for metrics.
	// It must not block.
	OnAction func(action string)
	Logger   *slog.Logger
	Clock    Clock
	// Sealer seals the personal fields of what is stored (the numbers, the
	// resource: docs/PRIVACY.md); nil stores them in the clear.
	Sealer Sealer
}

// Sealer returns an event as it is to be stored, its personal fields
// sealed; *seal.Events is one.
type Sealer interface {
	Seal(ctx context.Context, ev *callledgerv1.Event) (*callledgerv1.Event, error)
}

// Reconciler reconciles stale calls; Run drives it.
type Reconciler struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	calls    map[string]*entry
	limiters map[string]*rate.Limiter
	paused   map[string]time.Time // account → no requests before
}

// entry is what the reconciler knows of one call it may have to reconcile.
type entry struct {
	sid          string
	account      string
	children     bool
	placeholder  bool
	terminal     bool
	hangupAt     time.Time // zero without a hang-up request
	firstSeen    time.Time
	lastActivity time.Time
	next         time.Time // no attempt before
	attempts     int       // successful reads of the call (a later hang-up request does not reset them)
	failures     int       // consecutive failed reads
}

// New validates cfg and builds a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Calls == nil || cfg.Store == nil || cfg.Twilio == nil {
		return nil, errors.New("reconcile: Calls, Store and Twilio are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.HangupAfter, DefaultHangupAfter)
	def(&cfg.IdleAfter, DefaultIdleAfter)
	def(&cfg.PlaceholderAfter, DefaultPlaceholderAfter)
	def(&cfg.Interval, DefaultInterval)
	def(&cfg.MinBackoff, DefaultMinBackoff)
	def(&cfg.MaxBackoff, DefaultMaxBackoff)
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.OnAction == nil {
		cfg.OnAction = func(string) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	return &Reconciler{
		cfg: cfg, log: cfg.Logger.With("component", "reconciler"),
		calls: map[string]*entry{}, limiters: map[string]*rate.Limiter{}, paused: map[string]time.Time{},
	}, nil
}

// Run reconciles until ctx ends. It follows the read model (a snapshot of
// every call, then each change) in the background and reads due calls one
// at a time, as the rate limit allows.
func (r *Reconciler) Run(ctx context.Context) error {
	// The first snapshot is read before anything is reconciled, so that
	// the first calls read are the most overdue ones.
	w, err := r.watch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var followErr error
	followed := make(chan struct{}) // closed once followErr is set
	go func() {
		defer close(followed)
		followErr = r.follow(ctx, w)
	}()
	r.loop(ctx, followed)
	cancel()
	<-followed
	return followErr
}

// loop reconciles due calls until ctx ends or following the read model
// stops (followed closes), whichever comes first. Run reports follow's
// error: loop never consumes it, so a stop that both see at once cannot
// lose it.
func (r *Reconciler) loop(ctx context.Context, followed <-chan struct{}) {
	for {
		e := r.due()
		if e == nil {
			select {
			case <-ctx.Done():
				return
			case <-followed:
				return
			case <-r.cfg.Clock.After(r.cfg.Interval):
			}
			continue
		}
		if err := r.reconcile(ctx, e); err != nil {
			if ctx.Err() != nil {
				return
			}
			// The store failed: try this call again later, go on with
			// the others.
			r.cfg.OnAction(ActionError)
			r.log.Error("reconcile: storing what Twilio said failed; backing off", "call_sid", e.sid, "err", err)
			r.backoff(e.sid, r.cfg.Clock.Now())
		}
	}
}

// watch starts following the read model and takes in its snapshot.
func (r *Reconciler) watch(ctx context.Context) (*callstore.Watcher, error) {
	w, err := r.cfg.Calls.Watch(ctx, callstore.Filter{})
	if err != nil {
		return nil, fmt.Errorf("reconcile: watch the read model: %w", err)
	}
	err = w.Snapshot(ctx, func(c *callledgerv1.Call) error {
		r.observe(c, activityOf(c))
		return nil
	})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("reconcile: read the read model: %w", err)
	}
	return w, nil
}

// follow keeps the entries up to date from w's changes; a watcher that
// falls behind is replaced (with a fresh snapshot).
func (r *Reconciler) follow(ctx context.Context, w *callstore.Watcher) error {
	stop := closeOnDone(ctx, w)
	for {
		for ch := range w.Changes() {
			r.observe(ch.Call, r.cfg.Clock.Now())
		}
		stop()
		w.Close()
		err := w.Err()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, callstore.ErrClosed):
			// A read model replaced by a newer version (or a rebuild)
			// closes; Watch then follows the one that took over, and a
			// store that is really gone fails there.
			r.log.Info("read model replaced; watching again")
		case errors.Is(err, callstore.ErrSlowConsumer):
			r.log.Warn("read model changes overflowed; watching again", "err", err)
		default:
			return fmt.Errorf("reconcile: follow the read model: %w", err)
		}
		if w, err = r.watch(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		stop = closeOnDone(ctx, w)
	}
}

// closeOnDone closes w when ctx ends, which ends its Changes.
func closeOnDone(ctx context.Context, w *callstore.Watcher) func() bool {
	return context.AfterFunc(ctx, w.Close)
}

// activityOf is the latest time a call is known to have changed, for calls
// seen in a snapshot: the read model keeps no time of its last event.
func activityOf(c *callledgerv1.Call) time.Time {
	var t time.Time
	for _, ts := range []interface{ AsTime() time.Time }{c.GetStartTime(), c.GetInitiatedAt(), c.GetRingingAt(), c.GetAnsweredAt(), c.GetHangupRequest().GetRequestedAt(), c.GetReconciliation().GetFetchedAt()} {
		if ts == nil {
			continue
		}
		if at := ts.AsTime(); at.After(t) {
			t = at
		}
	}
	return t
}

// wanted reports whether c may need reconciling: it is not over (or is a
// placeholder, or only inferred over because its parent ended: Twilio
// knows how it really ended), and Twilio has not said it has no such call.
func wanted(c *callledgerv1.Call) bool {
	return (!c.GetTerminal() || c.GetPlaceholder() || inferred(c)) && !c.GetReconciliation().GetNotFound()
}

// inferred reports whether c's end is inferred, not reported.
func inferred(c *callledgerv1.Call) bool {
	return c.GetStatusSource() == callledgerv1.Source_SOURCE_INFERRED
}

func (r *Reconciler) observe(c *callledgerv1.Call, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sid := c.GetCallSid()
	if !wanted(c) {
		delete(r.calls, sid)
		return
	}
	e, ok := r.calls[sid]
	if !ok {
		e = &entry{sid: sid, firstSeen: r.cfg.Clock.Now()}
		r.calls[sid] = e
	}
	if at.After(e.lastActivity) {
		e.lastActivity = at
	}
	e.account, e.placeholder, e.terminal, e.children = c.GetAccountSid(), c.GetPlaceholder(), c.GetTerminal() && !inferred(c), len(c.GetChildCallSids()) > 0
	e.hangupAt = time.Time{}
	if h := c.GetHangupRequest(); h != nil {
		e.hangupAt = h.GetRequestedAt().AsTime()
	}
}

// dueAt is when e is next to be read.
func (r *Reconciler) dueAt(e *entry) time.Time {
	at := e.lastActivity.Add(r.cfg.IdleAfter)
	if e.terminal { // a placeholder a Dial action ended: only its own rule
		at = e.firstSeen.Add(r.cfg.PlaceholderAfter)
	} else if e.placeholder {
		at = earliest(at, e.firstSeen.Add(r.cfg.PlaceholderAfter))
	}
	if !e.hangupAt.IsZero() {
		at = earliest(at, e.hangupAt.Add(r.cfg.HangupAfter))
	}
	if e.next.After(at) {
		at = e.next
	}
	return at
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// due returns the call most overdue, or nil when none is due.
func (r *Reconciler) due() *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Clock.Now()
	var best *entry
	var bestAt time.Time
	for _, e := range r.calls {
		at := r.dueAt(e)
		if at.After(now) {
			continue
		}
		if best == nil || at.Before(bestAt) || at.Equal(bestAt) && e.sid < best.sid {
			best, bestAt = e, at
		}
	}
	if best == nil {
		return nil
	}
	cp := *best
	return &cp
}

// Pending returns the CallSids the reconciler follows, sorted: calls not
// over, or placeholders.
func (r *Reconciler) Pending() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.calls))
	for sid := range r.calls {
		out = append(out, sid)
	}
	sort.Strings(out)
	return out
}

// reconcile reads one call (and, once it is over, its children) and
// stores what Twilio said. Only a store failure is returned: Twilio's are
// handled by backing off.
func (r *Reconciler) reconcile(ctx context.Context, e *entry) error {
	account := e.account
	if account == "" {
		account = r.treeAccount(ctx, e.sid)
	}
	account, err := r.cfg.Twilio.Account(account)
	if err != nil {
		r.cfg.OnAction(ActionNoCredential)
		r.log.Warn("call of an account without REST credentials: not reconciled", "call_sid", e.sid, "account_sid", e.account)
		r.forget(e.sid)
		return nil
	}
	if err := r.wait(ctx, account); err != nil {
		return err
	}
	call, err := r.cfg.Twilio.FetchCall(ctx, account, e.sid)
	now := r.cfg.Clock.Now()
	if err != nil {
		return r.failed(ctx, e, account, err, now)
	}
	r.cfg.OnAction(ActionFetched)
	ev := rest.Reconciled(call, now)
	if err := r.store(ctx, ev); err != nil {
		return err
	}
	if callstate.IsTerminal(ev.GetCallReconciled().GetStatus()) || e.children {
		if err := r.wait(ctx, account); err != nil {
			return err
		}
		kids, err := r.cfg.Twilio.ListChildCalls(ctx, account, e.sid)
		now = r.cfg.Clock.Now()
		if err != nil {
			return r.failed(ctx, e, account, err, now)
		}
		r.cfg.OnAction(ActionListed)
		for i := range kids {
			if err := r.store(ctx, rest.Reconciled(&kids[i], now)); err != nil {
				return err
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.calls[e.sid]; ok {
		cur.failures = 0
		cur.attempts++
		// An ending call is asked about again soon, then less and less
		// often; any other call once it has been idle again.
		wait := r.cfg.IdleAfter
		if !cur.hangupAt.IsZero() {
			wait = min(r.cfg.IdleAfter, r.cfg.HangupAfter<<min(cur.attempts-1, 20))
		}
		cur.placeholder = false // Twilio's answer is an event of its own stream now
		cur.next = now.Add(wait)
	}
	return nil
}

// treeAccount is the account of any leg of sid's tree, "" when none is
// known.
func (r *Reconciler) treeAccount(ctx context.Context, sid string) string {
	tree, err := r.cfg.Calls.Tree(ctx, sid)
	if err != nil {
		return ""
	}
	return tree.Account()
}

// failed handles a failed request: a 404 is recorded and the call
// forgotten; anything else backs off.
func (r *Reconciler) failed(ctx context.Context, e *entry, account string, err error, now time.Time) error {
	var re *rest.Error
	isRest := errors.As(err, &re)
	if isRest && re.NotFound() {
		r.cfg.OnAction(ActionNotFound)
		r.log.Info("Twilio has no such call; recorded, not asked again", "call_sid", e.sid, "account_sid", account)
		r.forget(e.sid)
		return r.store(ctx, rest.NotFound(account, e.sid, now))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.calls[e.sid]
	if !ok {
		return nil
	}
	backoff := r.backoffLocked(cur, now)
	if !isRest || re.Temporary() {
		if isRest && re.RateLimited() {
			r.cfg.OnAction(ActionRateLimited)
			r.paused[account] = now.Add(backoff)
		} else {
			r.cfg.OnAction(ActionError)
		}
	} else {
		// A refusal that will not pass by itself (bad credentials, ...).
		r.cfg.OnAction(ActionError)
		backoff = r.cfg.MaxBackoff
		cur.next = now.Add(backoff)
	}
	r.log.Warn("reconciliation read failed; backing off", "call_sid", e.sid, "account_sid", account, "backoff", backoff, "err", err)
	return nil
}

// backoff delays the next read of sid after a failure.
func (r *Reconciler) backoff(sid string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.calls[sid]; ok {
		r.backoffLocked(cur, now)
	}
}

func (r *Reconciler) backoffLocked(e *entry, now time.Time) time.Duration {
	e.failures++
	d := min(r.cfg.MaxBackoff, r.cfg.MinBackoff<<min(e.failures-1, 20))
	e.next = now.Add(d)
	return d
}

func (r *Reconciler) forget(sid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.calls, sid)
}

// wait blocks until account may send a request: after any 429 pause, and
// as its token bucket allows.
func (r *Reconciler) wait(ctx context.Context, account string) error {
	r.mu.Lock()
	lim, ok := r.limiters[account]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(r.cfg.Rate), r.cfg.Burst)
		r.limiters[account] = lim
	}
	paused := r.paused[account]
	r.mu.Unlock()
	if d := paused.Sub(r.cfg.Clock.Now()); d > 0 {
		if err := r.sleep(ctx, d); err != nil {
			return err
		}
	}
	now := r.cfg.Clock.Now()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		if err := r.sleep(ctx, d); err != nil {
			res.CancelAt(r.cfg.Clock.Now())
			return err
		}
	}
	return nil
}

func (r *Reconciler) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.cfg.Clock.After(d):
		return nil
	}
}

// store appends ev (nil: nothing) to its call's stream.
func (r *Reconciler) store(ctx context.Context, ev *callledgerv1.Event) error {
	if ev == nil {
		return nil
	}
	if r.cfg.Sealer != nil {
		var err error
		if ev, err = r.cfg.Sealer.Seal(ctx, ev); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
	}
	data, err := eventcodec.Encode(ev)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	res, err := r.cfg.Store.Append(ctx, eventcodec.CallStream(ev.GetCallSid()), eventstore.Any(), data)
	if err != nil {
		return fmt.Errorf("reconcile: append to %s: %w", eventcodec.CallStream(ev.GetCallSid()), err)
	}
	if len(res.Duplicates) > 0 {
		r.cfg.OnAction(ActionUnchanged)
	} else {
		r.cfg.OnAction(ActionReconciled)
		r.log.Debug("reconciled", "call_sid", ev.GetCallSid(), "position", res.Position)
	}
	return nil
}
