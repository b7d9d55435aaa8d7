// Package command is the gRPC adapter of CallCommandService: it turns a
// RequestHangup call into a hangup.Request, carries it out with the
// hang-up command (package hangup, which holds the rules), and maps the
// answer and the refusals onto the contract: ErrInvalid is
// INVALID_ARGUMENT, ErrCannotEnd is FAILED_PRECONDITION, and the log's or
// read model's failures are answered as in every service (rpcstatus),
// with the hint to retry with the same request_id.
//
// The authenticated principal is the audit trail: when the server
// authenticates calls, it is recorded as requested_by, and a request whose
// requested_by names someone else is refused (INVALID_ARGUMENT) rather
// than kept beside it, so that a recorded requester is always one the
// server vouches for. requested_by may be left empty. Without
// authentication, the client's requested_by is recorded and required.
package command

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/hangup"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/services/rpcstatus"
)

// Config wires a Server.
type Config struct {
	// Store is the event log; required.
	Store hangup.Log
	// Calls is the read model; required.
	Calls callstate.TreeReader
	// Twilio ends calls; nil disables end_call (FAILED_PRECONDITION).
	Twilio hangup.Twilio
	// Logger; default discard.
	Logger *slog.Logger
	// Now is the clock of requested_at; default time.Now.
	Now func() time.Time
	// Principal returns the authenticated caller of a call, and false
	// when calls are not authenticated; nil: never authenticated.
	Principal func(ctx context.Context) (string, bool)
	// Personal seals the personal fields of the events recorded and opens
	// them when read back (hangup.Config.Personal); nil: in the clear.
	Personal hangup.Personal
}

// Server implements callledgerv1.CallCommandServiceServer.
type Server struct {
	callledgerv1.UnimplementedCallCommandServiceServer

	hangup    *hangup.Handler
	errs      rpcstatus.Mapper
	principal func(ctx context.Context) (string, bool)
}

var _ callledgerv1.CallCommandServiceServer = (*Server)(nil)

// New validates cfg and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Calls == nil {
		return nil, errors.New("command: Store and Calls are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("component", "command")
	h, err := hangup.New(hangup.Config{Log: cfg.Store, Calls: cfg.Calls, Twilio: cfg.Twilio, Logger: log, Now: cfg.Now, Personal: cfg.Personal})
	if err != nil {
		return nil, err
	}
	// A retry is safe only with the same request_id: a new one would
	// record a second request.
	if cfg.Principal == nil {
		cfg.Principal = func(context.Context) (string, bool) { return "", false }
	}
	return &Server{hangup: h, errs: rpcstatus.New(log, "retry with the same request_id"), principal: cfg.Principal}, nil
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	callledgerv1.RegisterCallCommandServiceServer(g, s)
}

// RequestHangup records a hang-up request and, with end_call, ends the
// call through Twilio and records the outcome.
func (s *Server) RequestHangup(ctx context.Context, req *callledgerv1.RequestHangupRequest) (*callledgerv1.RequestHangupResponse, error) {
	by := req.GetRequestedBy()
	if p, ok := s.principal(ctx); ok {
		if by != "" && by != p {
			return nil, status.Errorf(codes.InvalidArgument,
				"requested_by %.40q differs from the authenticated principal %q, which is what is recorded: leave requested_by empty", by, p)
		}
		by = p
	}
	res, err := s.hangup.Handle(ctx, hangup.Request{
		CallSid:     req.GetCallSid(),
		RequestID:   req.GetRequestId(),
		RequestedBy: by,
		EndCall:     req.GetEndCall(),
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return &callledgerv1.RequestHangupResponse{
		Position:        uint64(res.Position),
		OutcomePosition: uint64(res.OutcomePosition),
		HangupRequest:   res.Request,
		Duplicate:       res.Duplicate,
	}, nil
}

// fail answers an error of the hang-up command: its refusals with their
// own text, which explains them, anything else as every service does.
func (s *Server) fail(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, hangup.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, hangup.ErrCannotEnd):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return s.errs.Map(ctx, "RequestHangup", err)
}
