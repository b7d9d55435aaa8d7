package callstate

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

// View derives the Call a client sees from a stored record.
func View(r *statev1.CallRecord) *callledgerv1.Call {
	c := &callledgerv1.Call{
		CallSid:       r.GetCallSid(),
		ParentCallSid: r.GetParent().GetCallSid(),
		ChildCallSids: r.GetChildCallSids(),
		RootCallSid:   r.GetRootCallSid(),
		Placeholder:   len(r.GetOwnEventIds()) == 0,
		InitiatedAt:   r.GetInitiatedAt(),
		RingingAt:     r.GetRingingAt(),
		AnsweredAt:    r.GetAnsweredAt(),
		AnsweredBy:    r.GetAnsweredBy().GetValue(),
		EventCount:    int64(len(r.GetOwnEventIds())),
		LastPosition:  r.GetLastPosition(),
		StartTime:     r.GetStartTime(),
		Dial:          r.GetLastDial().GetOutcome(),
	}
	if c.RootCallSid == "" {
		c.RootCallSid = c.CallSid
	}
	if id := r.GetIdentity(); id != nil {
		c.AccountSid, c.Direction, c.From, c.To = id.GetAccountSid(), id.GetDirection(), id.GetFrom(), id.GetTo()
	}
	switch {
	case r.GetTerminal() != nil:
		t := r.GetTerminal()
		c.Status, c.Terminal, c.StatusSource = t.GetStatus(), true, t.GetSource()
		c.DurationSeconds, c.SipResponseCode, c.EndedAt = t.DurationSeconds, t.SipResponseCode, t.GetAt()
	case r.GetNonterminal() != nil:
		c.Status, c.StatusSource = r.GetNonterminal().GetStatus(), r.GetNonterminal().GetSource()
	}
	for _, rec := range r.GetRecordings() {
		c.Recordings = append(c.Recordings, rec.GetRecording())
	}
	if h := r.GetHangup(); h != nil {
		c.HangupRequest = hangupView(r, h.GetRequest())
		c.Ending = !c.Terminal
	}
	c.Reconciliation = r.GetReconciled().GetReconciliation()
	return c
}

// hangupView is the request with the REST outcome recorded for it, if any.
// The stored request is not modified: views share the record's messages.
func hangupView(r *statev1.CallRecord, req *callledgerv1.HangupRequest) *callledgerv1.HangupRequest {
	out := proto.CloneOf(req)
	out.Outcome = callledgerv1.HangupOutcome_HANGUP_OUTCOME_PENDING
	if res := HangupResult(r, req.GetRequestId()); res != nil {
		out.Outcome, out.ErrorCode, out.ErrorMessage, out.SentStatus = res.GetOutcome(), res.GetErrorCode(), res.GetErrorMessage(), res.GetStatus()
	}
	return out
}

// HangupResult is the REST outcome of hang-up request requestID that the
// fold kept in r (its key names the event that reported it), nil while
// none is recorded.
func HangupResult(r *statev1.CallRecord, requestID string) *statev1.HangupResult {
	i, found := slices.BinarySearchFunc(r.GetHangupResults(), requestID, func(x *statev1.HangupResult, id string) int {
		return strings.Compare(x.GetRequestId(), id)
	})
	if !found {
		return nil
	}
	return r.GetHangupResults()[i]
}

// Active reports whether a call is under way: its status is known and not
// terminal.
func Active(c *callledgerv1.Call) bool {
	return !c.GetTerminal() && c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED
}
