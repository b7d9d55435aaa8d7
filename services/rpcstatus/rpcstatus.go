// Package rpcstatus answers the errors a gRPC handler has no answer of its
// own for, the same way in every service: a client learns whether to retry
// or give up, and never sees internal details (paths, keys, addresses),
// which go to the log instead. Each service maps the errors it can explain
// (a missing call, a busy rebuild) before handing the rest to a Mapper.
package rpcstatus

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
)

// Mapper turns the remaining errors of one service's handlers into
// statuses.
type Mapper struct {
	log   *slog.Logger
	retry string
}

// New returns a Mapper that logs to log. retry tells a client answered
// UNAVAILABLE how to retry ("retry", or a service's own hint such as
// "retry with the same request_id"), since only the service knows what
// makes a retry safe.
func New(log *slog.Logger, retry string) Mapper {
	return Mapper{log: log, retry: retry}
}

// Map answers err, which the handler of method could not answer itself:
//   - the event store or the read model being unavailable or closed is
//     UNAVAILABLE, logged as a warning: a retry can succeed; so is a
//     corrupt read model, which is being rebuilt;
//   - a cancellation or deadline of the request's own ctx is CANCELED or
//     DEADLINE_EXCEEDED, as gRPC reports it;
//   - anything else is logged in full and answered with a short INTERNAL.
func (m Mapper) Map(ctx context.Context, method string, err error) error {
	switch {
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, callstore.ErrClosed):
		m.log.WarnContext(ctx, "store unavailable", "method", method, "err", err)
		return status.Error(codes.Unavailable, "store unavailable; "+m.retry)
	case errors.Is(err, callstore.ErrCorrupt):
		// Logged once by the read model's manager, which rebuilds it.
		return status.Error(codes.Unavailable, "the read model is being rebuilt from the ledger; "+m.retry)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Only when the request ended: a deadline the server set itself
		// is an internal failure.
		if ctxErr := ctx.Err(); ctxErr != nil {
			return status.FromContextError(ctxErr).Err()
		}
	}
	m.log.ErrorContext(ctx, "internal error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}
