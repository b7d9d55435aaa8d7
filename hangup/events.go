package hangup

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/twilio/rest"
)

// The events of the command. Their IDs are part of the storage format:
// a retry must map to the IDs already stored (eventcodec pins them).

// requested is the HangupRequested event of r, received at.
func requested(r Request, at time.Time) *callledgerv1.Event {
	return &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.IDKindHangupRequest, []byte(r.CallSid+"\x00"+r.RequestID)).String(),
		CallSid:    r.CallSid,
		Source:     callledgerv1.Source_SOURCE_HANGUP_REQUEST,
		ReceivedAt: timestamppb.New(at),
		Body: &callledgerv1.Event_HangupRequested{HangupRequested: &callledgerv1.HangupRequested{
			RequestId: r.RequestID, RequestedBy: r.RequestedBy, EndCall: r.EndCall,
		}},
	}
}

// sent is the HangupSent event of a REST update Twilio accepted. One per
// request: sending it again changes nothing.
func sent(sid, requestID string, t *target, at time.Time) *callledgerv1.Event {
	return &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.IDKindHangupOutcome, []byte(sid+"\x00"+requestID+"\x00sent")).String(),
		CallSid:    sid,
		Source:     callledgerv1.Source_SOURCE_HANGUP_REQUEST,
		ReceivedAt: timestamppb.New(at),
		Body: &callledgerv1.Event_HangupSent{HangupSent: &callledgerv1.HangupSent{
			RequestId: requestID, Status: t.status, AccountSid: t.account,
		}},
	}
}

// failed is the HangupFailed event of a REST update that failed with err.
// One per request and answer (HTTP status and Twilio error code). Its
// message is Twilio's, or a short reason: it is stored for good and shown
// to clients, so it never quotes an error of the transport (which names
// URLs and addresses); the log has those.
func failed(sid, requestID string, t *target, err error, at time.Time) *callledgerv1.Event {
	f := &callledgerv1.HangupFailed{RequestId: requestID, Status: t.status, AccountSid: t.account, ErrorMessage: "the REST update failed"}
	var re *rest.Error
	if errors.As(err, &re) {
		f.ErrorCode, f.HttpStatus, f.ErrorMessage = int32(re.Code), int32(re.Status), re.Message
	}
	return &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.IDKindHangupOutcome, fmt.Appendf(nil, "%s\x00%s\x00failed\x00%d\x00%d", sid, requestID, f.HttpStatus, f.ErrorCode)).String(),
		CallSid:    sid,
		Source:     callledgerv1.Source_SOURCE_HANGUP_REQUEST,
		ReceivedAt: timestamppb.New(at),
		Body:       &callledgerv1.Event_HangupFailed{HangupFailed: f},
	}
}

// requestIDOf is the request ID of an event of the command, "" for any
// other event.
func requestIDOf(ev *callledgerv1.Event) string {
	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_HangupRequested:
		return b.HangupRequested.GetRequestId()
	case *callledgerv1.Event_HangupSent:
		return b.HangupSent.GetRequestId()
	case *callledgerv1.Event_HangupFailed:
		return b.HangupFailed.GetRequestId()
	}
	return ""
}

// folded is one request as the call-state fold sees it: the request's own
// events (none of another request) folded into a record of the call, so
// that the record's hang-up is this request and its outcome is the one
// the fold ranks first, as the read model will show it.
type folded struct {
	sid, requestID string
	mem            *callstate.Memory
	// positions maps the events folded (by callstate.EventKey) to their
	// log positions, to tell where the winning outcome is.
	positions map[string]eventstore.Position
}

func newFolded(sid, requestID string) *folded {
	return &folded{sid: sid, requestID: requestID, mem: callstate.NewMemory(), positions: map[string]eventstore.Position{}}
}

// apply folds ev, an event of the request found at pos.
func (f *folded) apply(ev *callledgerv1.Event, pos eventstore.Position) error {
	if err := callstate.Apply(f.mem, ev, uint64(pos)); err != nil {
		return fmt.Errorf("fold hang-up %s of %s: %w", f.requestID, f.sid, err)
	}
	f.positions[string(callstate.EventKey(ev))] = pos
	return nil
}

// requested reports whether the request's own event was folded.
func (f *folded) requested() bool { return f.view() != nil }

// view is the request as the read model shows it; nil before its event
// was folded.
func (f *folded) view() *callledgerv1.HangupRequest {
	rec, _ := f.mem.Get(f.sid) // a Memory never fails
	if rec == nil {
		return nil
	}
	return callstate.View(rec).GetHangupRequest()
}

// result answers the request, whose event is at pos.
func (f *folded) result(pos eventstore.Position, dup bool) Result {
	rec, _ := f.mem.Get(f.sid)
	out := Result{Position: pos, Request: f.view(), Duplicate: dup}
	if res := callstate.HangupResult(rec, f.requestID); res != nil {
		out.OutcomePosition = f.positions[string(res.GetKey().GetEventId())]
	}
	return out
}
