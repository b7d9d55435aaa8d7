package twilio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
)

// Event Streams type prefixes of voice status callbacks: the current one
// and the deprecated "webhook" one, which Event Streams still lets a sink
// subscribe to.
const (
	statusCallbackTypePrefix           = "com.twilio.voice.status-callback.call."
	deprecatedStatusCallbackTypePrefix = "com.twilio.voice.webhook.status-callback.call."
)

// cloudEvent is the envelope of one Event Streams event.
type cloudEvent struct {
	SpecVersion string          `json:"specversion"`
	Type        string          `json:"type"`
	Source      string          `json:"source"`
	ID          string          `json:"id"`
	DataSchema  string          `json:"dataschema"`
	Time        string          `json:"time"`
	Data        json.RawMessage `json:"data"`
}

// voiceData is the data of a voice status-callback event (Voice.WebhookEvent):
// the callback Twilio sent, or tried to send, to the status callback URL.
type voiceData struct {
	Sid       string `json:"sid"`
	Timestamp string `json:"timestamp"`
	Request   struct {
		Method     string                     `json:"method"`
		URL        string                     `json:"url"`
		Parameters map[string]json.RawMessage `json:"parameters"`
	} `json:"request"`
}

// maxCloudEvents bounds the events derived from one delivery. Each event
// carries the whole delivery, so a huge array of tiny elements would cost
// elements × body; Event Streams sends one CloudEvent per array today. A
// larger delivery is quarantined whole, still verbatim.
const maxCloudEvents = 100

// deriveEvents derives one event per CloudEvent of an Event Streams
// delivery. A voice status callback becomes a CallStatusReported whose ID
// is the CloudEvent id (Event Streams redelivers it unchanged, possibly in
// another array); anything else goes to quarantine. Every event carries the
// whole delivery.
func deriveEvents(req *Request) []Derived {
	var elems []json.RawMessage
	if err := json.Unmarshal(req.Body, &elems); err != nil {
		return []Derived{quarantine(KindEvents, req, "body is not a JSON array of CloudEvents: "+err.Error(), nil)}
	}
	switch {
	case len(elems) == 0:
		return []Derived{quarantine(KindEvents, req, "no CloudEvents in the body", nil)}
	case len(elems) > maxCloudEvents:
		return []Derived{quarantine(KindEvents, req,
			fmt.Sprintf("%d CloudEvents in one delivery, more than %d", len(elems), maxCloudEvents), nil)}
	}
	out := make([]Derived, 0, len(elems))
	seen := make(map[string]bool, len(elems))
	for i, elem := range elems {
		d := deriveCloudEvent(req, elem, i)
		key := d.Stream + "/" + d.Event.GetEventId()
		if seen[key] {
			continue // the same CloudEvent twice in one delivery: one fact
		}
		seen[key] = true
		// Each event gets its own request message; they share the body.
		d.Event.Request = verbatim(req)
		out = append(out, d)
	}
	return out
}

// deriveCloudEvent derives the event of the index-th CloudEvent, elem, of a
// delivery, without its verbatim request. A voice status callback (and an
// answering-machine detection) becomes a CallStatusReported, a Voice
// Insights call summary a CallSummaryReported, any other voice event that
// names a call a CallEventReported, each in the stream of its call;
// anything else is quarantined.
func deriveCloudEvent(req *Request, elem json.RawMessage, index int) Derived {
	var ce cloudEvent
	if err := json.Unmarshal(elem, &ce); err != nil {
		return quarantineCloudEvent(req, elem, &ce, index, "not a CloudEvent: "+err.Error(), nil)
	}
	reported := firstTime(ce.Time)
	switch {
	case ce.ID == "":
		return quarantineCloudEvent(req, elem, &ce, index, "no id", reported)
	case statusCallbackType(ce.Type) || strings.HasPrefix(ce.Type, amdTypePrefix):
		return deriveVoiceWebhook(req, elem, &ce, index, reported)
	case strings.HasPrefix(ce.Type, callSummaryTypePrefix):
		return deriveCallSummary(req, elem, &ce, index, reported)
	case strings.HasPrefix(ce.Type, voiceTypePrefix):
		return deriveCallEvent(req, elem, &ce, index, reported)
	}
	return quarantineCloudEvent(req, elem, &ce, index, "type "+strconv.Quote(truncate(ce.Type))+" is not a voice event", reported)
}

// Event Streams types beyond the status callbacks: answering-machine
// detection (a Voice.WebhookEvent like them), Voice Insights call
// summaries, and every voice type.
const (
	amdTypePrefix         = "com.twilio.voice.status-callback.amd."
	callSummaryTypePrefix = "com.twilio.voice.insights.call-summary."
	voiceTypePrefix       = "com.twilio.voice."
)

func statusCallbackType(typ string) bool {
	return strings.HasPrefix(typ, statusCallbackTypePrefix) || strings.HasPrefix(typ, deprecatedStatusCallbackTypePrefix)
}

// cloudEventID is the ID of a CloudEvent filed under a call. A voice
// status callback keeps the ID callledger always gave it, its id alone
// (unique within its call's stream: Twilio publishes a call's status
// callbacks from one source, the call); every other type covers source
// and id, CloudEvents' identity.
func cloudEventID(ce *cloudEvent) string {
	if statusCallbackType(ce.Type) {
		return eventcodec.EventID(eventcodec.IDKindEvents, []byte(ce.ID)).String()
	}
	content := appendField(appendField(nil, ce.Source), ce.ID)
	return eventcodec.EventID(eventcodec.IDKindCloudEvent, content).String()
}

// callEvent is the event of a CloudEvent filed under call sid.
func callEvent(req *Request, elem json.RawMessage, ce *cloudEvent, sid string, source callledgerv1.Source, reported *timestamppb.Timestamp) *callledgerv1.Event {
	return &callledgerv1.Event{
		EventId:    cloudEventID(ce),
		CallSid:    sid,
		Source:     source,
		ReceivedAt: receivedAt(req),
		ReportedAt: reported,
		CloudEvent: envelope(ce, elem),
		Derivation: Derivation,
	}
}

// deriveVoiceWebhook derives a Voice.WebhookEvent: the callback Twilio sent,
// or tried to send, to a status callback URL.
func deriveVoiceWebhook(req *Request, elem json.RawMessage, ce *cloudEvent, index int, reported *timestamppb.Timestamp) Derived {
	data, err := decodeVoiceData(ce.Data)
	if err != nil {
		return quarantineCloudEvent(req, elem, ce, index, "data: "+err.Error(), reported)
	}
	if !eventcodec.ValidCallSid(data.Sid) {
		return quarantineCloudEvent(req, elem, ce, index, "data.sid "+strconv.Quote(truncate(data.Sid))+" is not a CallSid", reported)
	}
	p := fieldsOf(data.parameters())
	if t := reportedAt(&p); t != nil {
		reported = t
	} else if t := firstTime(data.Timestamp, ce.Time); t != nil {
		reported = t
	}
	ev := callEvent(req, elem, ce, data.Sid, callledgerv1.Source_SOURCE_EVENT_STREAMS, reported)
	ev.Body = &callledgerv1.Event_CallStatusReported{CallStatusReported: statusReported(&p)}
	return Derived{Stream: eventcodec.CallStream(data.Sid), Event: ev}
}

// callSummary is the data of a Voice Insights call summary event (what
// callledger reads of it; the CloudEvent keeps the rest).
type callSummary struct {
	CallSid         string                  `json:"call_sid"`
	AccountSid      string                  `json:"account_sid"`
	ParentCallSid   string                  `json:"parent_call_sid"`
	StartTime       string                  `json:"start_time"`
	EndTime         string                  `json:"end_time"`
	Duration        *int64                  `json:"duration"`
	ConnectDuration *int64                  `json:"connect_duration"`
	CallType        string                  `json:"call_type"`
	CallState       string                  `json:"call_state"`
	AnsweredBy      string                  `json:"answered_by"`
	ProcessingState string                  `json:"processing_state"`
	Tags            []string                `json:"tags"`
	From            struct{ Caller string } `json:"from"`
	To              struct{ Callee string } `json:"to"`
	Properties      struct {
		DisconnectedBy  string `json:"disconnected_by"`
		LastSipResponse *int32 `json:"last_sip_response_num"`
		Q850Cause       *int32 `json:"q850_cause"`
	} `json:"properties"`
}

// deriveCallSummary derives a Voice Insights call summary.
func deriveCallSummary(req *Request, elem json.RawMessage, ce *cloudEvent, index int, reported *timestamppb.Timestamp) Derived {
	raw, err := dataObject(ce.Data)
	if err != nil {
		return quarantineCloudEvent(req, elem, ce, index, "data: "+err.Error(), reported)
	}
	var d callSummary
	if err := json.Unmarshal(raw, &d); err != nil {
		return quarantineCloudEvent(req, elem, ce, index, "data: "+err.Error(), reported)
	}
	if !eventcodec.ValidCallSid(d.CallSid) {
		return quarantineCloudEvent(req, elem, ce, index, "data.call_sid "+strconv.Quote(truncate(d.CallSid))+" is not a CallSid", reported)
	}
	if reported == nil {
		reported = firstTime(d.EndTime, d.StartTime)
	}
	sum := &callledgerv1.CallSummaryReported{
		Summary:                strings.TrimPrefix(ce.Type, callSummaryTypePrefix),
		ProcessingState:        validUTF8(d.ProcessingState),
		CallState:              validUTF8(d.CallState),
		Status:                 parseCallState(d.CallState),
		CallType:               validUTF8(d.CallType),
		AccountSid:             validUTF8(d.AccountSid),
		DurationSeconds:        d.Duration,
		ConnectDurationSeconds: d.ConnectDuration,
		StartTime:              firstTime(d.StartTime),
		EndTime:                firstTime(d.EndTime),
		DisconnectedBy:         validUTF8(d.Properties.DisconnectedBy),
		AnsweredBy:             validUTF8(d.AnsweredBy),
		From:                   validUTF8(d.From.Caller),
		To:                     validUTF8(d.To.Callee),
		Q850Cause:              d.Properties.Q850Cause,
	}
	if eventcodec.ValidCallSid(d.ParentCallSid) && d.ParentCallSid != d.CallSid {
		sum.ParentCallSid = d.ParentCallSid
	}
	if n := d.Properties.LastSipResponse; n != nil && *n != 0 {
		sum.LastSipResponse = n
	}
	for _, tag := range d.Tags {
		sum.Tags = append(sum.Tags, validUTF8(tag))
	}
	ev := callEvent(req, elem, ce, d.CallSid, callledgerv1.Source_SOURCE_VOICE_INSIGHTS, reported)
	ev.Body = &callledgerv1.Event_CallSummaryReported{CallSummaryReported: sum}
	return Derived{Stream: eventcodec.CallStream(d.CallSid), Event: ev}
}

// parseCallState maps a Voice Insights call_state onto a CallStatus.
func parseCallState(s string) callledgerv1.CallStatus {
	switch s {
	case "answered":
		return callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS
	case "fail":
		return callledgerv1.CallStatus_CALL_STATUS_FAILED
	case "noanswer":
		return callledgerv1.CallStatus_CALL_STATUS_NO_ANSWER
	}
	return ParseCallStatus(s)
}

// callEventData is what callledger reads of any other voice event's data:
// where it names its call, and a Voice Insights call event's labels.
type callEventData struct {
	CallSid    string `json:"call_sid"`
	CallSidAlt string `json:"callSid"`
	Sid        string `json:"sid"`
	AccountSid string `json:"account_sid"`
	AccountAlt string `json:"accountSid"`
	Name       string `json:"name"`
	Group      string `json:"group"`
	Level      string `json:"level"`
	Edge       string `json:"edge"`
	Timestamp  string `json:"timestamp"`
	Request    struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	} `json:"request"`
}

// deriveCallEvent files a voice event that names a call under it; one
// that names none is quarantined.
func deriveCallEvent(req *Request, elem json.RawMessage, ce *cloudEvent, index int, reported *timestamppb.Timestamp) Derived {
	var d callEventData
	if raw, err := dataObject(ce.Data); err == nil {
		_ = json.Unmarshal(raw, &d) // a data of another shape names its call in the source, if anywhere
	}
	params := (&voiceData{}).withParameters(d.Request.Parameters)
	sid := firstCallSid(d.CallSid, d.CallSidAlt, d.Sid, params["CallSid"], callSidInPath(ce.Source))
	if sid == "" {
		return quarantineCloudEvent(req, elem, ce, index, "type "+strconv.Quote(truncate(ce.Type))+" names no call", reported)
	}
	if reported == nil {
		reported = firstTime(d.Timestamp)
	}
	account := d.AccountSid
	if account == "" {
		account = d.AccountAlt
	}
	if account == "" {
		account = params["AccountSid"]
	}
	ev := callEvent(req, elem, ce, sid, callledgerv1.Source_SOURCE_EVENT_STREAMS, reported)
	if strings.HasPrefix(ce.Type, "com.twilio.voice.insights.") {
		ev.Source = callledgerv1.Source_SOURCE_VOICE_INSIGHTS
	}
	ev.Body = &callledgerv1.Event_CallEventReported{CallEventReported: &callledgerv1.CallEventReported{
		Type:       validUTF8(ce.Type),
		AccountSid: validUTF8(account),
		Name:       validUTF8(d.Name),
		Group:      validUTF8(d.Group),
		Level:      validUTF8(d.Level),
		Edge:       validUTF8(d.Edge),
	}}
	return Derived{Stream: eventcodec.CallStream(sid), Event: ev}
}

func firstCallSid(candidates ...string) string {
	for _, c := range candidates {
		if eventcodec.ValidCallSid(c) {
			return c
		}
	}
	return ""
}

// callSidInPath finds a CallSid among the segments of a CloudEvent source
// ("/v1/Voice/CA…/Summary", "/2010-04-01/Accounts/AC…/Calls/CA….json").
func callSidInPath(source string) string {
	for seg := range strings.SplitSeq(source, "/") {
		seg = strings.TrimSuffix(seg, ".json")
		if eventcodec.ValidCallSid(seg) {
			return seg
		}
	}
	return ""
}

// quarantineCloudEvent files one CloudEvent that is not a usable voice
// status callback. Its ID covers its id when it has one (a redelivery is a
// no-op), its bytes otherwise.
func quarantineCloudEvent(req *Request, elem json.RawMessage, ce *cloudEvent, index int, reason string, reported *timestamppb.Timestamp) Derived {
	stream := quarantineStream(KindEvents)
	// Quarantine keeps the ID it always gave a CloudEvent, its id alone, so
	// that a redelivery across versions is still recognized
	// (docs/EVENTS.md, CloudEvent identity).
	var canonical []byte
	if ce.ID != "" {
		canonical = appendField(appendField(nil, "id"), ce.ID)
	} else {
		canonical = appendField(appendField(nil, "raw"), elem)
	}
	return Derived{Stream: stream, Event: &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.QuarantineIDKind(stream), canonical).String(),
		Source:     callledgerv1.Source_SOURCE_EVENT_STREAMS,
		ReceivedAt: receivedAt(req),
		ReportedAt: reported,
		Derivation: Derivation,
		Body: &callledgerv1.Event_RequestQuarantined{RequestQuarantined: &callledgerv1.RequestQuarantined{
			Kind:   string(KindEvents),
			Reason: fmt.Sprintf("CloudEvent %d: %s", index, reason),
		}},
		CloudEvent: envelope(ce, elem),
	}}
}

func envelope(ce *cloudEvent, elem json.RawMessage) *callledgerv1.CloudEvent {
	return &callledgerv1.CloudEvent{
		Id:         ce.ID,
		Type:       ce.Type,
		Source:     ce.Source,
		Time:       ce.Time,
		Dataschema: ce.DataSchema,
		Raw:        elem,
	}
}

var errNoData = errors.New("missing")

// dataObject returns a CloudEvent's data: an object or (as in Twilio's
// quickstart) a JSON string holding one.
func dataObject(data json.RawMessage) (json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return nil, errNoData
	}
	if data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, err
		}
		data = []byte(s)
	}
	return data, nil
}

// decodeVoiceData decodes the data of a Voice.WebhookEvent.
func decodeVoiceData(data json.RawMessage) (*voiceData, error) {
	data, err := dataObject(data)
	if err != nil {
		return nil, err
	}
	d := new(voiceData)
	if err := json.Unmarshal(data, d); err != nil {
		return nil, err
	}
	return d, nil
}

// parameters returns the callback's form fields.
func (d *voiceData) parameters() map[string]string {
	return d.withParameters(d.Request.Parameters)
}

// withParameters returns form fields sent as a JSON object. Twilio sends
// strings; numbers and booleans are taken as written, null and nested
// values are left to the raw CloudEvent.
func (*voiceData) withParameters(params map[string]json.RawMessage) map[string]string {
	m := make(map[string]string, len(params))
	for k, v := range params {
		v = bytes.TrimSpace(v)
		switch {
		case len(v) == 0 || string(v) == "null" || v[0] == '{' || v[0] == '[':
		case v[0] == '"':
			var s string
			if json.Unmarshal(v, &s) == nil {
				m[k] = s
			}
		default:
			m[k] = string(v)
		}
	}
	return m
}

// firstTime returns the first of the RFC 3339 times that parses.
func firstTime(times ...string) *timestamppb.Timestamp {
	for _, s := range times {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return timestamppb.New(t)
		}
	}
	return nil
}
