package eventcodec

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

// Part says where a personal field of Event is sealed (docs/PRIVACY.md §3).
type Part int

const (
	// PartFacts are the personal normalized fields (numbers, names, URLs),
	// which the projection opens for every event it folds: Event.sealed.
	PartFacts Part = iota + 1
	// PartRequest is the verbatim request and the CloudEvent's raw bytes,
	// which only readers of raw requests open: Event.sealed_request.
	PartRequest
)

// personalFields are the fields of Event, and of the messages under it,
// that hold personal data (docs/PRIVACY.md §1), with the part that seals
// each. A message field listed here moves whole. Every other string and
// bytes field is in clearFields: TestEveryFieldIsClassified fails on a
// field in neither, so a new field is classified when it is added.
var personalFields = map[protoreflect.FullName]Part{
	"callledger.v1.HttpRequest.url":         PartRequest,
	"callledger.v1.HttpRequest.body":        PartRequest,
	"callledger.v1.HttpRequest.headers":     PartRequest, // X-Twilio-Signature is an HMAC of it all
	"callledger.v1.HttpRequest.remote_addr": PartRequest,
	"callledger.v1.CloudEvent.raw":          PartRequest,

	"callledger.v1.CallStatusReported.from":           PartFacts,
	"callledger.v1.CallStatusReported.to":             PartFacts,
	"callledger.v1.CallStatusReported.recording_url":  PartFacts,
	"callledger.v1.CallStatusReported.error_message":  PartFacts, // Twilio's messages quote numbers
	"callledger.v1.CallStatusReported.caller_name":    PartFacts,
	"callledger.v1.CallStatusReported.forwarded_from": PartFacts,
	"callledger.v1.CallStatusReported.sip_call_id":    PartFacts,

	"callledger.v1.DialCompleted.from":          PartFacts,
	"callledger.v1.DialCompleted.to":            PartFacts,
	"callledger.v1.DialCompleted.recording_url": PartFacts,

	"callledger.v1.RecordingStatusReported.recording_url": PartFacts,

	"callledger.v1.HangupFailed.error_message": PartFacts,

	"callledger.v1.CallReconciled.from":     PartFacts,
	"callledger.v1.CallReconciled.to":       PartFacts,
	"callledger.v1.CallReconciled.resource": PartFacts,

	"callledger.v1.ConferenceEventReported.friendly_name":                       PartFacts,
	"callledger.v1.ConferenceEventReported.participant_label":                   PartFacts,
	"callledger.v1.ConferenceEventReported.participant_label_ending_conference": PartFacts,
	"callledger.v1.ConferenceEventReported.reason":                              PartFacts, // free text

	"callledger.v1.TranscriptionReported.transcription_text": PartFacts,
	"callledger.v1.TranscriptionReported.transcription_url":  PartFacts,
	"callledger.v1.TranscriptionReported.recording_url":      PartFacts,

	"callledger.v1.CallSummaryReported.from": PartFacts,
	"callledger.v1.CallSummaryReported.to":   PartFacts,
}

// clearFields are the string and bytes fields stored in the clear: IDs,
// SIDs, statuses, enums' raw spellings, error codes, what deduplicates
// and orders the log and what the fold ranks by.
var clearFields = map[protoreflect.FullName]bool{
	"callledger.v1.Event.event_id": true,
	"callledger.v1.Event.call_sid": true,

	// What sealed the personal fields: whose key, and the ciphertext.
	"callledger.v1.Sealed.subject":    true,
	"callledger.v1.Sealed.nonce":      true,
	"callledger.v1.Sealed.ciphertext": true,

	"callledger.v1.HttpRequest.method":       true,
	"callledger.v1.HttpRequest.content_type": true,

	"callledger.v1.CloudEvent.id":         true,
	"callledger.v1.CloudEvent.type":       true,
	"callledger.v1.CloudEvent.source":     true,
	"callledger.v1.CloudEvent.time":       true,
	"callledger.v1.CloudEvent.dataschema": true,

	"callledger.v1.CallStatusReported.status_raw":      true,
	"callledger.v1.CallStatusReported.account_sid":     true,
	"callledger.v1.CallStatusReported.parent_call_sid": true,
	"callledger.v1.CallStatusReported.direction":       true,
	"callledger.v1.CallStatusReported.answered_by":     true,
	"callledger.v1.CallStatusReported.callback_source": true,
	"callledger.v1.CallStatusReported.recording_sid":   true,
	"callledger.v1.CallStatusReported.error_code":      true,
	"callledger.v1.CallStatusReported.stir_verstat":    true,
	"callledger.v1.CallStatusReported.stir_status":     true,

	"callledger.v1.DialCompleted.dial_call_sid":        true,
	"callledger.v1.DialCompleted.dial_call_status_raw": true,
	"callledger.v1.DialCompleted.parent_status_raw":    true,
	"callledger.v1.DialCompleted.account_sid":          true,
	"callledger.v1.DialCompleted.direction":            true,

	"callledger.v1.RecordingStatusReported.recording_sid":    true,
	"callledger.v1.RecordingStatusReported.recording_status": true,
	"callledger.v1.RecordingStatusReported.recording_source": true,
	"callledger.v1.RecordingStatusReported.recording_track":  true,
	"callledger.v1.RecordingStatusReported.account_sid":      true,
	"callledger.v1.RecordingStatusReported.error_code":       true,

	// The reason is callledger's own text (a parse error, a truncated
	// malformed SID); the request itself is sealed.
	"callledger.v1.RequestQuarantined.kind":   true,
	"callledger.v1.RequestQuarantined.reason": true,

	"callledger.v1.HangupRequested.request_id":   true,
	"callledger.v1.HangupRequested.requested_by": true, // the operator's principal: the audit trail

	"callledger.v1.ErasureRecorded.erasure_id":   true,
	"callledger.v1.ErasureRecorded.requested_by": true, // the principal who erased: the audit trail
	"callledger.v1.ErasureRecorded.call_sids":    true, // which legs, never which number

	"callledger.v1.HangupSent.request_id":  true,
	"callledger.v1.HangupSent.status":      true,
	"callledger.v1.HangupSent.account_sid": true,

	"callledger.v1.HangupFailed.request_id":  true,
	"callledger.v1.HangupFailed.status":      true,
	"callledger.v1.HangupFailed.account_sid": true,

	"callledger.v1.CallReconciled.status_raw":      true,
	"callledger.v1.CallReconciled.account_sid":     true,
	"callledger.v1.CallReconciled.parent_call_sid": true,
	"callledger.v1.CallReconciled.direction":       true,
	"callledger.v1.CallReconciled.answered_by":     true,

	"callledger.v1.ConferenceEventReported.conference_sid":             true,
	"callledger.v1.ConferenceEventReported.event_raw":                  true,
	"callledger.v1.ConferenceEventReported.account_sid":                true,
	"callledger.v1.ConferenceEventReported.call_sid":                   true,
	"callledger.v1.ConferenceEventReported.call_sid_to_coach":          true,
	"callledger.v1.ConferenceEventReported.participant_call_status":    true,
	"callledger.v1.ConferenceEventReported.reason_participant_left":    true,
	"callledger.v1.ConferenceEventReported.call_sid_ending_conference": true,
	"callledger.v1.ConferenceEventReported.reason_conference_ended":    true,

	"callledger.v1.TranscriptionReported.transcription_sid":    true,
	"callledger.v1.TranscriptionReported.transcription_status": true,
	"callledger.v1.TranscriptionReported.transcription_type":   true,
	"callledger.v1.TranscriptionReported.recording_sid":        true,
	"callledger.v1.TranscriptionReported.account_sid":          true,

	"callledger.v1.CallSummaryReported.summary":          true,
	"callledger.v1.CallSummaryReported.processing_state": true,
	"callledger.v1.CallSummaryReported.call_state":       true,
	"callledger.v1.CallSummaryReported.call_type":        true,
	"callledger.v1.CallSummaryReported.account_sid":      true,
	"callledger.v1.CallSummaryReported.parent_call_sid":  true,
	"callledger.v1.CallSummaryReported.disconnected_by":  true,
	"callledger.v1.CallSummaryReported.tags":             true,
	"callledger.v1.CallSummaryReported.answered_by":      true,

	"callledger.v1.CallEventReported.type":        true,
	"callledger.v1.CallEventReported.account_sid": true,
	"callledger.v1.CallEventReported.name":        true,
	"callledger.v1.CallEventReported.group":       true,
	"callledger.v1.CallEventReported.level":       true,
	"callledger.v1.CallEventReported.edge":        true,
}

// PersonalPart says whether the field named is personal, and in which
// part it is sealed.
func PersonalPart(field protoreflect.FullName) (Part, bool) {
	p, ok := personalFields[field]
	return p, ok
}

// Split separates the personal fields of ev (docs/PRIVACY.md §1) from the
// rest, leaving ev unchanged: clear is ev without them, facts and request
// hold only them (PartFacts, PartRequest), with ev's body case when any
// field of the body moved. facts or request is nil when ev has no such
// field set. proto.Merge(clear, facts) and then request gives back ev
// (Merge).
func Split(ev *callledgerv1.Event) (clear, facts, request *callledgerv1.Event) {
	clear = proto.Clone(ev).(*callledgerv1.Event)
	facts, request = SplitOwned(clear)
	return clear, facts, request
}

// SplitOwned is Split for a caller that has no further use for ev as it
// was: the personal fields move out of ev, which is left as Split's clear,
// and no copy of the event is made (the webhook's path).
func SplitOwned(ev *callledgerv1.Event) (facts, request *callledgerv1.Event) {
	var parts [PartRequest + 1]*callledgerv1.Event
	var path [8]protoreflect.FieldDescriptor
	moveOut(ev.ProtoReflect(), eventPlan, &parts, path[:0])
	return parts[PartFacts], parts[PartRequest]
}

// splitStep is a field Split looks at: a personal one, which moves whole
// (part > 0), or a message field with personal fields under it (sub).
type splitStep struct {
	fd   protoreflect.FieldDescriptor
	part Part
	sub  []splitStep
}

// eventPlan is where Event's personal fields can be, worked out once from
// personalFields: Split looks at those fields alone, not at every field set.
var eventPlan = planFor((&callledgerv1.Event{}).ProtoReflect().Descriptor(), nil)

// planFor lists the steps of md's messages; within lists the message types
// being planned, so that a recursive type ends the descent.
func planFor(md protoreflect.MessageDescriptor, within []protoreflect.FullName) []splitStep {
	within = append(within, md.FullName())
	var steps []splitStep
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if p, ok := personalFields[fd.FullName()]; ok {
			steps = append(steps, splitStep{fd: fd, part: p})
			continue
		}
		if fd.Kind() != protoreflect.MessageKind || fd.Cardinality() == protoreflect.Repeated ||
			slices.Contains(within, fd.Message().FullName()) {
			continue
		}
		if sub := planFor(fd.Message(), within); len(sub) > 0 {
			steps = append(steps, splitStep{fd: fd, sub: sub})
		}
	}
	return steps
}

// moveOut moves the personal fields of m, found at path under the event,
// into the part they belong to (created on demand), at the same path.
func moveOut(m protoreflect.Message, steps []splitStep, parts *[PartRequest + 1]*callledgerv1.Event, path []protoreflect.FieldDescriptor) {
	for _, st := range steps {
		if !m.Has(st.fd) {
			continue
		}
		if st.part == 0 {
			moveOut(m.Get(st.fd).Message(), st.sub, parts, append(path, st.fd))
			continue
		}
		if parts[st.part] == nil {
			parts[st.part] = &callledgerv1.Event{}
		}
		dst := parts[st.part].ProtoReflect()
		for _, f := range path {
			dst = dst.Mutable(f).Message()
		}
		dst.Set(st.fd, m.Get(st.fd))
		m.Clear(st.fd)
	}
}

// Merge puts personal fields split from clear (by Split, or opened from
// its sealed parts) back into it: protobuf's merge of messages.
func Merge(clear *callledgerv1.Event, personal ...*callledgerv1.Event) {
	for _, p := range personal {
		if p != nil {
			proto.Merge(clear, p)
		}
	}
}
