package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
)

var _ eventstore.Store = (*Store)(nil)

// Options tunes a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the adapter's messages, and the client's at Debug.
	// Default: slog.Default().
	Logger *slog.Logger
	// OperationTimeout bounds each call to the server (an append, one page
	// of a read), so that an unreachable or stalled server turns into
	// ErrUnavailable rather than a hung webhook. Default: the connection
	// string's defaultDeadline, else 10 s.
	OperationTimeout time.Duration
	// SubscriptionBatchSize bounds the events of one subscription batch.
	// Default: 512.
	SubscriptionBatchSize int
	// IdleCheckpointInterval is how long a live subscription waits with
	// nothing to deliver before it reads the log itself to move its
	// checkpoint past events its filter skips (the server checkpoints only
	// every window of considered events). It backs off while nothing
	// changes. Default: 1 s; negative disables it.
	IdleCheckpointInterval time.Duration
	// MaxAppendAttempts bounds how often one append re-reads the stream
	// after another writer won a race for it. Default: 10.
	MaxAppendAttempts int
	// KnownStreams bounds the streams whose event IDs the store keeps in
	// memory so that an append reads only what was written since (about
	// 2 KiB for a call's stream). Default: 4096; negative disables it.
	KnownStreams int

	// namespace is prepended to every stream name, and only its streams
	// are visible: it isolates the conformance suite's backings on a
	// shared real server. Set by tests only.
	namespace string
}

func (o Options) withDefaults(cfg *esdb.Configuration) Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OperationTimeout <= 0 {
		o.OperationTimeout = 10 * time.Second
		if cfg.DefaultDeadline != nil {
			o.OperationTimeout = *cfg.DefaultDeadline
		}
	}
	if o.SubscriptionBatchSize <= 0 {
		o.SubscriptionBatchSize = 512
	}
	if o.IdleCheckpointInterval == 0 {
		o.IdleCheckpointInterval = time.Second
	}
	if o.MaxAppendAttempts <= 0 {
		o.MaxAppendAttempts = 10
	}
	if o.KnownStreams == 0 {
		o.KnownStreams = 4096
	}
	return o
}

// Stats are cumulative counters, for metrics and for telling how often the
// adapter had to recover from something.
type Stats struct {
	// Conflicts counts appends the server refused with a wrong expected
	// version because another writer got there first; each was re-read.
	Conflicts uint64
	// ClientRebuilds counts replacements of the client (dead after a failed
	// discovery, or its transport down).
	ClientRebuilds uint64
	// Resubscriptions counts subscriptions re-established after a drop.
	Resubscriptions uint64
}

// Store is the KurrentDB-backed event store. It is safe for concurrent use.
type Store struct {
	conn      *conn
	prefixes  *prefixCache
	log       *slog.Logger
	opts      Options
	ns        string
	target    string        // address or seeds, without credentials, for messages
	opTimeout time.Duration // addressable: the client takes a *time.Duration
	bound     time.Duration // the longest a caller waits for one call

	// stopCtx is cancelled by Close: it cancels every call in flight and
	// ends subscriptions.
	stopCtx   context.Context
	stop      context.CancelFunc
	closed    atomic.Bool
	closeOnce sync.Once

	// lanes serialise the writes of appends to one stream within this
	// process (striped by stream name), so that racing appends of the same
	// event see each other's writes: the server's answer to a batch it
	// already has cannot be told apart from a write (see Append).
	lanes [1024]lane

	conflicts, rebuilds, resubscriptions atomic.Uint64
}

// Open connects to KurrentDB. connString is an esdb:// (single node or
// gossip seeds) or esdb+discover:// (DNS discovery) connection string as
// the v4 client accepts it; remember tls=false for a plaintext server.
// Open makes one read to find out whether the server answers, so that a
// wrong address or credentials fail at start: ctx bounds it.
func Open(ctx context.Context, connString string, opts Options) (*Store, error) {
	cfg, err := esdb.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("kurrentdb: connection string: %s: %w", scrub(err), eventstore.ErrInvalidArgument)
	}
	if cfg.DefaultDeadline != nil && *cfg.DefaultDeadline <= 0 {
		// The client parses a bad defaultDeadline as zero, and every append
		// then fails at once with DeadlineExceeded.
		return nil, fmt.Errorf("kurrentdb: connection string: defaultDeadline must be a positive number of milliseconds: %w", eventstore.ErrInvalidArgument)
	}
	opts = opts.withDefaults(cfg)
	if strings.HasPrefix(opts.namespace, "$") {
		return nil, fmt.Errorf("kurrentdb: namespace %q: %w", opts.namespace, eventstore.ErrInvalidArgument)
	}
	target := cfg.Address
	if len(cfg.GossipSeeds) > 0 {
		seeds := make([]string, len(cfg.GossipSeeds))
		for i, s := range cfg.GossipSeeds {
			seeds[i] = s.String()
		}
		target = strings.Join(seeds, ",")
	}
	log := opts.Logger.With("component", "kurrentdb", "target", target)
	cfg.Logger = clientLogger(log)
	s := &Store{
		log:       log,
		opts:      opts,
		ns:        opts.namespace,
		target:    target,
		opTimeout: opts.OperationTimeout,
		bound:     2 * opts.OperationTimeout,
		prefixes:  newPrefixCache(opts.KnownStreams),
	}
	for i := range s.lanes {
		s.lanes[i].ch = make(chan struct{}, 1)
	}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	if s.conn, err = newConn(*cfg, log, &s.rebuilds); err != nil {
		s.stop()
		return nil, fmt.Errorf("kurrentdb: %w: %w", err, eventstore.ErrInvalidArgument)
	}
	if err := s.ping(ctx, "open kurrentdb at "+target); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Ping reads the last record of $all: the cheapest call that proves the
// server answers (Head may page through the server's own events).
// Readiness probes call it every few seconds. It fails with
// [eventstore.ErrUnavailable] when the server is unreachable or refuses,
// and with ctx's error when ctx ends first.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if s.closed.Load() {
		return fmt.Errorf("ping: %w", errClosed)
	}
	return s.ping(ctx, "ping kurrentdb at "+s.target)
}

func (s *Store) ping(ctx context.Context, op string) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err := call(s, ctx, func(ctx context.Context, c *esdb.Client) ([]*esdb.RecordedEvent, error) {
		return s.readAllPage(ctx, c, esdb.Backwards, esdb.End{}, 1)
	})
	if err != nil {
		return s.portErr(ctx, op, err, eventstore.ErrUnavailable)
	}
	return nil
}

// scrub renders a connection string parse error without the string itself,
// which may hold a password.
func scrub(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// Close cancels the calls and subscriptions in flight, then closes the
// client (in that order: the client panics if an error reaches it after
// Close). Appends already acknowledged are durable on the server. Close is
// safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stop()
		s.conn.close(5 * time.Second)
	})
	return nil
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Conflicts:       s.conflicts.Load(),
		ClientRebuilds:  s.rebuilds.Load(),
		Resubscriptions: s.resubscriptions.Load(),
	}
}

// opCtx derives a context that Close also cancels.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.stopCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

// maxCallAttempts bounds the retries of one call after ConnectionClosed
// (the client was replaced: nothing reached the server) or NotLeader (the
// client has reconnected to the leader the follower named).
const maxCallAttempts = 4

// call runs fn on the client, retrying what is safe to retry at once.
func call[T any](s *Store, ctx context.Context, fn func(context.Context, *esdb.Client) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, _, err := runOn(s.conn, ctx, s.bound, false, fn, nil)
		if err == nil || attempt >= maxCallAttempts || s.closed.Load() || ctx.Err() != nil {
			return v, err
		}
		switch {
		case hasCode(err, esdb.ErrorCodeConnectionClosed):
			// The client had closed itself: nothing reached the server, and
			// observe has replaced the client.
		case hasCode(err, esdb.ErrorCodeNotLeader):
			s.log.Info("KurrentDB node is not the leader; retrying on the leader", "attempt", attempt)
			if !sleep(ctx, time.Duration(attempt)*20*time.Millisecond) {
				return v, err
			}
		default:
			return v, err
		}
	}
}

// sleep waits d or until ctx ends, reporting whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// lane is the write lock of the streams whose names hash to it, with a
// version that every write through this process bumps.
type lane struct {
	ch  chan struct{}
	ver atomic.Uint64
}

func (l *lane) lock(ctx context.Context) error {
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *lane) unlock() { <-l.ch }

func (s *Store) lane(stream string) *lane {
	h := fnv.New32a()
	_, _ = h.Write([]byte(stream))
	return &s.lanes[h.Sum32()%uint32(len(s.lanes))]
}

// validateStream applies the port's rules and KurrentDB's: names starting
// with '$' are the server's system streams, hidden from the port's log.
func validateStream(stream string) error {
	if err := eventstore.ValidateStreamName(stream); err != nil {
		return err
	}
	if strings.HasPrefix(stream, "$") {
		return fmt.Errorf("stream name %q starts with '$', which KurrentDB reserves for system streams: %w", stream, eventstore.ErrInvalidArgument)
	}
	return nil
}

func validateEvents(events []eventstore.EventData) error {
	if len(events) == 0 {
		return fmt.Errorf("no events: %w", eventstore.ErrInvalidArgument)
	}
	for i := range events {
		if events[i].ID == uuid.Nil {
			return fmt.Errorf("event %d has no ID: %w", i, eventstore.ErrInvalidArgument)
		}
		if strings.HasPrefix(events[i].Type, "$") {
			return fmt.Errorf("event %d: type %q starts with '$', which KurrentDB reserves for system events: %w", i, events[i].Type, eventstore.ErrInvalidArgument)
		}
	}
	return nil
}

// system reports an event of the server itself: a $-prefixed stream or
// type ($metadata, $>, $streamDeleted, statistics, users, projections…).
func system(e *esdb.RecordedEvent) bool {
	return strings.HasPrefix(e.StreamID, "$") || strings.HasPrefix(e.EventType, "$")
}

// visible reports whether e belongs to the port's log: the ledger's events,
// within the namespace when there is one.
func (s *Store) visible(e *esdb.RecordedEvent) bool {
	return !system(e) && strings.HasPrefix(e.StreamID, s.ns)
}

// recorded converts an event of the client, copying its payloads so that
// callers own them.
func (s *Store) recorded(e *esdb.RecordedEvent) eventstore.RecordedEvent {
	return eventstore.RecordedEvent{
		ID:       e.EventID,
		Type:     e.EventType,
		Stream:   strings.TrimPrefix(e.StreamID, s.ns),
		Revision: e.EventNumber,
		Position: eventstore.Position(e.Position.Commit),
		Created:  e.CreatedDate,
		Data:     clone(e.Data),
		Metadata: clone(e.UserMetadata),
	}
}

// clone copies b into a slice of its own with no spare capacity, so that
// appending to one field never writes into another.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
