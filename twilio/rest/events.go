package rest

import (
	"encoding/json"
	"strconv"
	"time"

	api "github.com/twilio/twilio-go/rest/api/v2010"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/twilio"
)

// Reconciled turns a Call resource, read at fetchedAt, into the
// CallReconciled event of its call's stream. Its ID covers what the
// resource says (not when it was read), so reading an unchanged call again
// stores nothing new. It returns nil when the resource names no valid
// CallSid.
func Reconciled(c *api.ApiV2010Call, fetchedAt time.Time) *callledgerv1.Event {
	sid := str(c.Sid)
	if !eventcodec.ValidCallSid(sid) {
		return nil
	}
	r := &callledgerv1.CallReconciled{
		Status:        twilio.ParseCallStatus(str(c.Status)),
		StatusRaw:     str(c.Status),
		AccountSid:    str(c.AccountSid),
		ParentCallSid: str(c.ParentCallSid),
		Direction:     str(c.Direction),
		From:          str(c.From),
		To:            str(c.To),
		AnsweredBy:    str(c.AnsweredBy),
		StartTime:     timestamp(c.StartTime),
		EndTime:       timestamp(c.EndTime),
	}
	if d, err := strconv.ParseInt(str(c.Duration), 10, 64); err == nil && d >= 0 {
		r.DurationSeconds = &d
	}
	// Re-encoding a decoded struct cannot fail.
	r.Resource, _ = json.Marshal(c)
	return &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.IDKindReconciled, r.Resource).String(),
		CallSid:    sid,
		Source:     callledgerv1.Source_SOURCE_RECONCILIATION,
		ReceivedAt: timestamppb.New(fetchedAt),
		ReportedAt: timestamp(c.DateUpdated),
		Body:       &callledgerv1.Event_CallReconciled{CallReconciled: r},
	}
}

// NotFound is the CallReconciled event recording that Twilio answered 404
// for callSid in accountSid. One is stored per call and account.
func NotFound(accountSid, callSid string, fetchedAt time.Time) *callledgerv1.Event {
	return &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.IDKindReconciled, []byte("not-found\x00"+accountSid+"\x00"+callSid)).String(),
		CallSid:    callSid,
		Source:     callledgerv1.Source_SOURCE_RECONCILIATION,
		ReceivedAt: timestamppb.New(fetchedAt),
		Body:       &callledgerv1.Event_CallReconciled{CallReconciled: &callledgerv1.CallReconciled{NotFound: true, AccountSid: accountSid}},
	}
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// timestamp parses one of the resource's RFC 2822 times; nil when absent
// or unreadable.
func timestamp(p *string) *timestamppb.Timestamp {
	if p == nil || *p == "" {
		return nil
	}
	t, err := twilio.ParseTimestamp(*p)
	if err != nil {
		return nil
	}
	return timestamppb.New(t)
}
