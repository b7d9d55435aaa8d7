package query

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
)

// GetCall returns a call and every leg of its tree, after waiting, when
// asked, until the read model has applied min_position. The wait is bounded
// by the request's deadline or, without one, by Config.MaxWait; a position
// not reached in time is DEADLINE_EXCEEDED, so the client can tell "not
// yet" from NOT_FOUND.
func (s *Server) GetCall(ctx context.Context, req *callledgerv1.GetCallRequest) (*callledgerv1.GetCallResponse, error) {
	sid := req.GetCallSid()
	if !eventcodec.ValidCallSid(sid) {
		return nil, invalid("call_sid %.40q is not a CallSid (CA followed by 32 lowercase hex digits)", sid)
	}
	if pos := req.GetMinPosition(); pos > 0 {
		if err := s.waitFor(ctx, eventstore.Position(pos)); err != nil {
			return nil, err
		}
	}
	tree, err := s.calls.Tree(ctx, sid)
	if err != nil {
		return nil, s.fail(ctx, "GetCall", err)
	}
	return &callledgerv1.GetCallResponse{Call: tree.Call, Legs: tree.Legs, Position: uint64(tree.Position)}, nil
}

// waitFor waits until the read model has applied pos, within the request's
// deadline or s.maxWait.
func (s *Server) waitFor(ctx context.Context, pos eventstore.Position) error {
	wctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, s.maxWait)
		defer cancel()
	}
	err := s.calls.WaitFor(wctx, pos)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "the projection has not applied position %d within %s; retry later", pos, s.maxWait)
	}
	return s.fail(ctx, "GetCall", err)
}

// ListCalls pages through the calls matching a filter, newest start first.
func (s *Server) ListCalls(ctx context.Context, req *callledgerv1.ListCallsRequest) (*callledgerv1.ListCallsResponse, error) {
	f, err := toFilter(req.GetFilter())
	if err != nil {
		return nil, err
	}
	limit, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, invalid("%v", err)
	}
	page, err := s.calls.List(ctx, f, limit, req.GetPageToken())
	if err != nil {
		return nil, s.fail(ctx, "ListCalls", err)
	}
	return &callledgerv1.ListCallsResponse{Calls: page.Calls, NextPageToken: page.Next, Position: uint64(page.Position)}, nil
}

// WatchCalls streams the matching calls as of one position, a caught_up
// marker, then every change after that position, until the client goes
// away. A client too slow to keep up is ended with RESOURCE_EXHAUSTED
// rather than buffered without bound; a closed store ends it with
// UNAVAILABLE. Either way the client should watch again.
//
// Sending happens on the handler's goroutine, so while the client does not
// read, Send blocks under gRPC flow control and changes pile up in the
// watcher's bounded buffer until it overflows: the store then drops the
// watcher at once, and the stream ends as soon as the client reads again
// or goes away.
func (s *Server) WatchCalls(req *callledgerv1.WatchCallsRequest, stream grpc.ServerStreamingServer[callledgerv1.WatchCallsResponse]) error {
	ctx := stream.Context()
	f, err := toFilter(req.GetFilter())
	if err != nil {
		return err
	}
	w, err := s.calls.Watch(ctx, f)
	if err != nil {
		return s.fail(ctx, "WatchCalls", err)
	}
	defer w.Close()

	pos := uint64(w.Position())
	var sendErr error
	err = w.Snapshot(ctx, func(c *callledgerv1.Call) error {
		sendErr = stream.Send(&callledgerv1.WatchCallsResponse{Call: c, Position: pos, Snapshot: true})
		return sendErr
	})
	switch {
	case sendErr != nil:
		return s.sendFailed(ctx, sendErr)
	case err != nil:
		// Changes overflow the watcher's buffer while the snapshot is
		// sent as they do later: the same answer.
		return s.watchEnded(ctx, err)
	}
	if err := stream.Send(&callledgerv1.WatchCallsResponse{Position: pos, CaughtUp: true}); err != nil {
		return s.sendFailed(ctx, err)
	}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ch, ok := <-w.Changes():
			if !ok {
				return s.watchEnded(ctx, w.Err())
			}
			err := stream.Send(&callledgerv1.WatchCallsResponse{Call: ch.Call, Position: uint64(ch.Position)})
			if err != nil {
				return s.sendFailed(ctx, err)
			}
		}
	}
}

// watchEnded maps why the store ended a watcher.
func (s *Server) watchEnded(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, callstore.ErrSlowConsumer):
		s.log.InfoContext(ctx, "watcher too slow; ended", "err", err)
		return status.Error(codes.ResourceExhausted, "the watch fell too far behind the changes and was ended; watch again (the snapshot brings the current state)")
	case err == nil:
		// Only Close ends a watcher without an error, and only this
		// handler closes it: the store must have let it go otherwise.
		return status.Error(codes.Unavailable, "watch ended; watch again")
	}
	return s.fail(ctx, "WatchCalls", err)
}

// sendFailed maps a failure to send: the client went away, or the
// transport broke. Neither is the server's fault, so it is not logged as
// an error.
func (s *Server) sendFailed(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	s.log.DebugContext(ctx, "watch send failed", "err", err)
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unavailable, "stream broken; watch again")
}

// Representable times: ListCalls compares Unix nanoseconds.
var (
	minStart = time.Unix(0, 0)
	maxStart = time.Unix(0, math.MaxInt64)
)

// toFilter validates a CallFilter and maps it onto the read model's.
func toFilter(pf *callledgerv1.CallFilter) (callstore.Filter, error) {
	f := callstore.Filter{ActiveOnly: pf.GetActiveOnly()}
	if p := pf.GetParentCallSid(); p != "" {
		if !eventcodec.ValidCallSid(p) {
			return f, invalid("filter.parent_call_sid %.40q is not a CallSid", p)
		}
		f.ParentCallSid = p
	}
	for _, st := range pf.GetStatuses() {
		if _, ok := callledgerv1.CallStatus_name[int32(st)]; !ok {
			return f, invalid("filter.statuses: unknown status %d", st)
		}
		f.Statuses = append(f.Statuses, st)
	}
	// One order for one set, so that a page token stays valid when a client
	// lists the same statuses in another order.
	slices.Sort(f.Statuses)
	f.Statuses = slices.Compact(f.Statuses)

	after, err := bound("started_after", pf.GetStartedAfter())
	if err != nil {
		return f, err
	}
	before, err := bound("started_before", pf.GetStartedBefore())
	if err != nil {
		return f, err
	}
	if pf.GetStartedBefore() != nil && before == 0 {
		// The read model reads 0 as "no bound": nothing starts before 1970,
		// so refuse rather than answer everything.
		return f, invalid("filter.started_before must be after 1970-01-01T00:00:00Z")
	}
	if after != 0 && before != 0 && after > before {
		return f, invalid("filter.started_after is later than filter.started_before")
	}
	f.StartedAfter, f.StartedBefore = after, before
	return f, nil
}

// bound converts a filter time to Unix nanoseconds (0 when unset).
func bound(name string, ts *timestamppb.Timestamp) (int64, error) {
	if ts == nil {
		return 0, nil
	}
	if err := ts.CheckValid(); err != nil {
		return 0, invalid("filter.%s: %v", name, err)
	}
	t := ts.AsTime()
	if t.Before(minStart) || t.After(maxStart) {
		return 0, invalid("filter.%s %s is outside %s..%s", name, t.Format(time.RFC3339), minStart.UTC().Format(time.RFC3339), maxStart.UTC().Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}
