package callstate

import (
	"slices"
	"strconv"
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
	if a := r.GetAccount().GetValue(); a != "" {
		c.AccountSid = a // from any event of the call, not only those that say who called whom
	}
	switch {
	case r.GetTerminal() != nil:
		terminalView(c, r)
	case r.GetInferredEnd() != nil:
		// No terminal report, but the parent ended: so did this leg.
		c.Status = callledgerv1.CallStatus_CALL_STATUS_CANCELED
		if r.GetAnsweredAt() != nil || r.GetNonterminal().GetStatus() == callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS {
			c.Status = callledgerv1.CallStatus_CALL_STATUS_COMPLETED
		}
		c.Terminal, c.StatusSource, c.EndedAt = true, callledgerv1.Source_SOURCE_INFERRED, r.GetInferredEnd().GetAt()
	case r.GetNonterminal() != nil:
		c.Status, c.StatusSource = r.GetNonterminal().GetStatus(), r.GetNonterminal().GetSource()
	}
	c.Recordings = recordingsView(r)
	c.CallerName = r.GetCallerName().GetValue()
	c.ForwardedFrom = r.GetForwardedFrom().GetValue()
	c.StirVerstat = r.GetStirVerstat().GetValue()
	c.StirStatus = r.GetStirStatus().GetValue()
	c.SipCallId = r.GetSipCallId().GetValue()
	c.CallbackSource = r.GetCallbackSource().GetValue()
	c.QueueTimeMs = decimal(r.GetQueueTimeMs())
	c.MachineDetectionDurationMs = decimal(r.GetMachineDetectionDurationMs())
	c.Insights = insightsView(r.GetInsights())
	for _, p := range r.GetConferences() {
		c.Conferences = append(c.Conferences, ParticipantView(p))
	}
	if h := r.GetHangup(); h != nil {
		c.HangupRequest = hangupView(r, h.GetRequest())
		c.Ending = !c.Terminal
	}
	c.Reconciliation = r.GetReconciled().GetReconciliation()
	c.Redacted = r.GetRedacted()
	return c
}

// terminalView sets what the winning terminal report says, each field it
// lacks filled from the next-ranked report of the same status: two
// reports of one ending (a status callback and its Event Streams copy, a
// callback and a retry that lost a parameter, the Dial action) complete
// each other; a report of another ending does not mix in.
func terminalView(c *callledgerv1.Call, r *statev1.CallRecord) {
	t := r.GetTerminal()
	c.Status, c.Terminal, c.StatusSource, c.EndedAt = t.GetStatus(), true, t.GetSource(), t.GetAt()
	c.DurationSeconds, c.SipResponseCode, c.ErrorCode, c.ErrorMessage = t.DurationSeconds, t.SipResponseCode, t.GetErrorCode(), t.GetErrorMessage()
	for _, o := range r.GetTerminalReports() {
		if o.GetStatus() != t.GetStatus() {
			continue
		}
		if c.DurationSeconds == nil {
			c.DurationSeconds = o.DurationSeconds
		}
		if c.SipResponseCode == nil {
			c.SipResponseCode = o.SipResponseCode
		}
		if c.ErrorCode == "" && c.ErrorMessage == "" {
			c.ErrorCode, c.ErrorMessage = o.GetErrorCode(), o.GetErrorMessage()
		}
	}
}

// recordingsView is every recording of the call, by RecordingSid: the best
// report's status, each field it lacks filled from the next report
// (ErrorCode only from reports of the same status), with its
// transcriptions. Records of projection version 1 kept one report per
// recording in recordings; they count as reports too.
func recordingsView(r *statev1.CallRecord) []*callledgerv1.Recording {
	reports := r.GetRecordingReports()
	if len(r.GetRecordings()) > 0 {
		reports = slices.Clone(reports)
		for _, old := range r.GetRecordings() {
			reports = insertBest(reports, old, (*statev1.RecordingReport).GetKey, byRecording, maxRecordingReports+1)
		}
	}
	var out []*callledgerv1.Recording
	for i := 0; i < len(reports); {
		j := i + 1
		for j < len(reports) && byRecording(reports[i], reports[j]) == 0 {
			j++
		}
		best := reports[i].GetRecording()
		rec := proto.CloneOf(best)
		for _, o := range reports[i+1 : j] {
			x := o.GetRecording()
			if rec.Url == "" {
				rec.Url = x.GetUrl()
			}
			if rec.DurationSeconds == nil {
				rec.DurationSeconds = x.DurationSeconds
			}
			if rec.Channels == nil {
				rec.Channels = x.Channels
			}
			if rec.Source == "" {
				rec.Source = x.GetSource()
			}
			if rec.StartTime == nil {
				rec.StartTime = x.GetStartTime()
			}
			if rec.Track == "" {
				rec.Track = x.GetTrack()
			}
			if rec.ErrorCode == "" && x.GetStatus() == best.GetStatus() {
				rec.ErrorCode = x.GetErrorCode()
			}
		}
		rec.Transcriptions = transcriptionsView(r.GetTranscriptions(), rec.GetRecordingSid())
		out = append(out, rec)
		i = j
	}
	return out
}

// transcriptionsView is the transcriptions of one recording, by
// TranscriptionSid, each the best report's, filled from the next.
func transcriptionsView(reports []*statev1.TranscriptionReport, recordingSid string) []*callledgerv1.Transcription {
	var out []*callledgerv1.Transcription
	for i := 0; i < len(reports); {
		j := i + 1
		for j < len(reports) && byTranscription(reports[i], reports[j]) == 0 {
			j++
		}
		if reports[i].GetRecordingSid() == recordingSid {
			tr := proto.CloneOf(reports[i].GetTranscription())
			for _, o := range reports[i+1 : j] {
				x := o.GetTranscription()
				if tr.Text == "" {
					tr.Text = x.GetText()
				}
				if tr.Url == "" {
					tr.Url = x.GetUrl()
				}
				if tr.Type == "" {
					tr.Type = x.GetType()
				}
			}
			out = append(out, tr)
		}
		i = j
	}
	return out
}

// insightsView is what the best Voice Insights summary says, each field
// it lacks filled from the next; the tags are the best summary's.
func insightsView(reports []*statev1.InsightsReport) *callledgerv1.CallInsights {
	if len(reports) == 0 {
		return nil
	}
	out := proto.CloneOf(reports[0].GetInsights())
	for _, o := range reports[1:] {
		x := o.GetInsights()
		if out.DisconnectedBy == "" {
			out.DisconnectedBy = x.GetDisconnectedBy()
		}
		if out.LastSipResponse == nil {
			out.LastSipResponse = x.LastSipResponse
		}
		if out.CallType == "" {
			out.CallType = x.GetCallType()
		}
	}
	return out
}

// decimal reads a number a Keyed value spells.
func decimal(k *statev1.Keyed) *int64 {
	if k == nil {
		return nil
	}
	n, err := strconv.ParseInt(k.GetValue(), 10, 64)
	if err != nil {
		return nil
	}
	return &n
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
