// Package command is the gRPC adapter of CallCommandService: it records a
// command as an event first (so its effect shows at once and survives a
// crash), then carries it out through Twilio's REST API and records the
// outcome.
//
// Choices the contract leaves open:
//   - A malformed call_sid, an empty or over-long request_id or
//     requested_by is INVALID_ARGUMENT. A call callledger has never heard
//     of may still be hung up: inbound calls send nothing until they end.
//   - end_call without REST credentials for the call's account is
//     FAILED_PRECONDITION, and nothing is recorded.
//   - The Status sent is decided from the read model: canceled for a call
//     still queued, initiated or ringing, completed otherwise (also for a
//     call whose status is unknown, the usual case of an inbound call).
//   - A retry with a request_id already recorded answers the original
//     request. If no outcome was recorded (a crash between the two
//     appends) or the recorded one is a failure, the update is sent again:
//     ending a call twice is harmless, and Twilio refuses the second with
//     error 21220, which the fold ranks below the success.
//   - The REST update runs without the client's cancellation (bounded by
//     the REST timeout), so that an outcome is always recorded once sent.
package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	api "github.com/twilio/twilio-go/rest/api/v2010"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/services/rpcstatus"
	"github.com/callledger/callledger/twilio/rest"
)

// Store is the part of the event store the service uses.
type Store interface {
	Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error)
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error)
}

// Calls is the part of the call-state read model the service reads to
// choose the Status to send and the account to send it with.
type Calls interface {
	Tree(ctx context.Context, sid string) (*callledgerv1.Call, []*callledgerv1.Call, eventstore.Position, error)
}

// Twilio is the part of Twilio's REST API the service uses; *rest.Client
// implements it. Errors are *rest.Error when Twilio answered.
type Twilio interface {
	// Account resolves the account to act for ("" when the call's account
	// is unknown), or fails with rest.ErrUnknownAccount.
	Account(accountSid string) (string, error)
	UpdateCallStatus(ctx context.Context, accountSid, callSid, status string) (*api.ApiV2010Call, error)
}

// Config wires a Server.
type Config struct {
	// Store is the event log; required.
	Store Store
	// Calls is the read model; required.
	Calls Calls
	// Twilio ends calls; nil disables end_call (FAILED_PRECONDITION).
	Twilio Twilio
	// Logger; default discard.
	Logger *slog.Logger
	// Now is the clock of requested_at; default time.Now.
	Now func() time.Time
}

// Server implements callledgerv1.CallCommandServiceServer.
type Server struct {
	callledgerv1.UnimplementedCallCommandServiceServer

	store  Store
	calls  Calls
	twilio Twilio
	log    *slog.Logger
	errs   rpcstatus.Mapper
	now    func() time.Time
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger.With("component", "command")
	// A retry is safe only with the same request_id: a new one would
	// record a second request.
	errs := rpcstatus.New(log, "retry with the same request_id")
	return &Server{store: cfg.Store, calls: cfg.Calls, twilio: cfg.Twilio, log: log, errs: errs, now: cfg.Now}, nil
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	callledgerv1.RegisterCallCommandServiceServer(g, s)
}

// Event-ID kinds of the events this service records.
const (
	kindHangupRequest = "hangup-request"
	kindHangupOutcome = "hangup-outcome"
)

// maxFieldLen bounds request_id and requested_by.
const maxFieldLen = 128

// RequestHangup records a hang-up request and, with end_call, ends the
// call through Twilio and records the outcome.
func (s *Server) RequestHangup(ctx context.Context, req *callledgerv1.RequestHangupRequest) (*callledgerv1.RequestHangupResponse, error) {
	sid := req.GetCallSid()
	if !eventcodec.ValidCallSid(sid) {
		return nil, invalid("call_sid %.40q is not a CallSid (CA followed by 32 lowercase hex digits)", sid)
	}
	if err := printable("request_id", req.GetRequestId()); err != nil {
		return nil, err
	}
	if err := printable("requested_by", req.GetRequestedBy()); err != nil {
		return nil, err
	}
	target, err := s.target(ctx, sid, req.GetEndCall())
	if err != nil {
		return nil, err
	}

	now := s.now()
	ev := &callledgerv1.Event{
		EventId:    eventcodec.EventID(kindHangupRequest, []byte(sid+"\x00"+req.GetRequestId())).String(),
		CallSid:    sid,
		Source:     callledgerv1.Source_SOURCE_HANGUP_REQUEST,
		ReceivedAt: timestamppb.New(now),
		Body: &callledgerv1.Event_HangupRequested{HangupRequested: &callledgerv1.HangupRequested{
			RequestId: req.GetRequestId(), RequestedBy: req.GetRequestedBy(), EndCall: req.GetEndCall(),
		}},
	}
	res, err := s.append(ctx, sid, ev)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	resp := &callledgerv1.RequestHangupResponse{
		Position: uint64(res.Position),
		HangupRequest: &callledgerv1.HangupRequest{
			RequestId: req.GetRequestId(), RequestedBy: req.GetRequestedBy(), RequestedAt: ev.GetReceivedAt(),
			EndCall: req.GetEndCall(), Outcome: callledgerv1.HangupOutcome_HANGUP_OUTCOME_PENDING,
		},
		Duplicate: len(res.Duplicates) > 0,
	}
	if resp.Duplicate {
		sent, err := s.recall(ctx, sid, req.GetRequestId(), resp)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		if sent || !resp.GetHangupRequest().GetEndCall() {
			return resp, nil
		}
		if target == nil { // the original asked to end the call, the retry did not
			if target, err = s.target(ctx, sid, true); err != nil {
				return nil, err
			}
		}
	}
	if !resp.GetHangupRequest().GetEndCall() {
		return resp, nil
	}
	// Once Twilio may have been asked, the outcome must be recorded even
	// if the client goes away.
	octx := context.WithoutCancel(ctx)
	outcome := s.end(octx, sid, req.GetRequestId(), target)
	ores, err := s.append(octx, sid, outcome)
	if err != nil {
		return nil, s.fail(ctx, fmt.Errorf("record the outcome of hang-up %s of %s: %w", req.GetRequestId(), sid, err))
	}
	resp.OutcomePosition = uint64(ores.Position)
	applyOutcome(resp.GetHangupRequest(), outcome)
	return resp, nil
}

// target is how to end a call: with which account, to which Status.
type target struct {
	account string
	status  string
}

// target decides, from the read model, the account and Status of the REST
// update; nil when the call is not to be ended.
func (s *Server) target(ctx context.Context, sid string, endCall bool) (*target, error) {
	if !endCall {
		return nil, nil
	}
	if s.twilio == nil {
		return nil, status.Error(codes.FailedPrecondition, "end_call needs Twilio REST credentials, and none are configured")
	}
	call, legs, _, err := s.calls.Tree(ctx, sid)
	if err != nil && !errors.Is(err, callstore.ErrNotFound) {
		return nil, s.fail(ctx, err)
	}
	account, err := s.twilio.Account(callstate.TreeAccount(call, legs))
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "end_call: %v", err)
	}
	t := &target{account: account, status: "completed"}
	switch call.GetStatus() {
	case callledgerv1.CallStatus_CALL_STATUS_QUEUED, callledgerv1.CallStatus_CALL_STATUS_INITIATED, callledgerv1.CallStatus_CALL_STATUS_RINGING:
		t.status = "canceled"
	}
	return t, nil
}

// end sends the REST update and returns the event recording its outcome.
func (s *Server) end(ctx context.Context, sid, requestID string, t *target) *callledgerv1.Event {
	ev := &callledgerv1.Event{CallSid: sid, Source: callledgerv1.Source_SOURCE_HANGUP_REQUEST}
	_, err := s.twilio.UpdateCallStatus(ctx, t.account, sid, t.status)
	ev.ReceivedAt = timestamppb.New(s.now())
	if err == nil {
		ev.EventId = eventcodec.EventID(kindHangupOutcome, []byte(sid+"\x00"+requestID+"\x00sent")).String()
		ev.Body = &callledgerv1.Event_HangupSent{HangupSent: &callledgerv1.HangupSent{RequestId: requestID, Status: t.status, AccountSid: t.account}}
		s.log.InfoContext(ctx, "hang-up sent", "call_sid", sid, "request_id", requestID, "status", t.status)
		return ev
	}
	f := &callledgerv1.HangupFailed{RequestId: requestID, Status: t.status, AccountSid: t.account, ErrorMessage: err.Error()}
	var re *rest.Error
	if errors.As(err, &re) {
		f.ErrorCode, f.HttpStatus, f.ErrorMessage = int32(re.Code), int32(re.Status), re.Message
	}
	ev.EventId = eventcodec.EventID(kindHangupOutcome, fmt.Appendf(nil, "%s\x00%s\x00failed\x00%d\x00%d", sid, requestID, f.HttpStatus, f.ErrorCode)).String()
	ev.Body = &callledgerv1.Event_HangupFailed{HangupFailed: f}
	s.log.WarnContext(ctx, "hang-up failed", "call_sid", sid, "request_id", requestID, "status", t.status, "err", err)
	return ev
}

// recall fills resp from the events of an earlier request with the same
// request_id, and reports whether its update was sent.
func (s *Server) recall(ctx context.Context, sid, requestID string, resp *callledgerv1.RequestHangupResponse) (bool, error) {
	recs, err := s.store.ReadStream(ctx, eventcodec.CallStream(sid), 0, 100_000)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", eventcodec.CallStream(sid), err)
	}
	sent := false
	for _, rec := range recs {
		ev, err := eventcodec.DecodeFacts(rec)
		if err != nil {
			continue
		}
		switch b := ev.GetBody().(type) {
		case *callledgerv1.Event_HangupRequested:
			if b.HangupRequested.GetRequestId() == requestID {
				h := resp.GetHangupRequest()
				h.RequestedBy, h.EndCall, h.RequestedAt = b.HangupRequested.GetRequestedBy(), b.HangupRequested.GetEndCall(), ev.GetReceivedAt()
			}
		case *callledgerv1.Event_HangupSent:
			if b.HangupSent.GetRequestId() == requestID {
				sent = true
				applyOutcome(resp.GetHangupRequest(), ev)
				resp.OutcomePosition = uint64(rec.Position)
			}
		case *callledgerv1.Event_HangupFailed:
			if b.HangupFailed.GetRequestId() == requestID && !sent {
				applyOutcome(resp.GetHangupRequest(), ev)
				resp.OutcomePosition = uint64(rec.Position)
			}
		}
	}
	return sent, nil
}

// applyOutcome copies an outcome event into a request view, as the fold
// does.
func applyOutcome(h *callledgerv1.HangupRequest, ev *callledgerv1.Event) {
	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_HangupSent:
		h.Outcome, h.SentStatus, h.ErrorCode, h.ErrorMessage = callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, b.HangupSent.GetStatus(), 0, ""
	case *callledgerv1.Event_HangupFailed:
		h.Outcome, h.SentStatus = callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED, b.HangupFailed.GetStatus()
		h.ErrorCode, h.ErrorMessage = b.HangupFailed.GetErrorCode(), b.HangupFailed.GetErrorMessage()
	}
}

func (s *Server) append(ctx context.Context, sid string, ev *callledgerv1.Event) (eventstore.AppendResult, error) {
	data, err := eventcodec.Encode(ev)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	res, err := s.store.Append(ctx, eventcodec.CallStream(sid), eventstore.Any(), data)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s to %s: %w", data.Type, eventcodec.CallStream(sid), err)
	}
	return res, nil
}

func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// printable checks a required field of 1 to maxFieldLen printable ASCII
// characters: it goes into event IDs and logs.
func printable(name, v string) error {
	if v == "" || len(v) > maxFieldLen {
		return invalid("%s must hold 1 to %d characters", name, maxFieldLen)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return invalid("%s must be printable ASCII", name)
		}
	}
	return nil
}

// fail answers an error no handler step explained, as every service does
// (see rpcstatus): the statuses RequestHangup decides itself are returned
// directly, never through here.
func (s *Server) fail(ctx context.Context, err error) error {
	return s.errs.Map(ctx, "RequestHangup", err)
}
