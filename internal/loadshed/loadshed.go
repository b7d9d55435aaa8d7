// Package loadshed keeps the gRPC side of the server from taking memory
// and CPU that webhooks need: it bounds the queries and the streams
// (WatchCalls, rebuild progress) in progress, and refuses new ones at once
// while the webhooks are busy, so that under a flood the queries and the
// watchers are shed, never the webhooks Twilio sends. A refused call gets
// RESOURCE_EXHAUSTED and retries with backoff; calls already running go on.
package loadshed

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of Limits.
const (
	// DefaultMaxQueries bounds the unary queries in progress: each holds
	// at most a page (1000 calls, or a ListCallEvents page of 4 MiB).
	DefaultMaxQueries = 256
	// DefaultMaxStreams bounds the streams in progress: each WatchCalls
	// holds a snapshot and a buffer of up to 4096 changes.
	DefaultMaxStreams = 128
)

// Limits are what a Shedder admits.
type Limits struct {
	// MaxQueries and MaxStreams bound the unary and the streaming calls in
	// progress (defaults DefaultMaxQueries, DefaultMaxStreams).
	MaxQueries, MaxStreams int
	// Services are the full names of the services shed
	// ("callledger.v1.CallQueryService"); calls of others pass untouched.
	Services []string
	// Busy reports that the webhooks need the server now (their appends in
	// flight are many): new calls are refused meanwhile. Nil: never.
	Busy func() bool
}

// Shedder admits calls within Limits. It is safe for concurrent use.
type Shedder struct {
	queries, streams chan struct{}
	prefixes         []string
	busy             func() bool
}

// New returns a Shedder of l.
func New(l Limits) *Shedder {
	if l.MaxQueries <= 0 {
		l.MaxQueries = DefaultMaxQueries
	}
	if l.MaxStreams <= 0 {
		l.MaxStreams = DefaultMaxStreams
	}
	if l.Busy == nil {
		l.Busy = func() bool { return false }
	}
	s := &Shedder{queries: make(chan struct{}, l.MaxQueries), streams: make(chan struct{}, l.MaxStreams), busy: l.Busy}
	for _, svc := range l.Services {
		s.prefixes = append(s.prefixes, "/"+svc+"/")
	}
	return s
}

func (s *Shedder) shed(method string) bool {
	for _, p := range s.prefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// admit takes a slot of sem or answers why not; release gives it back.
func (s *Shedder) admit(sem chan struct{}, what string) (release func(), err error) {
	if s.busy() {
		return nil, status.Error(codes.ResourceExhausted, "server busy with webhooks; retry with backoff")
	}
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	default:
		return nil, status.Errorf(codes.ResourceExhausted, "too many %s in progress (%d); retry with backoff", what, cap(sem))
	}
}

// Unary is the interceptor of unary calls.
func (s *Shedder) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !s.shed(info.FullMethod) {
			return handler(ctx, req)
		}
		release, err := s.admit(s.queries, "queries")
		if err != nil {
			return nil, err
		}
		defer release()
		return handler(ctx, req)
	}
}

// Stream is the interceptor of streaming calls.
func (s *Shedder) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !s.shed(info.FullMethod) {
			return handler(srv, ss)
		}
		release, err := s.admit(s.streams, "streams")
		if err != nil {
			return err
		}
		defer release()
		return handler(srv, ss)
	}
}
