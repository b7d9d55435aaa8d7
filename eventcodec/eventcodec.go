// Package eventcodec maps callledger's domain events onto event-store records:
// stream names, stable event type names, deterministic event IDs and the
// payload encoding. Every writer and reader of the log goes through it, so
// the mapping is defined once.
package eventcodec

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
)

// Stream name prefixes.
const (
	CallStreamPrefix       = "call-"
	ConferenceStreamPrefix = "conference-"
	QuarantineStreamPrefix = "quarantine-"
)

// ErasureStream is the stream of every ErasureRecorded: erasures concern
// many calls at once, and the audit trail reads them together.
const ErasureStream = "erasures"

// ProjectedStreamPrefixes are the streams the call-state projection folds:
// calls, conferences and erasures (quarantine is kept, never folded).
func ProjectedStreamPrefixes() []string {
	return []string{CallStreamPrefix, ConferenceStreamPrefix, ErasureStream}
}

// Event type names as stored. They are part of the storage format: never
// rename one.
const (
	TypeCallStatusReported      = "CallStatusReported"
	TypeDialCompleted           = "DialCompleted"
	TypeRecordingStatusReported = "RecordingStatusReported"
	TypeRequestQuarantined      = "RequestQuarantined"
	TypeHangupRequested         = "HangupRequested"
	TypeHangupSent              = "HangupSent"
	TypeHangupFailed            = "HangupFailed"
	TypeCallReconciled          = "CallReconciled"
	TypeConferenceEventReported = "ConferenceEventReported"
	TypeTranscriptionReported   = "TranscriptionReported"
	TypeCallSummaryReported     = "CallSummaryReported"
	TypeCallEventReported       = "CallEventReported"
	TypeErasureRecorded         = "ErasureRecorded"
)

// IDKind is the first part of what an event ID is derived from, so that
// facts of different kinds never share an ID even when their contents
// coincide. Every kind is declared here. The values are part of the storage
// format, like the type names: stored ledgers deduplicate redeliveries by
// these IDs, so a changed value would store every redelivered fact again.
type IDKind string

// Event-ID kinds, with the canonical content each one's IDs cover.
const (
	// IDKindStatus, IDKindDial, IDKindRecording, IDKindAMD and
	// IDKindConference are the kinds of the form-encoded webhook callbacks,
	// named as their routes (twilio.Kind): a callback's ID kind is the
	// route it arrived on, whatever it turns out to be (an AMD or a
	// conference callback on the status route keeps IDKindStatus). The ID
	// covers the callback's canonical parameters.
	IDKindStatus     IDKind = "status"
	IDKindDial       IDKind = "dial"
	IDKindRecording  IDKind = "recording"
	IDKindAMD        IDKind = "amd"
	IDKindConference IDKind = "conference"
	// IDKindEvents is the kind of a voice status callback delivered by
	// Event Streams to its call's stream; the ID covers the CloudEvent's id
	// alone. Twilio publishes every status callback of a call from one
	// source, the call, which the stream already names: within the stream
	// the id is unique as it is (docs/EVENTS.md, CloudEvent identity).
	IDKindEvents IDKind = "events"
	// IDKindCloudEvent is the kind of every other CloudEvent filed under a
	// call (answering-machine detection, Voice Insights, other voice
	// events); the ID covers its source and its id, each length-prefixed,
	// as CloudEvents defines an event's identity.
	IDKindCloudEvent IDKind = "cloudevent"
	// IDKindReconciled is the kind of CallReconciled; the ID covers the Call
	// resource as read, or "not-found", the account and the CallSid.
	IDKindReconciled IDKind = "reconciled"
	// IDKindHangupRequest is the kind of HangupRequested; the ID covers the
	// CallSid and the request_id.
	IDKindHangupRequest IDKind = "hangup-request"
	// IDKindHangupOutcome is the kind of HangupSent and HangupFailed; the ID
	// covers the CallSid, the request_id and the outcome.
	IDKindHangupOutcome IDKind = "hangup-outcome"
	// IDKindErasure is the kind of ErasureRecorded; the ID covers the
	// erasure's ID (the erasure journal's), so that a replay of the journal
	// after a crash or a restore stores the erasure once.
	IDKindErasure IDKind = "erasure"
)

// QuarantineIDKind is the kind of a RequestQuarantined event stored in
// stream (a QuarantineStream): the stream's name, so that quarantines of
// different routes never share an ID.
func QuarantineIDKind(stream string) IDKind { return IDKind(stream) }

// namespace is the UUIDv5 namespace of every callledger event ID. Changing it
// would break deduplication against everything already stored.
var namespace = uuid.MustParse("6f1d3c2e-5b0a-5e7c-9a43-0c1f7d4b8e21")

// EventID derives the deterministic ID of a fact from its kind and canonical
// content, so that a redelivery of the same fact maps to the same ID and the
// store writes it once.
func EventID(kind IDKind, canonical []byte) uuid.UUID {
	// NewSHA1 hashes namespace || data; prefixing the kind and a separator
	// keeps kinds apart even when their contents coincide.
	data := make([]byte, 0, len(kind)+1+len(canonical))
	data = append(data, kind...)
	data = append(data, 0)
	data = append(data, canonical...)
	return uuid.NewSHA1(namespace, data)
}

// CallStream names the stream that holds every event of one call leg.
func CallStream(callSid string) string { return CallStreamPrefix + callSid }

// ConferenceStream names the stream that holds every conference status
// callback of one conference.
func ConferenceStream(conferenceSid string) string { return ConferenceStreamPrefix + conferenceSid }

// ConferenceSidOf returns the ConferenceSid of a conference stream and
// whether stream is one.
func ConferenceSidOf(stream string) (string, bool) {
	return strings.CutPrefix(stream, ConferenceStreamPrefix)
}

// QuarantineStream names the stream for signed requests of a kind that carry
// no usable CallSid.
func QuarantineStream(kind string) string { return QuarantineStreamPrefix + kind }

// CallSidOf returns the CallSid of a call stream and whether stream is one.
func CallSidOf(stream string) (string, bool) {
	return strings.CutPrefix(stream, CallStreamPrefix)
}

// ValidCallSid reports whether s has the shape of a Twilio CallSid: "CA"
// followed by 32 lowercase hexadecimal digits.
func ValidCallSid(s string) bool { return validSid(s, 'C', 'A') }

// ValidConferenceSid reports whether s has the shape of a Twilio
// ConferenceSid: "CF" followed by 32 lowercase hexadecimal digits.
func ValidConferenceSid(s string) bool { return validSid(s, 'C', 'F') }

func validSid(s string, p0, p1 byte) bool {
	if len(s) != 34 || s[0] != p0 || s[1] != p1 {
		return false
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// TypeOf returns the stored type name of ev.
func TypeOf(ev *callledgerv1.Event) (string, error) {
	switch ev.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		return TypeCallStatusReported, nil
	case *callledgerv1.Event_DialCompleted:
		return TypeDialCompleted, nil
	case *callledgerv1.Event_RecordingStatusReported:
		return TypeRecordingStatusReported, nil
	case *callledgerv1.Event_RequestQuarantined:
		return TypeRequestQuarantined, nil
	case *callledgerv1.Event_HangupRequested:
		return TypeHangupRequested, nil
	case *callledgerv1.Event_HangupSent:
		return TypeHangupSent, nil
	case *callledgerv1.Event_HangupFailed:
		return TypeHangupFailed, nil
	case *callledgerv1.Event_CallReconciled:
		return TypeCallReconciled, nil
	case *callledgerv1.Event_ConferenceEventReported:
		return TypeConferenceEventReported, nil
	case *callledgerv1.Event_TranscriptionReported:
		return TypeTranscriptionReported, nil
	case *callledgerv1.Event_CallSummaryReported:
		return TypeCallSummaryReported, nil
	case *callledgerv1.Event_CallEventReported:
		return TypeCallEventReported, nil
	case *callledgerv1.Event_ErasureRecorded:
		return TypeErasureRecorded, nil
	default:
		return "", fmt.Errorf("event %s has no known body: %w", ev.GetEventId(), eventstore.ErrInvalidArgument)
	}
}

// ErrUndecodable reports a stored record that is not a callledger event.
var ErrUndecodable = errors.New("undecodable event")

// Encode turns ev into a record for the store: binary protobuf payload and a
// small JSON metadata object that keeps a store's own UI readable.
func Encode(ev *callledgerv1.Event) (eventstore.EventData, error) {
	typ, err := TypeOf(ev)
	if err != nil {
		return eventstore.EventData{}, err
	}
	id, err := uuid.Parse(ev.GetEventId())
	if err != nil {
		return eventstore.EventData{}, fmt.Errorf("event id %q: %w", ev.GetEventId(), eventstore.ErrInvalidArgument)
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return eventstore.EventData{}, fmt.Errorf("encode event %s: %w", id, err)
	}
	return eventstore.EventData{ID: id, Type: typ, Data: data, Metadata: metadata(ev)}, nil
}

// metadata renders {"callSid":…,"source":…,"receivedAt":…}. Every value is
// plain ASCII without quotes or escapes (a validated SID, an enum name, an
// RFC 3339 time), so appending is safe and cheaper than encoding/json.
func metadata(ev *callledgerv1.Event) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"callSid":"`...)
	if ValidCallSid(ev.GetCallSid()) {
		b = append(b, ev.GetCallSid()...)
	}
	b = append(b, `","source":"`...)
	b = append(b, ev.GetSource().String()...)
	b = append(b, `","receivedAt":"`...)
	b = ev.GetReceivedAt().AsTime().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	return b
}

// DecodeFacts parses a stored record without its verbatim request,
// CloudEvent envelope and their sealed personal part (sealed_request): the
// normalized facts are all a projection folds,
// and skipping the raw HTTP request (most of the bytes, and most of the
// allocations: one per header) makes rebuilds several times faster.
// The record's bytes are not retained, so they may be a store's own
// memory lent for the call.
func DecodeFacts(rec eventstore.RecordedEvent) (*callledgerv1.Event, error) {
	ev := &callledgerv1.Event{}
	if err := unmarshalFacts(rec.Data, ev); err != nil {
		return nil, fmt.Errorf("decode %s@%d (%s): %w: %v", rec.Stream, rec.Revision, rec.Type, ErrUndecodable, err)
	}
	return ev, nil
}

// Field numbers of Event that DecodeFacts skips.
const (
	fieldRequest       = 20
	fieldCloudEvent    = 21
	fieldSealedRequest = 26
)

// mergeFacts unmarshals pieces of one encoding into the same message:
// protobuf defines parsing a concatenation as merging its parts.
var mergeFacts = proto.UnmarshalOptions{Merge: true}

// unmarshalFacts unmarshals data into ev without the top-level request,
// cloud_event and sealed_request fields. The runs of fields between them are unmarshalled
// in place, one after the other, rather than copied together first:
// encoders write fields in number order, so there is usually one run.
func unmarshalFacts(data []byte, ev *callledgerv1.Event) error {
	start := 0
	for off := 0; off < len(data); {
		num, typ, n := protowire.ConsumeTag(data[off:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, data[off+n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if num == fieldRequest || num == fieldCloudEvent || num == fieldSealedRequest {
			if start < off {
				if err := mergeFacts.Unmarshal(data[start:off], ev); err != nil {
					return err
				}
			}
			start = off + n + m
		}
		off += n + m
	}
	if start < len(data) {
		return mergeFacts.Unmarshal(data[start:], ev)
	}
	return nil
}

// Decode parses a stored record back into an event.
func Decode(rec eventstore.RecordedEvent) (*callledgerv1.Event, error) {
	ev := &callledgerv1.Event{}
	if err := proto.Unmarshal(rec.Data, ev); err != nil {
		return nil, fmt.Errorf("decode %s@%d (%s): %w: %v", rec.Stream, rec.Revision, rec.Type, ErrUndecodable, err)
	}
	return ev, nil
}
