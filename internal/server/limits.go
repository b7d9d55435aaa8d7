package server

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpcauth"
)

// callLimits bound what one principal can make the server do: hang-ups
// reach Twilio's REST API with the service's credentials, so each
// principal gets a token bucket; watch streams hold memory for as long
// as they last, so they are capped per principal and in all. Calls of a
// server without authentication share the bucket and cap of the principal
// "". The principals are those of the configuration, so the maps stay
// small.
type callLimits struct {
	hangupRate  rate.Limit
	hangupBurst int
	maxWatches  int
	maxPer      int

	mu       sync.Mutex
	buckets  map[string]*rate.Limiter
	watching map[string]int
	total    int
}

func newCallLimits(c GRPC) *callLimits {
	return &callLimits{
		hangupRate: rate.Limit(c.HangupRate), hangupBurst: c.HangupBurst,
		maxWatches: c.MaxWatches, maxPer: c.MaxWatchesPerPrincipal,
		buckets: map[string]*rate.Limiter{}, watching: map[string]int{},
	}
}

func principalName(ctx context.Context) string {
	p, _ := grpcauth.PrincipalFrom(ctx)
	return p.Name
}

// unary limits RequestHangup.
func (l *callLimits) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod == callledgerv1.CallCommandService_RequestHangup_FullMethodName {
		if err := l.hangup(principalName(ctx)); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

func (l *callLimits) hangup(principal string) error {
	l.mu.Lock()
	b, ok := l.buckets[principal]
	if !ok {
		b = rate.NewLimiter(l.hangupRate, l.hangupBurst)
		l.buckets[principal] = b
	}
	l.mu.Unlock()
	if !b.Allow() {
		return status.Errorf(codes.ResourceExhausted, "hang-up rate limit reached: %g per second, bursts of %d; retry later with the same request_id",
			float64(l.hangupRate), l.hangupBurst)
	}
	return nil
}

// stream caps the watches (WatchCalls, WatchConferences), together.
func (l *callLimits) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	switch info.FullMethod {
	case callledgerv1.CallQueryService_WatchCalls_FullMethodName, callledgerv1.CallQueryService_WatchConferences_FullMethodName:
	default:
		return handler(srv, ss)
	}
	principal := principalName(ss.Context())
	if err := l.watch(principal); err != nil {
		return err
	}
	defer l.unwatch(principal)
	return handler(srv, ss)
}

func (l *callLimits) watch(principal string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.maxWatches:
		return status.Errorf(codes.ResourceExhausted, "too many watch streams open (%d)", l.maxWatches)
	case l.watching[principal] >= l.maxPer:
		return status.Error(codes.ResourceExhausted, fmt.Sprintf("too many watch streams open for this principal (%d)", l.maxPer))
	}
	l.total++
	l.watching[principal]++
	return nil
}

func (l *callLimits) unwatch(principal string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.watching[principal]--; l.watching[principal] == 0 {
		delete(l.watching, principal)
	}
}
