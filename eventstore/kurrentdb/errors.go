package kurrentdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/eventstore"
)

var (
	errClosed     = fmt.Errorf("kurrentdb store closed: %w", eventstore.ErrUnavailable)
	errClientDead = fmt.Errorf("the KurrentDB client closed itself after a failed discovery: %w", eventstore.ErrUnavailable)
	errTimeout    = fmt.Errorf("KurrentDB did not answer in time: %w", eventstore.ErrUnavailable)
)

// esdbCode returns the client's error code. errors.As, not esdb.FromError:
// the client wraps some of its errors with %w (AppendToStream's "could not
// construct append operation"), which FromError reports as Unknown.
func esdbCode(err error) (esdb.ErrorCode, bool) {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}

func hasCode(err error, code esdb.ErrorCode) bool {
	c, ok := esdbCode(err)
	return ok && c == code
}

// clientDead reports an error after which the client is closed for good:
// ErrorCodeConnectionClosed, or the failed discovery that closed it (whose
// code is the last discovery error's, typically Unavailable).
func clientDead(err error) bool {
	return hasCode(err, esdb.ErrorCodeConnectionClosed) ||
		strings.Contains(err.Error(), "maximum discovery attempt count reached")
}

// transportDown reports an error of an unreachable or unready server:
// the client's Unavailable, or a raw gRPC Unavailable (errors while opening
// a read are not mapped by the client).
func transportDown(err error) bool {
	return hasCode(err, esdb.ErrorUnavailable) || status.Code(err) == codes.Unavailable
}

// invalidArgument reports the server refusing a request as malformed:
// InvalidArgument (maximum append size exceeded, a $all read from a
// position that is not a record's, …), which v4 reports as ErrorCodeUnknown
// wrapping the gRPC status.
func invalidArgument(err error) bool { return status.Code(err) == codes.InvalidArgument }

// portErr maps an error of the client to the port's errors, wrapping both
// so that callers can branch with errors.Is and still see the cause.
// notFound is what a missing or deleted stream means for the operation.
func (s *Store) portErr(ctx context.Context, op string, err error, notFound error) error {
	switch {
	case s.closed.Load():
		return fmt.Errorf("%s: %w", op, errClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", op, ctx.Err())
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, eventstore.ErrInvalidArgument),
		errors.Is(err, eventstore.ErrStreamNotFound), errors.Is(err, eventstore.ErrWrongExpectedVersion):
		return fmt.Errorf("%s: %w", op, err)
	}
	code, _ := esdbCode(err)
	switch {
	case code == esdb.ErrorCodeResourceNotFound || code == esdb.ErrorCodeStreamDeleted:
		return fmt.Errorf("%s: %w: %w", op, err, notFound)
	case invalidArgument(err):
		return fmt.Errorf("%s: %w: %w", op, err, eventstore.ErrInvalidArgument)
	case code == esdb.ErrorCodeAccessDenied || code == esdb.ErrorCodeUnauthenticated:
		// A configuration problem, not the request's: retryable once the
		// credentials or ACLs are fixed, so the webhook answers 503 and
		// Twilio retries rather than losing the event.
		s.log.Error("KurrentDB refused the credentials; check the connection string and the $all ACL", "op", op, "err", err)
		return fmt.Errorf("%s: %w: %w", op, err, eventstore.ErrUnavailable)
	default:
		// Transport loss, Unavailable, NotLeader after retries, deadlines,
		// Aborted (server timeouts), ConnectionClosed, and anything
		// unclassified: the outcome of an append is unknown, and retrying it
		// is safe since appends are exactly-once.
		return fmt.Errorf("%s: %w: %w", op, err, eventstore.ErrUnavailable)
	}
}
