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
// delivery, without its verbatim request.
func deriveCloudEvent(req *Request, elem json.RawMessage, index int) Derived {
	var ce cloudEvent
	if err := json.Unmarshal(elem, &ce); err != nil {
		return quarantineCloudEvent(req, elem, &ce, index, "not a CloudEvent: "+err.Error(), nil)
	}
	reported := firstTime(ce.Time)
	switch {
	case ce.ID == "":
		return quarantineCloudEvent(req, elem, &ce, index, "no id", reported)
	case !strings.HasPrefix(ce.Type, statusCallbackTypePrefix) && !strings.HasPrefix(ce.Type, deprecatedStatusCallbackTypePrefix):
		return quarantineCloudEvent(req, elem, &ce, index, "type "+strconv.Quote(truncate(ce.Type))+" is not a voice status callback", reported)
	}
	data, err := decodeVoiceData(ce.Data)
	if err != nil {
		return quarantineCloudEvent(req, elem, &ce, index, "data: "+err.Error(), reported)
	}
	if !eventcodec.ValidCallSid(data.Sid) {
		return quarantineCloudEvent(req, elem, &ce, index, "data.sid "+strconv.Quote(truncate(data.Sid))+" is not a CallSid", reported)
	}
	p := fieldsOf(data.parameters())
	if t := reportedAt(&p); t != nil {
		reported = t
	} else if t := firstTime(data.Timestamp, ce.Time); t != nil {
		reported = t
	}
	return Derived{Stream: eventcodec.CallStream(data.Sid), Event: &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.IDKindEvents, []byte(ce.ID)).String(),
		CallSid:    data.Sid,
		Source:     callledgerv1.Source_SOURCE_EVENT_STREAMS,
		ReceivedAt: receivedAt(req),
		ReportedAt: reported,
		Body:       &callledgerv1.Event_CallStatusReported{CallStatusReported: statusReported(&p)},
		CloudEvent: envelope(&ce, elem),
	}}
}

// quarantineCloudEvent files one CloudEvent that is not a usable voice
// status callback. Its ID covers its id when it has one (a redelivery is a
// no-op), its bytes otherwise.
func quarantineCloudEvent(req *Request, elem json.RawMessage, ce *cloudEvent, index int, reason string, reported *timestamppb.Timestamp) Derived {
	stream := quarantineStream(KindEvents)
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

// decodeVoiceData decodes data, an object or (as in Twilio's quickstart) a
// JSON string holding one.
func decodeVoiceData(data json.RawMessage) (*voiceData, error) {
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
	d := new(voiceData)
	if err := json.Unmarshal(data, d); err != nil {
		return nil, err
	}
	return d, nil
}

// parameters returns the callback's form fields. Twilio sends strings;
// numbers and booleans are taken as written, null and nested values are
// left to the raw CloudEvent.
func (d *voiceData) parameters() map[string]string {
	m := make(map[string]string, len(d.Request.Parameters))
	for k, v := range d.Request.Parameters {
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
