package query

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
)

// invalid is an INVALID_ARGUMENT answer.
func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// fail maps an error of the read model or the event log onto a status:
// the errors only this service can explain get a message written here,
// the rest are answered as in every service (see rpcstatus).
func (s *Server) fail(ctx context.Context, method string, err error) error {
	switch {
	case errors.Is(err, callstate.ErrNotFound):
		return status.Error(codes.NotFound, "call not found")
	case errors.Is(err, callstore.ErrConferenceNotFound):
		return status.Error(codes.NotFound, "conference not found")
	case errors.Is(err, callstore.ErrBadPageToken):
		return status.Error(codes.InvalidArgument, "invalid page_token: it is malformed or was issued for another request")
	}
	return s.errs.Map(ctx, method, err)
}
