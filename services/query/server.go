// Package query is the gRPC adapter of the call-state read model:
// CallQueryService. It validates requests, calls the read model or the
// event log, and maps their errors onto gRPC status codes; the answers
// themselves are built by projections/callstore and projections/callstate.
//
// Choices the contract leaves open:
//   - A malformed CallSid (anything but "CA" and 32 lowercase hex digits)
//     is INVALID_ARGUMENT, never NOT_FOUND: it can never exist.
//   - GetCall's wait for min_position ends with the request's deadline or,
//     without one, after Config.MaxWait (30 s by default), with
//     DEADLINE_EXCEEDED.
//   - page_size 0 means DefaultPageSize; negative or above MaxPageSize is
//     INVALID_ARGUMENT. A page token is only valid with the request (filter,
//     or call) it was issued for.
//   - Filter times must lie between 1970 and 2262 (Unix nanoseconds), and
//     started_after must not be later than started_before.
//   - A ListCallEvents page ends early, with a next_page_token, once it
//     would exceed Config.MaxPageBytes (each event carries its raw request;
//     a page holds one event at least): a short page is not the end. The
//     bound is kept while the log is read, so a page never holds a thousand
//     64 KiB requests in memory, and again on the encoded answer, which
//     stays below the gRPC send limit.
//   - ListCallEvents of a call without events of its own (unknown, or a
//     placeholder) is an empty page, not NOT_FOUND.
//   - Unexpected errors are logged in full and answered INTERNAL with a
//     short message; a closed or unavailable store is UNAVAILABLE.
package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"google.golang.org/grpc"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/services/rpcstatus"
)

// Calls is the part of the call-state read model the service reads.
// *callstore.Store and *callversions.Manager implement it.
type Calls interface {
	// TreeReader answers GetCall: a call, every leg of its tree and the
	// position read at.
	callstate.TreeReader
	// List returns a page of calls matching f and the next page's token.
	List(ctx context.Context, f callstore.Filter, limit int, token string) (callstore.Page, error)
	// Watch follows the calls matching f: a snapshot, then changes.
	Watch(ctx context.Context, f callstore.Filter) (*callstore.Watcher, error)
	// WaitFor blocks until the read model has applied pos.
	WaitFor(ctx context.Context, pos eventstore.Position) error
}

// Conferences is the part of the read model the conference queries read.
// *callstore.Store and *callversions.Manager implement it.
type Conferences interface {
	Conference(ctx context.Context, sid string) (callstore.ConferenceTree, error)
	ListConferences(ctx context.Context, f callstore.ConferenceFilter, limit int, token string) (callstore.ConferencePage, error)
	WatchConferences(ctx context.Context, f callstore.ConferenceFilter) (*callstore.ConferenceWatcher, error)
}

// History is the part of the event store ListCallEvents reads; every
// eventstore.Store implements it.
type History interface {
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error)
}

// Limits of the service.
const (
	// DefaultPageSize is the page size of a request that sets none.
	DefaultPageSize = 100
	// MaxPageSize is the largest page a request may ask for; larger
	// requests are refused rather than silently cut, so that a client
	// never mistakes a short page for the end.
	MaxPageSize = 1000
	// DefaultMaxWait bounds GetCall's wait for min_position when the
	// request carries no deadline, so that a position that never comes
	// (a typo, a position of another store) cannot hold a request forever.
	DefaultMaxWait = 30 * time.Second
	// DefaultMaxPageBytes bounds the encoded events of one ListCallEvents
	// page: a thousand events with their raw requests could reach 64 MiB.
	DefaultMaxPageBytes = 4 << 20
)

// Config wires a Server.
type Config struct {
	// Calls is the call-state read model; required.
	Calls Calls
	// History is the event log, for ListCallEvents; required.
	History History
	// Logger receives internal errors, which clients only see as a short
	// INTERNAL message. Default: discard.
	Logger *slog.Logger
	// MaxWait bounds GetCall's wait for min_position when the request has
	// no deadline (a request's own deadline always applies, however far).
	// Default: DefaultMaxWait.
	MaxWait time.Duration
	// Counts and Delays feed GetStats; without both it answers
	// UNIMPLEMENTED.
	Counts Counts
	Delays Delays
	// Lag measures how far the read model trails the log, for GetStats;
	// nil leaves the lag out.
	Lag func(ctx context.Context) (lagEvents uint64, lag time.Duration, caughtUp bool, err error)
	// MaxPageBytes bounds a ListCallEvents page's encoded events (one
	// event at least); default DefaultMaxPageBytes.
	MaxPageBytes int
	// Conferences answers the conference queries. Default: Calls, when it
	// implements Conferences; without either, they answer UNIMPLEMENTED.
	Conferences Conferences
	// Personal opens the sealed personal fields of the events
	// ListCallEvents lists (docs/PRIVACY.md); nil shows them sealed.
	Personal Opener
}

// Opener opens the sealed personal fields of an event; *seal.Events is
// one.
type Opener interface {
	Open(ctx context.Context, ev *callledgerv1.Event, parts ...seal.Part) (seal.Opened, error)
}

// Server implements callledgerv1.CallQueryServiceServer.
type Server struct {
	callledgerv1.UnimplementedCallQueryServiceServer

	calls   Calls
	history History
	log     *slog.Logger
	errs    rpcstatus.Mapper
	maxWait time.Duration
	counts  Counts
	delays  Delays
	lag     func(ctx context.Context) (uint64, time.Duration, bool, error)
	// maxPageBytes bounds a ListCallEvents page.
	maxPageBytes int
	confs        Conferences
	personal     Opener
}

var _ callledgerv1.CallQueryServiceServer = (*Server)(nil)

// New validates cfg and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Calls == nil || cfg.History == nil {
		return nil, errors.New("query: Calls and History are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.MaxPageBytes <= 0 {
		cfg.MaxPageBytes = DefaultMaxPageBytes
	}
	if cfg.Conferences == nil {
		cfg.Conferences, _ = cfg.Calls.(Conferences)
	}
	log := cfg.Logger.With("component", "query")
	return &Server{
		calls:   cfg.Calls,
		history: cfg.History,
		log:     log,
		errs:    rpcstatus.New(log, "retry"),
		maxWait: cfg.MaxWait,
		counts:  cfg.Counts,
		delays:  cfg.Delays,
		lag:     cfg.Lag,

		maxPageBytes: cfg.MaxPageBytes,
		confs:        cfg.Conferences,
		personal:     cfg.Personal,
	}, nil
}

// Register adds the service to a gRPC server, so that the binary's wiring
// is one line.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	callledgerv1.RegisterCallQueryServiceServer(g, s)
}

// pageSize turns a request's page_size into a limit.
func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("page_size %d is negative", n)
	case n > MaxPageSize:
		return 0, fmt.Errorf("page_size %d exceeds %d", n, MaxPageSize)
	case n == 0:
		return DefaultPageSize, nil
	}
	return int(n), nil
}

// ServerOptions are the gRPC server options the query service is measured
// with (see docs/BENCHMARKS.md): a fixed pool of stream workers, one per
// core, instead of a new goroutine per RPC. GetCall's read path is deep
// (Pebble's iterators), and a fresh goroutine's small stack is grown and
// copied on almost every call; a worker keeps its grown stack.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0)))}
}
