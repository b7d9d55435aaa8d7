// Package hangup is the hang-up command: a client asks for a call to be
// hung up and, with end_call, callledger ends it through Twilio's REST API.
// The request is recorded as an event first (so its effect shows at once
// and survives a crash), then carried out, then its outcome is recorded.
// The package owns the events it writes (HangupRequested, HangupSent,
// HangupFailed), and answers with what the call-state fold makes of them,
// through the fold's own code, so a response and the read model never
// disagree. Adapters (the gRPC service in services/command) turn its
// refusals into their own codes.
//
// Rules:
//   - A malformed CallSid, or an empty or over-long request ID or
//     requester, is ErrInvalid. A call callledger has never heard of may
//     still be hung up: inbound calls send nothing until they end.
//   - end_call without REST credentials for the call's account is
//     ErrCannotEnd, and nothing is recorded.
//   - The Status sent is decided from the read model: canceled for a call
//     still queued, initiated or ringing, completed otherwise (also for a
//     call whose status is unknown, the usual case of an inbound call).
//   - A retry with a request ID already recorded answers the original
//     request. If no outcome was recorded (a crash between the two
//     appends) or the recorded one is a failure, the update is sent again:
//     ending a call twice is harmless, and Twilio refuses the second with
//     error 21220, which the fold ranks below the success.
//   - The REST update runs without the caller's cancellation (bounded by
//     the REST timeout), so that an outcome is always recorded once sent.
package hangup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	api "github.com/twilio/twilio-go/rest/api/v2010"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/seal"
)

// Log is the part of the event log the command writes and reads back;
// every eventstore.Store implements it.
type Log interface {
	Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error)
	ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error)
}

// Twilio is the part of Twilio's REST API the command uses; *rest.Client
// implements it. Errors are *rest.Error when Twilio answered.
type Twilio interface {
	// Account resolves the account to act for ("" when the call's account
	// is unknown), or fails with rest.ErrUnknownAccount.
	Account(accountSid string) (string, error)
	UpdateCallStatus(ctx context.Context, accountSid, callSid, status string) (*api.ApiV2010Call, error)
}

// Refusals: errors.Is tells them apart; their text explains the refusal
// to the client. Nothing is recorded for a refused request.
var (
	// ErrInvalid: the request is malformed and can never succeed.
	ErrInvalid = errors.New("invalid hang-up request")
	// ErrCannotEnd: end_call cannot be carried out (no REST credentials,
	// or none for the call's account).
	ErrCannotEnd = errors.New("cannot end the call")
)

// refusal is a refusal of kind ErrInvalid or ErrCannotEnd with the text a
// client sees.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Request asks for a call to be hung up.
type Request struct {
	// CallSid is the call to hang up.
	CallSid string
	// RequestID names the request: a retry with the same ID answers the
	// original instead of recording a second request.
	RequestID string
	// RequestedBy is who asks, recorded with the request: the caller's
	// identity as the adapter knows it (for the gRPC service, the
	// authenticated principal, or the client's requested_by on a server
	// that does not authenticate calls).
	RequestedBy string
	// EndCall asks for the call to be ended through Twilio, not only
	// marked as ending.
	EndCall bool
}

// Result is the answer to a Request.
type Result struct {
	// Position is the log position of the request's event (the
	// original's, for a retry).
	Position eventstore.Position
	// OutcomePosition is the log position of the outcome Request shows; 0
	// while none is recorded.
	OutcomePosition eventstore.Position
	// Request is the request with its outcome as the call-state fold
	// ranks it: what GetCall shows once the read model has applied both
	// positions (unless a later request of the call replaced it there).
	Request *callledgerv1.HangupRequest
	// Duplicate: the request ID was already recorded, and Request is the
	// original request.
	Duplicate bool
}

// Config wires a Handler.
type Config struct {
	// Log is the event log; required.
	Log Log
	// Calls is the call-state read model; required.
	Calls callstate.TreeReader
	// Twilio ends calls; nil refuses end_call with ErrCannotEnd.
	Twilio Twilio
	// Logger; default discard.
	Logger *slog.Logger
	// Now is the clock of the recorded events; default time.Now.
	Now func() time.Time
	// Personal seals the personal fields of the events written (a
	// failure's error message quotes numbers) and opens them when a
	// retry reads them back (docs/PRIVACY.md); nil: stored in the clear.
	Personal Personal
}

// Personal seals and opens the personal fields of events; *seal.Events is
// one.
type Personal interface {
	Seal(ctx context.Context, ev *callledgerv1.Event) (*callledgerv1.Event, error)
	Open(ctx context.Context, ev *callledgerv1.Event, parts ...seal.Part) (seal.Opened, error)
}

// Handler carries out hang-up requests.
type Handler struct {
	log    Log
	calls  callstate.TreeReader
	twilio Twilio
	logger *slog.Logger
	now    func() time.Time
	// personal is nil when events are stored in the clear.
	personal Personal
	// readPage is how many events a read of a call's stream asks for at
	// once; tests make it small.
	readPage int
}

// New validates cfg and builds the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Log == nil || cfg.Calls == nil {
		return nil, errors.New("hangup: Log and Calls are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{log: cfg.Log, calls: cfg.Calls, twilio: cfg.Twilio, logger: cfg.Logger, now: cfg.Now, personal: cfg.Personal, readPage: 1000}, nil
}

// maxFieldLen bounds the request ID and the requester.
const maxFieldLen = 128

// Handle records a hang-up request and, with EndCall, ends the call
// through Twilio and records the outcome. Errors other than refusals are
// the log's or the read model's, and the request may be retried with the
// same ID.
func (h *Handler) Handle(ctx context.Context, r Request) (Result, error) {
	if err := r.validate(); err != nil {
		return Result{}, err
	}
	target, err := h.target(ctx, r.CallSid, r.EndCall)
	if err != nil {
		return Result{}, err
	}
	ev := requested(r, h.now())
	res, err := h.append(ctx, ev)
	if err != nil {
		return Result{}, err
	}
	f := newFolded(r.CallSid, r.RequestID)
	dup := len(res.Duplicates) > 0
	if dup {
		if err := h.recall(ctx, f); err != nil {
			return Result{}, err
		}
	}
	if !f.requested() { // always, unless the original cannot be read back
		if err := f.apply(ev, res.Position); err != nil {
			return Result{}, err
		}
	}
	view := f.view()
	// Nothing (more) to do: not asked to end the call, or a retry of a
	// request that ended it.
	if !view.GetEndCall() || view.GetOutcome() == callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT {
		return f.result(res.Position, dup), nil
	}
	if target == nil { // the original asked to end the call, the retry did not
		if target, err = h.target(ctx, r.CallSid, true); err != nil {
			return Result{}, err
		}
	}
	// Once Twilio may have been asked, the outcome must be recorded even
	// if the caller goes away.
	octx := context.WithoutCancel(ctx)
	outcome := h.end(octx, r.CallSid, r.RequestID, target)
	ores, err := h.append(octx, outcome)
	if err != nil {
		return Result{}, fmt.Errorf("record the outcome of hang-up %s of %s: %w", r.RequestID, r.CallSid, err)
	}
	if err := f.apply(outcome, ores.Position); err != nil {
		return Result{}, err
	}
	return f.result(res.Position, dup), nil
}

func (r Request) validate() error {
	if !eventcodec.ValidCallSid(r.CallSid) {
		return refuse(ErrInvalid, "call_sid %.40q is not a CallSid (CA followed by 32 lowercase hex digits)", r.CallSid)
	}
	if err := printable("request_id", r.RequestID); err != nil {
		return err
	}
	return printable("requested_by", r.RequestedBy)
}

// printable checks a required field of 1 to maxFieldLen printable ASCII
// characters: it goes into event IDs and logs.
func printable(name, v string) error {
	if v == "" || len(v) > maxFieldLen {
		return refuse(ErrInvalid, "%s must hold 1 to %d characters", name, maxFieldLen)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return refuse(ErrInvalid, "%s must be printable ASCII", name)
		}
	}
	return nil
}

// target is how to end a call: with which account, to which Status.
type target struct {
	account string
	status  string
}

// target decides, from the read model, the account and Status of the REST
// update; nil when the call is not to be ended.
func (h *Handler) target(ctx context.Context, sid string, endCall bool) (*target, error) {
	if !endCall {
		return nil, nil
	}
	if h.twilio == nil {
		return nil, refuse(ErrCannotEnd, "end_call needs Twilio REST credentials, and none are configured")
	}
	tree, err := h.calls.Tree(ctx, sid)
	if err != nil && !errors.Is(err, callstate.ErrNotFound) {
		return nil, fmt.Errorf("read the tree of %s: %w", sid, err)
	}
	account, err := h.twilio.Account(tree.Account())
	if err != nil {
		return nil, refuse(ErrCannotEnd, "end_call: %v", err)
	}
	t := &target{account: account, status: "completed"}
	switch tree.Call.GetStatus() {
	case callledgerv1.CallStatus_CALL_STATUS_QUEUED, callledgerv1.CallStatus_CALL_STATUS_INITIATED, callledgerv1.CallStatus_CALL_STATUS_RINGING:
		t.status = "canceled"
	}
	return t, nil
}

// end sends the REST update and returns the event recording its outcome.
func (h *Handler) end(ctx context.Context, sid, requestID string, t *target) *callledgerv1.Event {
	_, err := h.twilio.UpdateCallStatus(ctx, t.account, sid, t.status)
	at := h.now()
	if err == nil {
		h.logger.InfoContext(ctx, "hang-up sent", "call_sid", sid, "request_id", requestID, "status", t.status)
		return sent(sid, requestID, t, at)
	}
	h.logger.WarnContext(ctx, "hang-up failed", "call_sid", sid, "request_id", requestID, "status", t.status, "err", err)
	return failed(sid, requestID, t, err, at)
}

// recall folds the recorded events of f's request, reading the call's
// stream page by page.
func (h *Handler) recall(ctx context.Context, f *folded) error {
	stream := eventcodec.CallStream(f.sid)
	for from := uint64(0); ; {
		recs, err := h.log.ReadStream(ctx, stream, from, h.readPage)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		for _, rec := range recs {
			ev, err := eventcodec.DecodeFacts(rec)
			if err != nil || requestIDOf(ev) != f.requestID {
				continue
			}
			if h.personal != nil {
				// An erased call's failure shows without its message.
				if _, err := h.personal.Open(ctx, ev, seal.Facts); err != nil {
					return fmt.Errorf("read %s: %w", stream, err)
				}
			}
			if err := f.apply(ev, rec.Position); err != nil {
				return err
			}
		}
		if len(recs) < h.readPage {
			return nil
		}
		from = recs[len(recs)-1].Revision + 1
	}
}

func (h *Handler) append(ctx context.Context, ev *callledgerv1.Event) (eventstore.AppendResult, error) {
	if h.personal != nil {
		var err error
		if ev, err = h.personal.Seal(ctx, ev); err != nil {
			return eventstore.AppendResult{}, err
		}
	}
	data, err := eventcodec.Encode(ev)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	stream := eventcodec.CallStream(ev.GetCallSid())
	res, err := h.log.Append(ctx, stream, eventstore.Any(), data)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s to %s: %w", data.Type, stream, err)
	}
	return res, nil
}
