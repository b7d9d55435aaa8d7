package callstate

import (
	"time"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
)

// erasure folds an ErasureRecorded: every call it names is marked redacted
// and loses its personal fields, in its record and in the records of its
// conferences. A call the read model does not know yet is created as a
// redacted placeholder (timed at the erasure), so that its events, folded
// later, stay redacted: redaction is a set membership like the rest of
// the fold, and the order of events does not matter.
func (f *fold) erasure(e *callledgerv1.ErasureRecorded, at time.Time) error {
	for _, sid := range e.GetCallSids() {
		if !eventcodec.ValidCallSid(sid) {
			continue
		}
		r, err := f.load(sid)
		if err != nil {
			return err
		}
		f.touch(r)
		if r.StartTime == nil {
			f.touchTime(r, at)
		}
		r.Redacted = true
		RedactRecord(r)
		if err := f.redactConferences(r); err != nil {
			return err
		}
	}
	return nil
}

// redactConferences empties a redacted call's part in its conferences'
// records; f.conference keeps it empty when a callback comes later.
func (f *fold) redactConferences(r *statev1.CallRecord) error {
	for _, p := range r.GetConferences() {
		conf, err := f.loadConference(p.GetConferenceSid())
		if err != nil {
			return err
		}
		for _, cp := range conf.GetParticipants() {
			if cp.GetCallSid() == r.GetCallSid() {
				redactParticipant(cp)
			}
		}
		if conf.GetEnded().GetCallSidEnding() == r.GetCallSid() {
			conf.Ended.LabelEnding = ""
		}
	}
	return nil
}

// RedactRecord empties the personal fields of a call's record: who called
// whom, caller name, forwarded-from, SIP Call-ID, recording and
// transcription URLs, what was said, conference labels, and Twilio's
// messages of failed hang-ups (which quote numbers). Statuses, times,
// SIDs, durations and error codes stay.
func RedactRecord(r *statev1.CallRecord) {
	if id := r.GetIdentity(); id != nil {
		id.From, id.To = "", ""
	}
	r.CallerName, r.ForwardedFrom, r.SipCallId = nil, nil, nil
	for _, rep := range r.GetRecordingReports() {
		redactRecording(rep.GetRecording())
	}
	for _, rep := range r.GetRecordings() {
		redactRecording(rep.GetRecording())
	}
	for _, t := range r.GetTranscriptions() {
		if tr := t.GetTranscription(); tr != nil {
			tr.Text, tr.Url = "", ""
		}
	}
	for _, h := range r.GetHangupResults() {
		h.ErrorMessage = ""
	}
	if req := r.GetHangup().GetRequest(); req != nil {
		req.ErrorMessage = ""
	}
	for _, p := range r.GetConferences() {
		redactParticipant(p)
	}
}

func redactRecording(rec *callledgerv1.Recording) {
	if rec == nil {
		return
	}
	rec.Url = ""
	for _, t := range rec.GetTranscriptions() {
		t.Text, t.Url = "", ""
	}
}

func redactParticipant(p *statev1.ParticipantRecord) {
	p.Label, p.FriendlyName = nil, nil
}

// keepRedacted redacts again what the event just merged into redacted
// calls, and the label of a redacted call that ended a conference.
func (f *fold) keepRedacted() error {
	for _, r := range f.dirty {
		if r.GetRedacted() {
			RedactRecord(r)
		}
	}
	for _, c := range f.confs {
		sid := c.GetEnded().GetCallSidEnding()
		if c.GetEnded().GetLabelEnding() == "" || !eventcodec.ValidCallSid(sid) {
			continue
		}
		r, err := f.load(sid)
		if err != nil {
			return err
		}
		if r.GetRedacted() {
			c.Ended.LabelEnding = ""
		}
	}
	return nil
}
