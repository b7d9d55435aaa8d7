package query

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
)

// invalid is an INVALID_ARGUMENT answer.
func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// fail maps an error of the read model or the event log onto a status.
// Errors a client can act on keep a message written here; anything else is
// logged in full and answered with a short INTERNAL, so that internal
// details (paths, keys) never reach a client.
func (s *Server) fail(ctx context.Context, method string, err error) error {
	switch {
	case errors.Is(err, callstore.ErrNotFound):
		return status.Error(codes.NotFound, "call not found")
	case errors.Is(err, callstore.ErrBadPageToken):
		return status.Error(codes.InvalidArgument, "invalid page_token: it is malformed or was issued for another request")
	case errors.Is(err, callstore.ErrClosed), errors.Is(err, eventstore.ErrUnavailable):
		s.log.WarnContext(ctx, "store unavailable", "method", method, "err", err)
		return status.Error(codes.Unavailable, "store unavailable; retry")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		if ctxErr := ctx.Err(); ctxErr != nil {
			return status.FromContextError(ctxErr).Err()
		}
	}
	s.log.ErrorContext(ctx, "internal error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}
