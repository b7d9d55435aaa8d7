package kurrentdb

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// conn owns the v4 client and replaces it when it stops being usable.
//
// The v4 client (v4.2.0, read in its source) has three traps that shape
// this type:
//   - after a failed discovery it closes itself for good: every later call
//     answers ErrorCodeConnectionClosed, so it must be rebuilt;
//   - its connection goroutine is reached through an unbuffered channel
//     without a context: a call that entered the client while a discovery
//     was failing, or that reports Unavailable after the goroutine gave up,
//     blocks forever; and after Close the same send panics ("send on closed
//     channel");
//   - an error while opening a read does not trigger its reconnection, so a
//     broken transport may only heal on gRPC's own (up to 2 min) backoff.
//
// Hence every call runs on a goroutine of its own against a counted
// reference to one client (clientRef): the caller stops waiting when its
// context ends, when the call takes longer than the bound, or when the
// client is known to be dead; a client is closed only once it is retired
// and no call is in flight on it, and a dead client is never closed (a
// goroutine blocked inside it would panic) but abandoned. And while a
// client is unproven (new, or its transport just failed, so that its next
// call runs a discovery) calls enter it one at a time: the others wait
// outside, where they can give up, instead of queueing on the client's
// channel, where a failed discovery would strand them for good.
type conn struct {
	base     esdb.Configuration // copied for each client
	log      *slog.Logger
	rebuilds *atomic.Uint64
	inflight atomic.Int64 // calls running inside a client, given up on or not

	mu     sync.Mutex
	cur    *clientRef
	closed bool
}

// clientRef is one client and the calls in flight on it.
type clientRef struct {
	c    *esdb.Client
	born time.Time

	// Guarded by conn.mu.
	refs         int
	retired      bool // replaced or the store closed: close once idle
	closedClient bool

	// gate admits calls: any number while healthy (a call has reached the
	// server and the transport has not failed since); otherwise one, the
	// holder of entry, and only once no other call is inside the client,
	// since its first step may be a discovery.
	gate    sync.Mutex
	healthy bool // guarded by gate
	active  int  // calls inside the client; guarded by gate
	// drained is closed, and replaced, when active drops to 0 or the
	// client is proven healthy: either lets the holder of entry in.
	// Guarded by gate.
	drained chan struct{}
	entry   chan struct{}

	dead     chan struct{} // closed once the client has closed itself
	deadOnce sync.Once
	idle     chan struct{} // closed once retired with no call in flight
	idleOnce sync.Once
}

func (r *clientRef) markDead() { r.deadOnce.Do(func() { close(r.dead) }) }

func (r *clientRef) isDead() bool {
	select {
	case <-r.dead:
		return true
	default:
		return false
	}
}

func (r *clientRef) signalIdle() { r.idleOnce.Do(func() { close(r.idle) }) }

func newConn(cfg esdb.Configuration, log *slog.Logger, rebuilds *atomic.Uint64) (*conn, error) {
	c := &conn{base: cfg, log: log, rebuilds: rebuilds}
	r, err := c.newRef()
	if err != nil {
		return nil, err
	}
	c.cur = r
	return c, nil
}

// newRef creates a client. NewClient does no I/O: the first call on the
// client runs its discovery.
func (c *conn) newRef() (*clientRef, error) {
	cfg := c.base
	cl, err := esdb.NewClient(&cfg)
	if err != nil {
		return nil, fmt.Errorf("create KurrentDB client: %w", err)
	}
	return &clientRef{
		c: cl, born: time.Now(), entry: make(chan struct{}, 1), drained: make(chan struct{}),
		dead: make(chan struct{}), idle: make(chan struct{}),
	}, nil
}

// enter admits a call into the client (see gate). alone reports a call
// admitted while the client is unproven, which holds entry until exit.
func (r *clientRef) enter(ctx context.Context, timeout <-chan time.Time, bound time.Duration) (alone bool, err error) {
	r.gate.Lock()
	if r.healthy {
		r.active++
		r.gate.Unlock()
		return false, nil
	}
	r.gate.Unlock()
	wait := func(ch <-chan struct{}) error {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-r.dead:
			return errClientDead
		case <-timeout:
			return fmt.Errorf("no answer within %v: %w", bound, errTimeout)
		}
	}
	select {
	case r.entry <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-r.dead:
		return false, errClientDead
	case <-timeout:
		return false, fmt.Errorf("no answer within %v: %w", bound, errTimeout)
	}
	for {
		r.gate.Lock()
		if r.healthy { // proven while we waited
			r.active++
			r.gate.Unlock()
			<-r.entry
			return false, nil
		}
		if r.active == 0 {
			r.active++
			r.gate.Unlock()
			return true, nil
		}
		drained := r.drained
		r.gate.Unlock()
		if err := wait(drained); err != nil {
			<-r.entry
			return false, err
		}
	}
}

// exit records how a call admitted by enter ended.
func (r *clientRef) exit(alone bool, err error, cancelled bool) {
	r.gate.Lock()
	wasHealthy := r.healthy
	switch {
	case err == nil:
		r.healthy = true
	case transportDown(err) || clientDead(err):
		r.healthy = false
	case !cancelled:
		r.healthy = true // the server answered
	}
	if r.active--; r.active == 0 || (r.healthy && !wasHealthy) {
		close(r.drained)
		r.drained = make(chan struct{})
	}
	r.gate.Unlock()
	if alone {
		<-r.entry
	}
}

func (c *conn) acquire() (*clientRef, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	c.cur.refs++
	return c.cur, nil
}

func (c *conn) release(r *clientRef) {
	c.mu.Lock()
	r.refs--
	closeNow := r.retired && r.refs == 0 && !r.closedClient && !r.isDead()
	if closeNow {
		r.closedClient = true
	}
	if r.retired && r.refs == 0 {
		r.signalIdle()
	}
	c.mu.Unlock()
	if closeNow {
		_ = r.c.Close()
	}
}

// minClientAge keeps a client that just replaced another from being
// replaced again by every Unavailable of an outage: a new client costs a
// discovery.
const minClientAge = time.Second

// observe looks at the error of a call made on r and replaces r when it is
// dead (it closed itself after a failed discovery) or, at most once per
// minClientAge, when its transport is down: a fresh client dials at once
// instead of waiting for gRPC's reconnection backoff.
func (c *conn) observe(r *clientRef, err error) {
	switch {
	case clientDead(err):
		r.markDead()
		c.replace(r, "the client closed itself after a failed discovery", err)
	case transportDown(err) && time.Since(r.born) >= minClientAge:
		c.replace(r, "the server is unreachable", err)
	}
}

// replace retires r, if it is still the current client, for a new one.
func (c *conn) replace(r *clientRef, why string, cause error) {
	c.mu.Lock()
	if c.closed || c.cur != r {
		c.mu.Unlock()
		return
	}
	nr, err := c.newRef()
	if err != nil {
		c.mu.Unlock()
		c.log.Error("cannot replace the KurrentDB client", "err", err)
		return
	}
	c.cur = nr
	r.retired = true
	dead := r.isDead()
	closeNow := r.refs == 0 && !dead && !r.closedClient
	if closeNow {
		r.closedClient = true
	}
	if r.refs == 0 {
		r.signalIdle()
	}
	c.mu.Unlock()
	c.rebuilds.Add(1)
	c.log.Warn("replacing the KurrentDB client", "reason", why, "err", cause)
	if closeNow {
		_ = r.c.Close()
	}
}

// close retires the current client and closes it once the calls in flight
// (whose contexts the store has cancelled) have returned, waiting at most
// wait: closing the client under a call that is about to report an error
// would panic inside the client.
func (c *conn) close(wait time.Duration) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	r := c.cur
	r.retired = true
	closeNow := r.refs == 0 && !r.closedClient && !r.isDead()
	if closeNow {
		r.closedClient = true
	}
	if r.refs == 0 {
		r.signalIdle()
	}
	c.mu.Unlock()
	if closeNow {
		_ = r.c.Close()
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.idle: // the last call's release closed it
	case <-r.dead:
	case <-t.C:
		c.log.Warn("closing the store with KurrentDB calls still in flight; the client will close when they return")
	}
}

// runOn runs fn on the current client in a goroutine of its own and waits
// for it, for ctx, for the client's death or for bound (when positive),
// whichever comes first. A call given up on goes on in the background with
// a cancelled context; when it returns, discard (if set) disposes of its
// result and the client reference is released.
//
// With hold, a successful call keeps its reference (and its context) until
// the returned release function is called: subscriptions live on.
func runOn[T any](c *conn, ctx context.Context, bound time.Duration, hold bool,
	fn func(context.Context, *esdb.Client) (T, error), discard func(T)) (T, func(), error) {
	var zero T
	r, err := c.acquire()
	if err != nil {
		return zero, nil, err
	}
	var timeout <-chan time.Time
	if bound > 0 {
		t := time.NewTimer(bound)
		defer t.Stop()
		timeout = t.C
	}
	alone, err := r.enter(ctx, timeout, bound)
	if err != nil {
		c.release(r)
		return zero, nil, err
	}
	ictx, cancel := context.WithCancel(ctx)
	type result struct {
		v   T
		err error
	}
	var (
		mu        sync.Mutex
		abandoned bool
		returned  atomic.Bool // fn has returned: its answer is coming
		ch        = make(chan result, 1)
	)
	done := func() { cancel(); c.release(r) }
	c.inflight.Add(1)
	go func() {
		v, err := fn(ictx, r.c)
		c.inflight.Add(-1)
		returned.Store(true)
		r.exit(alone, err, ictx.Err() != nil)
		if err != nil {
			// Before answering, so that a retry finds the new client.
			c.observe(r, err)
		}
		mu.Lock()
		if abandoned {
			mu.Unlock()
			if err == nil && discard != nil {
				discard(v)
			}
			done()
			return
		}
		ch <- result{v, err}
		mu.Unlock()
		if !hold || err != nil {
			done()
		}
	}()
	finish := func(res result) (T, func(), error) {
		if hold && res.err == nil {
			return res.v, sync.OnceFunc(done), nil
		}
		return res.v, nil, res.err
	}
	var why error
	select {
	case res := <-ch:
		return finish(res)
	case <-ctx.Done():
		why = ctx.Err()
	case <-r.dead:
		why = errClientDead
	case <-timeout:
		why = fmt.Errorf("no answer within %v: %w", bound, errTimeout)
	}
	if returned.Load() {
		// It answered as we stopped waiting (its own error may have
		// killed the client): its answer is the better one.
		return finish(<-ch)
	}
	mu.Lock()
	select {
	case res := <-ch: // it finished meanwhile: take its answer
		mu.Unlock()
		return finish(res)
	default:
		abandoned = true
		mu.Unlock()
	}
	cancel()
	return zero, nil, why
}

// clientLogger routes the client's log lines to slog at Debug: the client
// logs every mapped error and every dropped subscription (cancelled ones
// included) at error level, which the adapter reports itself, with context,
// where it matters.
func clientLogger(log *slog.Logger) esdb.LoggingFunc {
	return func(level esdb.LogLevel, format string, args ...any) {
		ctx := context.Background()
		if !log.Enabled(ctx, slog.LevelDebug) {
			return
		}
		log.LogAttrs(ctx, slog.LevelDebug, fmt.Sprintf(format, args...), slog.String("client_level", level))
	}
}
