package twilio

import (
	"net/url"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

// kindOfSource is the route whose callbacks an older derivation recorded
// with source s (derivation 0 had one source per route); "" for a source
// no webhook records.
func kindOfSource(s callledgerv1.Source) Kind {
	switch s {
	case callledgerv1.Source_SOURCE_STATUS_CALLBACK:
		return KindStatus
	case callledgerv1.Source_SOURCE_DIAL_ACTION:
		return KindDial
	case callledgerv1.Source_SOURCE_RECORDING_STATUS:
		return KindRecording
	case callledgerv1.Source_SOURCE_EVENT_STREAMS:
		return KindEvents
	case callledgerv1.Source_SOURCE_AMD_CALLBACK:
		return KindAMD
	case callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK:
		return KindConference
	case callledgerv1.Source_SOURCE_VOICE_INSIGHTS:
		return KindEvents
	}
	return ""
}

// NeedsUpcast reports whether ev, decoded without its request, was made by
// an older derivation from a webhook request: Upcast would read its
// request again. It lets a reader decode the request only when needed.
func NeedsUpcast(ev *callledgerv1.Event) bool {
	return ev.GetDerivation() < Derivation && ev.GetRequestQuarantined() == nil && kindOfSource(ev.GetSource()) != ""
}

// Upcast derives ev again from its verbatim request when an older
// derivation made it, so that what this version reads of a request (new
// fields, callbacks it now recognizes, timestamps it now parses) reaches
// events stored before: the stored bytes never change, the projection
// folds the upcast event. The event keeps its ID, its call (the stream it
// is stored in, even when this version would file the request elsewhere:
// a conference callback sent to the status route), its receive time, its
// request and envelope; it takes the body, source and reported time this
// version derives. ev must be decoded with its request; it is not
// modified. An event that is not a webhook's, is current, has no request,
// or would now be quarantined is returned as it is.
func Upcast(ev *callledgerv1.Event) *callledgerv1.Event {
	if !NeedsUpcast(ev) || ev.GetRequest() == nil {
		return ev
	}
	r := ev.GetRequest()
	u, err := url.Parse(r.GetUrl())
	if err != nil {
		return ev
	}
	req := &Request{
		Method:      r.GetMethod(),
		URL:         r.GetUrl(),
		RawQuery:    u.RawQuery,
		ContentType: r.GetContentType(),
		Body:        r.GetBody(),
		RemoteAddr:  r.GetRemoteAddr(),
		ReceivedAt:  ev.GetReceivedAt().AsTime(),
	}
	var d Derived
	switch kind := kindOfSource(ev.GetSource()); kind {
	case KindEvents:
		raw := ev.GetCloudEvent().GetRaw()
		if raw == nil {
			return ev
		}
		d = deriveCloudEvent(req, raw, 0)
	default:
		d = deriveForm(kind, req)
	}
	if d.Event.GetRequestQuarantined() != nil {
		return ev
	}
	return &callledgerv1.Event{
		EventId:    ev.GetEventId(),
		CallSid:    ev.GetCallSid(),
		Source:     d.Event.GetSource(),
		ReceivedAt: ev.GetReceivedAt(),
		ReportedAt: d.Event.GetReportedAt(),
		Body:       d.Event.Body,
		Request:    ev.GetRequest(),
		CloudEvent: ev.GetCloudEvent(),
		Derivation: Derivation,
	}
}
