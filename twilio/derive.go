package twilio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
)

// Kind is the route a webhook arrived on. It decides how the request is
// read and which event it becomes, and it is part of every event ID.
type Kind string

// The webhook kinds, one per route Twilio calls.
const (
	KindStatus     Kind = "status"     // call status callbacks
	KindDial       Kind = "dial"       // <Dial action> callbacks
	KindRecording  Kind = "recording"  // recording status and transcription callbacks
	KindAMD        Kind = "amd"        // asynchronous answering-machine detection callbacks
	KindConference Kind = "conference" // conference status callbacks
	KindEvents     Kind = "events"     // Event Streams webhook sink
)

// kinds is the one list of the webhook kinds: the path each is served on,
// the source its events record and the ID kind of its callbacks. Routes,
// metric labels and quarantine streams all come from it, so a new kind is
// one line here (and its derivation).
var kinds = [...]struct {
	kind   Kind
	path   string
	source callledgerv1.Source
	idKind eventcodec.IDKind
}{
	{KindStatus, "/twilio/voice/status", callledgerv1.Source_SOURCE_STATUS_CALLBACK, eventcodec.IDKindStatus},
	{KindDial, "/twilio/voice/dial", callledgerv1.Source_SOURCE_DIAL_ACTION, eventcodec.IDKindDial},
	{KindRecording, "/twilio/voice/recording", callledgerv1.Source_SOURCE_RECORDING_STATUS, eventcodec.IDKindRecording},
	{KindAMD, "/twilio/voice/amd", callledgerv1.Source_SOURCE_AMD_CALLBACK, eventcodec.IDKindAMD},
	{KindConference, "/twilio/voice/conference", callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK, eventcodec.IDKindConference},
	{KindEvents, "/twilio/events", callledgerv1.Source_SOURCE_EVENT_STREAMS, eventcodec.IDKindEvents},
}

// Derivation is the version of this derivation, recorded on every event it
// makes (Event.derivation): the projection derives events of older
// versions again from their verbatim requests (Upcast). Bump it whenever
// Derive reads more of a request than before.
const Derivation = 1

// Kinds returns every webhook kind, in route order.
func Kinds() []Kind {
	out := make([]Kind, len(kinds))
	for i, k := range kinds {
		out[i] = k.kind
	}
	return out
}

// KindOfPath returns the kind served on a URL path.
func KindOfPath(path string) (Kind, bool) {
	for _, k := range kinds {
		if k.path == path {
			return k.kind, true
		}
	}
	return "", false
}

// Path is the URL path the kind is served on ("" for an unknown kind).
func (k Kind) Path() string {
	for _, e := range kinds {
		if e.kind == k {
			return e.path
		}
	}
	return ""
}

// sourceOf is the source the kind's events record; UNSPECIFIED for an
// unknown kind, which is how Derive tells kinds it does not know.
func sourceOf(kind Kind) callledgerv1.Source {
	for _, k := range kinds {
		if k.kind == kind {
			return k.source
		}
	}
	return callledgerv1.Source_SOURCE_UNSPECIFIED
}

// idKindOf is the ID kind of the kind's callbacks ("" for an unknown kind).
func idKindOf(kind Kind) eventcodec.IDKind {
	for _, k := range kinds {
		if k.kind == kind {
			return k.idKind
		}
	}
	return ""
}

// Request is a verified webhook request, kept verbatim so that a future
// projection can re-interpret it.
type Request struct {
	Method      string
	URL         string      // as signed: Verifier.SignedURL(requestURI)
	RawQuery    string      // the request URI's raw query, without '?' and without any '#…' (unsigned)
	ContentType string      // the Content-Type header
	Header      http.Header // all received headers; Authorization, Proxy-Authorization and Cookie are never stored
	Body        []byte      // raw bytes, exactly as received
	RemoteAddr  string
	ReceivedAt  time.Time // server clock
}

// Derived is one event to append and the stream it belongs to.
type Derived struct {
	Stream string
	Event  *callledgerv1.Event
}

// Derive turns a verified request into the events to append, in delivery
// order: one for a status, Dial action or recording callback, one per
// CloudEvent of an Event Streams delivery. It never fails and never drops
// anything: what cannot be filed under a call (no usable CallSid, a body
// that does not parse, an unknown kind) becomes a RequestQuarantined event
// in a quarantine stream. Event IDs are deterministic, so a retry derives
// the same IDs. The events share req.Body and the header values: the caller
// must not modify them afterwards.
func Derive(kind Kind, req *Request) []Derived {
	if req == nil {
		req = &Request{}
	}
	switch {
	case kind == KindEvents:
		return deriveEvents(req)
	case sourceOf(kind) != callledgerv1.Source_SOURCE_UNSPECIFIED:
		return []Derived{deriveForm(kind, req)}
	default:
		return []Derived{quarantine(kind, req, "unknown webhook kind", nil)}
	}
}

// deriveForm derives the event of a form-encoded callback. Its ID covers the
// parameters (the query of a GET, the body otherwise) in canonical order, so
// an identical retry maps to the same ID whatever the order of the bytes.
func deriveForm(kind Kind, req *Request) Derived {
	// Room for a callback's parameters on the stack; more spill to the heap.
	var pairsBuf [48]pair
	var orderBuf [48]uint64
	var (
		decoded string
		pairs   []pair
		order   []uint64
		bad     formProblem
	)
	if req.Method == http.MethodGet {
		decoded, pairs, order, bad = parseParams(req.RawQuery, strings.Count(req.RawQuery, "&")+1, pairsBuf[:0], orderBuf[:0])
	} else {
		decoded, pairs, order, bad = parseParams(req.Body, bytes.Count(req.Body, []byte{'&'})+1, pairsBuf[:0], orderBuf[:0])
	}
	if !bad.ok() {
		return quarantine(kind, req, "parameters do not parse: "+bad.err().Error(), nil)
	}
	p := formFields(decoded, pairs, order)
	reported := reportedAt(&p)
	id := eventcodec.EventID(idKindOf(kind), canonical(decoded, pairs, order)).String()
	if kind == KindConference || (kind == KindStatus && conferenceCallback(&p)) {
		return deriveConference(kind, req, &p, id, reported)
	}
	sid, found := p.get(fCallSid)
	switch {
	case !found:
		return quarantine(kind, req, "no CallSid", reported)
	case sid == "":
		return quarantine(kind, req, "empty CallSid", reported)
	case !eventcodec.ValidCallSid(sid):
		return quarantine(kind, req, "CallSid "+strconv.Quote(truncate(sid))+" is not a CallSid", reported)
	}
	ev := &callledgerv1.Event{
		EventId:    id,
		CallSid:    sid,
		Source:     sourceOf(kind),
		ReceivedAt: receivedAt(req),
		ReportedAt: reported,
		Request:    verbatim(req),
		Derivation: Derivation,
	}
	switch {
	case kind == KindStatus || kind == KindAMD:
		if amdCallback(&p) {
			ev.Source = callledgerv1.Source_SOURCE_AMD_CALLBACK
		}
		ev.Body = &callledgerv1.Event_CallStatusReported{CallStatusReported: statusReported(&p)}
	case kind == KindDial:
		ev.Body = &callledgerv1.Event_DialCompleted{DialCompleted: dialCompleted(&p)}
	case transcriptionCallback(&p):
		ev.Body = &callledgerv1.Event_TranscriptionReported{TranscriptionReported: transcriptionReported(&p)}
	default:
		ev.Body = &callledgerv1.Event_RecordingStatusReported{RecordingStatusReported: recordingReported(&p)}
	}
	return Derived{Stream: eventcodec.CallStream(sid), Event: ev}
}

// amdCallback reports whether a callback is an asynchronous
// answering-machine detection callback (AsyncAmdStatusCallback): a verdict
// and no CallStatus. It may be pointed at the status route.
func amdCallback(p *fields) bool {
	if _, ok := p.get(fCallStatus); ok {
		return false
	}
	_, verdict := p.get(fAnsweredBy)
	_, took := p.get(fMachineDetectionDuration)
	return verdict || took
}

// transcriptionCallback reports whether a callback on the recording route
// is a transcription callback (transcribeCallback) rather than a recording
// status callback.
func transcriptionCallback(p *fields) bool {
	_, sid := p.get(fTranscriptionSid)
	_, st := p.get(fTranscriptionStatus)
	_, text := p.get(fTranscriptionText)
	return sid || st || text
}

// conferenceCallback reports whether a callback is a conference status
// callback: a ConferenceSid and a conference StatusCallbackEvent. It may be
// pointed at the status route.
func conferenceCallback(p *fields) bool {
	if _, ok := p.get(fConferenceSid); !ok {
		return false
	}
	ev := p.value(fStatusCallbackEvent)
	return strings.HasPrefix(ev, "conference-") || strings.HasPrefix(ev, "participant-") || strings.HasPrefix(ev, "announcement-")
}

// deriveConference derives the event of a conference status callback,
// filed under its conference; id is the callback's ID (its route's kind).
func deriveConference(kind Kind, req *Request, p *fields, id string, reported *timestamppb.Timestamp) Derived {
	cf, found := p.get(fConferenceSid)
	switch {
	case !found:
		return quarantine(kind, req, "no ConferenceSid", reported)
	case !eventcodec.ValidConferenceSid(cf):
		return quarantine(kind, req, "ConferenceSid "+strconv.Quote(truncate(cf))+" is not a ConferenceSid", reported)
	}
	raw := p.value(fStatusCallbackEvent)
	return Derived{Stream: eventcodec.ConferenceStream(cf), Event: &callledgerv1.Event{
		EventId:    id,
		Source:     callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK,
		ReceivedAt: receivedAt(req),
		ReportedAt: reported,
		Request:    verbatim(req),
		Derivation: Derivation,
		Body: &callledgerv1.Event_ConferenceEventReported{ConferenceEventReported: &callledgerv1.ConferenceEventReported{
			ConferenceSid:                    cf,
			FriendlyName:                     p.value(fFriendlyName),
			Event:                            ParseConferenceEvent(raw),
			EventRaw:                         raw,
			AccountSid:                       p.value(fAccountSid),
			CallSid:                          p.callSid(fCallSid),
			Hold:                             p.optBool(fHold),
			Muted:                            p.optBool(fMuted),
			Coaching:                         p.optBool(fCoaching),
			EndConferenceOnExit:              p.optBool(fEndConferenceOnExit),
			StartConferenceOnEnter:           p.optBool(fStartConferenceOnEnter),
			ParticipantLabel:                 p.value(fParticipantLabel),
			CallSidToCoach:                   p.callSid(fCallSidToCoach),
			SequenceNumber:                   p.optInt64(fSequenceNumber),
			ParticipantCallStatus:            p.value(fParticipantCallStatus),
			ReasonParticipantLeft:            p.value(fReasonParticipantLeft),
			CallSidEndingConference:          p.callSid(fCallSidEndingConference),
			ParticipantLabelEndingConference: p.value(fParticipantLabelEndingConference),
			ReasonConferenceEnded:            p.value(fReasonConferenceEnded),
			Reason:                           p.value(fReason),
		}},
	}}
}

// conferenceEvents maps StatusCallbackEvent values to ConferenceEvent.
var conferenceEvents = map[string]callledgerv1.ConferenceEvent{
	"conference-start":         callledgerv1.ConferenceEvent_CONFERENCE_EVENT_CONFERENCE_START,
	"conference-end":           callledgerv1.ConferenceEvent_CONFERENCE_EVENT_CONFERENCE_END,
	"participant-join":         callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_JOIN,
	"participant-leave":        callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_LEAVE,
	"participant-hold":         callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_HOLD,
	"participant-unhold":       callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_UNHOLD,
	"participant-mute":         callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_MUTE,
	"participant-unmute":       callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_UNMUTE,
	"participant-modify":       callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_MODIFY,
	"participant-speech-start": callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_SPEECH_START,
	"participant-speech-stop":  callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_SPEECH_STOP,
	"announcement-end":         callledgerv1.ConferenceEvent_CONFERENCE_EVENT_ANNOUNCEMENT_END,
	"announcement-fail":        callledgerv1.ConferenceEvent_CONFERENCE_EVENT_ANNOUNCEMENT_FAIL,
}

// ParseConferenceEvent maps a conference callback's StatusCallbackEvent;
// anything else is UNSPECIFIED (events keep the raw string beside it).
func ParseConferenceEvent(s string) callledgerv1.ConferenceEvent {
	return conferenceEvents[s]
}

// quarantine files a verified request that names no usable call. Its ID
// covers the kind and the raw query and body, so a retry is still a no-op.
func quarantine(kind Kind, req *Request, reason string, reported *timestamppb.Timestamp) Derived {
	stream := quarantineStream(kind)
	content := appendField(nil, req.RawQuery)
	content = appendField(content, req.Body)
	return Derived{Stream: stream, Event: &callledgerv1.Event{
		EventId:    eventcodec.EventID(eventcodec.QuarantineIDKind(stream), content).String(),
		Source:     sourceOf(kind),
		ReceivedAt: receivedAt(req),
		ReportedAt: reported,
		Derivation: Derivation,
		Body: &callledgerv1.Event_RequestQuarantined{RequestQuarantined: &callledgerv1.RequestQuarantined{
			Kind:   validUTF8(string(kind)),
			Reason: validUTF8(reason),
		}},
		Request: verbatim(req),
	}}
}

// quarantineStream names the quarantine of kind; kinds this package does
// not know share one, so that a caller's mistake cannot mint stream names.
func quarantineStream(kind Kind) string {
	if sourceOf(kind) == callledgerv1.Source_SOURCE_UNSPECIFIED {
		return eventcodec.QuarantineStream("unknown")
	}
	return eventcodec.QuarantineStream(string(kind))
}

func receivedAt(req *Request) *timestamppb.Timestamp {
	if req.ReceivedAt.IsZero() {
		return nil
	}
	return timestamppb.New(req.ReceivedAt)
}

// reportedAt is Twilio's Timestamp parameter, when it parses.
func reportedAt(p *fields) *timestamppb.Timestamp {
	if s, ok := p.get(fTimestamp); ok {
		if t, err := ParseTimestamp(s); err == nil {
			return timestamppb.New(t)
		}
	}
	return nil
}

func statusReported(p *fields) *callledgerv1.CallStatusReported {
	raw := p.value(fCallStatus)
	return &callledgerv1.CallStatusReported{
		Status:              ParseCallStatus(raw),
		StatusRaw:           raw,
		SequenceNumber:      p.optInt64(fSequenceNumber),
		AccountSid:          p.value(fAccountSid),
		ParentCallSid:       p.callSid(fParentCallSid),
		Direction:           p.value(fDirection),
		From:                p.value(fFrom),
		To:                  p.value(fTo),
		CallDurationSeconds: p.optInt64(fCallDuration),
		DurationMinutes:     p.optInt64(fDuration),
		SipResponseCode:     p.optInt32(fSipResponseCode),
		AnsweredBy:          p.value(fAnsweredBy),
		CallbackSource:      p.value(fCallbackSource),
		RecordingSid:        p.value(fRecordingSid),
		RecordingUrl:        p.value(fRecordingUrl),

		MachineDetectionDurationMs: p.optInt64(fMachineDetectionDuration),
		ErrorCode:                  p.value(fErrorCode),
		ErrorMessage:               p.value(fErrorMessage),
		CallerName:                 p.value(fCallerName),
		ForwardedFrom:              p.value(fForwardedFrom),
		StirVerstat:                p.value(fStirVerstat),
		StirStatus:                 p.value(fStirStatus),
		SipCallId:                  p.value(fSipCallId),
		QueueTimeMs:                p.optInt64(fQueueTime),
	}
}

func transcriptionReported(p *fields) *callledgerv1.TranscriptionReported {
	return &callledgerv1.TranscriptionReported{
		TranscriptionSid:    p.value(fTranscriptionSid),
		TranscriptionStatus: p.value(fTranscriptionStatus),
		TranscriptionText:   p.value(fTranscriptionText),
		TranscriptionUrl:    p.value(fTranscriptionUrl),
		TranscriptionType:   p.value(fTranscriptionType),
		RecordingSid:        p.value(fRecordingSid),
		RecordingUrl:        p.value(fRecordingUrl),
		AccountSid:          p.value(fAccountSid),
	}
}

func dialCompleted(p *fields) *callledgerv1.DialCompleted {
	dialRaw, parentRaw := p.value(fDialCallStatus), p.value(fCallStatus)
	dialStatus := ParseCallStatus(dialRaw)
	if dialRaw == "answered" {
		// A <Dial><Conference> reports "answered": the conference leg is up.
		dialStatus = callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS
	}
	return &callledgerv1.DialCompleted{
		DialCallSid:             p.callSid(fDialCallSid),
		DialCallStatus:          dialStatus,
		DialCallStatusRaw:       dialRaw,
		DialCallDurationSeconds: p.optInt64(fDialCallDuration),
		DialBridged:             p.optBool(fDialBridged),
		ParentStatus:            ParseCallStatus(parentRaw),
		ParentStatusRaw:         parentRaw,
		AccountSid:              p.value(fAccountSid),
		Direction:               p.value(fDirection),
		From:                    p.value(fFrom),
		To:                      p.value(fTo),
		RecordingUrl:            p.value(fRecordingUrl),
	}
}

func recordingReported(p *fields) *callledgerv1.RecordingStatusReported {
	m := &callledgerv1.RecordingStatusReported{
		RecordingSid:             p.value(fRecordingSid),
		RecordingStatus:          p.value(fRecordingStatus),
		RecordingUrl:             p.value(fRecordingUrl),
		RecordingDurationSeconds: p.optInt64(fRecordingDuration),
		RecordingChannels:        p.optInt32(fRecordingChannels),
		RecordingSource:          p.value(fRecordingSource),
		RecordingTrack:           p.value(fRecordingTrack),
		AccountSid:               p.value(fAccountSid),
		ErrorCode:                p.value(fErrorCode),
	}
	if s, ok := p.get(fRecordingStartTime); ok {
		if t, err := ParseTimestamp(s); err == nil {
			m.RecordingStartTime = timestamppb.New(t)
		}
	}
	return m
}

// ParseCallStatus maps a call status as Twilio writes it, in callbacks and
// in the REST API's Call resource ("in-progress", "no-answer", …); anything
// else, including values Twilio may add, is UNSPECIFIED (events keep the
// raw string beside it).
func ParseCallStatus(s string) callledgerv1.CallStatus {
	switch s {
	case "queued":
		return callledgerv1.CallStatus_CALL_STATUS_QUEUED
	case "initiated":
		return callledgerv1.CallStatus_CALL_STATUS_INITIATED
	case "ringing":
		return callledgerv1.CallStatus_CALL_STATUS_RINGING
	case "in-progress":
		return callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS
	case "completed":
		return callledgerv1.CallStatus_CALL_STATUS_COMPLETED
	case "busy":
		return callledgerv1.CallStatus_CALL_STATUS_BUSY
	case "failed":
		return callledgerv1.CallStatus_CALL_STATUS_FAILED
	case "no-answer":
		return callledgerv1.CallStatus_CALL_STATUS_NO_ANSWER
	case "canceled":
		return callledgerv1.CallStatus_CALL_STATUS_CANCELED
	default:
		return callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED
	}
}

// verbatim is the request as received, minus credentials and cookies.
// Headers are sorted by name (values in received order), so that the stored
// bytes do not depend on Go's map order.
func verbatim(req *Request) *callledgerv1.HttpRequest {
	names := make([]string, 0, len(req.Header))
	n := 0
	for name, values := range req.Header {
		if secretHeader(name) || len(values) == 0 {
			continue
		}
		names = append(names, name)
		n += len(values)
	}
	slices.Sort(names)
	lines := make([]callledgerv1.Header, n)
	headers := make([]*callledgerv1.Header, 0, n)
	for _, name := range names {
		for _, value := range req.Header[name] {
			h := &lines[len(headers)]
			h.Name, h.Value = validUTF8(name), validUTF8(value)
			headers = append(headers, h)
		}
	}
	return &callledgerv1.HttpRequest{
		Method:      validUTF8(req.Method),
		Url:         escapeInvalidUTF8(req.URL),
		ContentType: validUTF8(req.ContentType),
		Body:        req.Body,
		Headers:     headers,
		RemoteAddr:  validUTF8(req.RemoteAddr),
	}
}

// Proto3 string fields must hold valid UTF-8, or the event cannot be
// encoded and a verified request could never be stored. Requests from
// Twilio are ASCII; for anything else, these keep the event storable: the
// body stays byte for byte in a bytes field.

// validUTF8 replaces each run of invalid bytes in s with U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// escapeInvalidUTF8 percent-encodes each byte of a URL that is not part of
// valid UTF-8: the URL keeps its meaning (a query decodes to the same
// bytes), only its spelling changes.
func escapeInvalidUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte('%')
			b.WriteByte(hexDigits[s[i]>>4])
			b.WriteByte(hexDigits[s[i]&0xf])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// secretHeader reports the headers never stored: credentials (Event
// Streams sinks may use basic auth) and cookies.
func secretHeader(name string) bool {
	return strings.EqualFold(name, "Authorization") ||
		strings.EqualFold(name, "Proxy-Authorization") ||
		strings.EqualFold(name, "Cookie")
}

func truncate(s string) string {
	const maxShown = 64
	if len(s) > maxShown {
		return s[:maxShown] + "…"
	}
	return s
}

// appendField appends s length-prefixed, so that concatenated fields are
// unambiguous.
func appendField[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// parseParams decodes a form of n settings (n from counting '&') as
// url.ParseQuery does under its default parameter limit, into decoded (the
// names and values back to back), the settings in request order, and order,
// their indexes sorted by name (request order among equal names). pairs
// and order are scratch space, reused by the result: the caller's stack
// arrays hold a typical callback. (Plain slices rather than a struct keep
// them there: escape analysis is not field-sensitive.)
func parseParams[S ~string | ~[]byte](raw S, n int, pairs []pair, order []uint64) (decoded string, _ []pair, _ []uint64, _ formProblem) {
	if n > defaultMaxParams {
		return "", nil, nil, errTooManyParams
	}
	buf, pairs, bad := parseForm(make([]byte, 0, len(raw)), pairs[:0], raw)
	if !bad.ok() {
		return "", nil, nil, bad
	}
	order = sortByKey(buf, pairs, order)
	return string(buf), pairs, order, formProblem{}
}

func keyOf(decoded string, q pair) string { return decoded[q.key.off:q.key.end] }
func valOf(decoded string, q pair) string { return decoded[q.val.off:q.val.end] }

// formFields picks, in one pass, the first value of each parameter the
// events normalize, as url.Values.Get sees it.
func formFields(decoded string, pairs []pair, order []uint64) fields {
	var p fields
	for i, o := range order {
		q := pairs[o]
		if i > 0 && keyOf(decoded, q) == keyOf(decoded, pairs[order[i-1]]) {
			continue // a later value of the same name
		}
		if id := fieldOf(keyOf(decoded, q)); id != fNone {
			p.vals[id], p.has[id] = validUTF8(valOf(decoded, q)), true
		}
	}
	return p
}

// canonical encodes every parameter, sorted by name then value, each name
// and value length-prefixed, a value repeated under one name once: the
// content of a callback's event ID. It covers what Twilio signs (every
// distinct value of a name), so that a copy of a signed request with one of
// its pairs sent again, which still verifies, maps to the same event.
func canonical(decoded string, pairs []pair, order []uint64) []byte {
	out := make([]byte, 0, len(decoded)+4*len(pairs))
	var run []pair
	for i := 0; i < len(order); {
		first := pairs[order[i]]
		j := i + 1
		for j < len(order) && keyOf(decoded, pairs[order[j]]) == keyOf(decoded, first) {
			j++
		}
		if j-i == 1 {
			out = appendField(out, keyOf(decoded, first))
			out = appendField(out, valOf(decoded, first))
			i = j
			continue
		}
		run = run[:0]
		for _, o := range order[i:j] {
			run = append(run, pairs[o])
		}
		slices.SortFunc(run, func(a, b pair) int { return strings.Compare(valOf(decoded, a), valOf(decoded, b)) })
		for k, q := range run {
			if k > 0 && valOf(decoded, q) == valOf(decoded, run[k-1]) {
				continue // the same pair again: signed once, one fact
			}
			out = appendField(out, keyOf(decoded, q))
			out = appendField(out, valOf(decoded, q))
		}
		i = j
	}
	return out
}

// field names a parameter that events normalize: an index into fieldNames.
type field int

const (
	fCallSid field = iota
	fCallStatus
	fSequenceNumber
	fAccountSid
	fParentCallSid
	fDirection
	fFrom
	fTo
	fCallDuration
	fDuration
	fSipResponseCode
	fAnsweredBy
	fCallbackSource
	fRecordingSid
	fRecordingUrl
	fDialCallSid
	fDialCallStatus
	fDialCallDuration
	fDialBridged
	fRecordingStatus
	fRecordingDuration
	fRecordingChannels
	fRecordingSource
	fRecordingTrack
	fRecordingStartTime
	fErrorCode
	fTimestamp
	fMachineDetectionDuration
	fErrorMessage
	fCallerName
	fForwardedFrom
	fStirVerstat
	fStirStatus
	fSipCallId
	fQueueTime
	fTranscriptionSid
	fTranscriptionStatus
	fTranscriptionText
	fTranscriptionUrl
	fTranscriptionType
	fConferenceSid
	fFriendlyName
	fStatusCallbackEvent
	fHold
	fMuted
	fCoaching
	fEndConferenceOnExit
	fStartConferenceOnEnter
	fParticipantLabel
	fCallSidToCoach
	fParticipantCallStatus
	fReasonParticipantLeft
	fCallSidEndingConference
	fParticipantLabelEndingConference
	fReasonConferenceEnded
	fReason
	numFields
	fNone field = -1
)

// fieldNames spells each field as Twilio names the parameter: the one
// table of the fields, which fieldByName inverts.
var fieldNames = [numFields]string{
	fCallSid:            "CallSid",
	fCallStatus:         "CallStatus",
	fSequenceNumber:     "SequenceNumber",
	fAccountSid:         "AccountSid",
	fParentCallSid:      "ParentCallSid",
	fDirection:          "Direction",
	fFrom:               "From",
	fTo:                 "To",
	fCallDuration:       "CallDuration",
	fDuration:           "Duration",
	fSipResponseCode:    "SipResponseCode",
	fAnsweredBy:         "AnsweredBy",
	fCallbackSource:     "CallbackSource",
	fRecordingSid:       "RecordingSid",
	fRecordingUrl:       "RecordingUrl",
	fDialCallSid:        "DialCallSid",
	fDialCallStatus:     "DialCallStatus",
	fDialCallDuration:   "DialCallDuration",
	fDialBridged:        "DialBridged",
	fRecordingStatus:    "RecordingStatus",
	fRecordingDuration:  "RecordingDuration",
	fRecordingChannels:  "RecordingChannels",
	fRecordingSource:    "RecordingSource",
	fRecordingTrack:     "RecordingTrack",
	fRecordingStartTime: "RecordingStartTime",
	fErrorCode:          "ErrorCode",
	fTimestamp:          "Timestamp",

	fMachineDetectionDuration:         "MachineDetectionDuration",
	fErrorMessage:                     "ErrorMessage",
	fCallerName:                       "CallerName",
	fForwardedFrom:                    "ForwardedFrom",
	fStirVerstat:                      "StirVerstat",
	fStirStatus:                       "StirStatus",
	fSipCallId:                        "SipCallId",
	fQueueTime:                        "QueueTime",
	fTranscriptionSid:                 "TranscriptionSid",
	fTranscriptionStatus:              "TranscriptionStatus",
	fTranscriptionText:                "TranscriptionText",
	fTranscriptionUrl:                 "TranscriptionUrl",
	fTranscriptionType:                "TranscriptionType",
	fConferenceSid:                    "ConferenceSid",
	fFriendlyName:                     "FriendlyName",
	fStatusCallbackEvent:              "StatusCallbackEvent",
	fHold:                             "Hold",
	fMuted:                            "Muted",
	fCoaching:                         "Coaching",
	fEndConferenceOnExit:              "EndConferenceOnExit",
	fStartConferenceOnEnter:           "StartConferenceOnEnter",
	fParticipantLabel:                 "ParticipantLabel",
	fCallSidToCoach:                   "CallSidToCoach",
	fParticipantCallStatus:            "ParticipantCallStatus",
	fReasonParticipantLeft:            "ReasonParticipantLeft",
	fCallSidEndingConference:          "CallSidEndingConference",
	fParticipantLabelEndingConference: "ParticipantLabelEndingConference",
	fReasonConferenceEnded:            "ReasonConferenceEnded",
	fReason:                           "Reason",
}

// fieldByName is fieldNames inverted. Building it panics on a field left
// without a name or a name given twice, so that the table cannot fall out
// of step with the constants: the package would not start.
var fieldByName = func() map[string]field {
	m := make(map[string]field, numFields)
	for f, name := range fieldNames {
		if _, dup := m[name]; name == "" || dup {
			panic(fmt.Sprintf("twilio: field %d has the name %q, empty or given twice", f, name))
		}
		m[name] = field(f)
	}
	return m
}()

func fieldOf(name string) field {
	if f, ok := fieldByName[name]; ok {
		return f
	}
	return fNone
}

// fields are the first values of the parameters events normalize.
type fields struct {
	vals [numFields]string
	has  [numFields]bool
}

// fieldsOf picks the parameters events normalize from decoded name/value
// pairs (Event Streams carries a callback's parameters as a JSON object).
func fieldsOf(m map[string]string) fields {
	var p fields
	for k, v := range m {
		if id := fieldOf(k); id != fNone {
			p.vals[id], p.has[id] = validUTF8(v), true
		}
	}
	return p
}

func (p *fields) get(id field) (string, bool) { return p.vals[id], p.has[id] }

func (p *fields) value(id field) string { return p.vals[id] }

// callSid returns the value of id when it is a CallSid: these fields link
// calls together, and a malformed one must not create a call. The raw
// value stays in the stored request.
func (p *fields) callSid(id field) string {
	if v := p.vals[id]; eventcodec.ValidCallSid(v) {
		return v
	}
	return ""
}

// optInt64 returns the decimal value of id; unset when absent or not a
// number (the raw request keeps it).
// The opt parsers skip an absent parameter before parsing: strconv's
// error for "" is an allocation, and most optional parameters are absent
// from most callbacks.

func (p *fields) optInt64(id field) *int64 {
	if v := p.vals[id]; v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return proto.Int64(n)
		}
	}
	return nil
}

func (p *fields) optInt32(id field) *int32 {
	if v := p.vals[id]; v != "" {
		if n, err := strconv.ParseInt(v, 10, 32); err == nil {
			return proto.Int32(int32(n))
		}
	}
	return nil
}

func (p *fields) optBool(id field) *bool {
	if v := p.vals[id]; v != "" {
		if b, err := strconv.ParseBool(v); err == nil {
			return proto.Bool(b)
		}
	}
	return nil
}
