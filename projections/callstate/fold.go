// Package callstate is the call-state projection's fold: it merges the facts
// each event reports into per-call records, and derives the Call a client
// sees from a record.
//
// The fold is order-insensitive and idempotent by construction: every field
// of a record is either a set (own event IDs, children), the minimum of
// times (first initiated, first ringing, ...), the winner of a fixed total
// order over reports (the terminal status: own status callback or AMD
// callback > Event Streams > parent's Dial action > reconciliation >
// conference callback > Voice Insights, then the later report, then the
// larger event ID), the best few reports of such an order (whose fields
// the view merges), a function of another record that is kept up to date
// whenever that record changes (a child's inferred end, a participant's
// conference end), or a maximum (last_position). Merging a report twice,
// or in any order, gives the same record. Conferences are folded the same
// way into records of their own.
package callstate

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
)

// Tx gives the fold the records an event touches. The fold reads each
// record once, changes it in memory, and hands every changed record back
// through Put (PutConference); the caller writes them (and its checkpoint)
// atomically.
type Tx interface {
	// Get returns the record of sid, or nil when the call is unknown.
	Get(sid string) (*statev1.CallRecord, error)
	// Put stores a record the fold changed.
	Put(rec *statev1.CallRecord) error
	// GetConference returns the record of a conference, or nil when it is
	// unknown.
	GetConference(sid string) (*statev1.ConferenceRecord, error)
	// PutConference stores a conference record the fold changed.
	PutConference(rec *statev1.ConferenceRecord) error
}

// Source priorities: which channel's report wins a conflict. The values are
// stored in records; new ones go below the first four, which keep theirs.
const (
	prioInferred       int32 = -3 // no report: a child of an ended parent
	prioVoiceInsights  int32 = -2 // a call summary, long after the call
	prioConference     int32 = -1 // ParticipantCallStatus of a participant-leave
	prioReconciliation int32 = 1
	prioDialAction     int32 = 2
	prioEventStreams   int32 = 3
	prioStatusCallback int32 = 4 // the call's own callbacks, status and AMD
)

func priority(s callledgerv1.Source) int32 {
	switch s {
	case callledgerv1.Source_SOURCE_STATUS_CALLBACK, callledgerv1.Source_SOURCE_AMD_CALLBACK:
		return prioStatusCallback
	case callledgerv1.Source_SOURCE_EVENT_STREAMS:
		return prioEventStreams
	case callledgerv1.Source_SOURCE_DIAL_ACTION:
		return prioDialAction
	case callledgerv1.Source_SOURCE_RECONCILIATION:
		return prioReconciliation
	case callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK:
		return prioConference
	case callledgerv1.Source_SOURCE_VOICE_INSIGHTS:
		return prioVoiceInsights
	case callledgerv1.Source_SOURCE_INFERRED:
		return prioInferred
	default:
		return 0
	}
}

// maxTreeDepth bounds walks up and down a call tree, so that SIDs that name
// each other in a cycle cannot make the fold loop.
const maxTreeDepth = 64

// Apply folds ev, found at log position pos, into the records it touches:
// the call of its stream and, through ParentCallSid or DialCallSid, the
// other leg it names (created as a placeholder when unknown); a conference
// callback's conference and the participant's call; and the legs below a
// call whose end changed. Events that name no valid CallSid or
// ConferenceSid change nothing.
func Apply(tx Tx, ev *callledgerv1.Event, pos uint64) error {
	f := &fold{tx: tx, pos: pos}
	id := EventKey(ev)
	at := eventTime(ev)
	key := &statev1.Key{Priority: priority(ev.GetSource()), TimeUnixNanos: at.UnixNano(), EventId: id}
	if e := ev.GetErasureRecorded(); e != nil {
		if err := f.erasure(e, at); err != nil {
			return err
		}
		return f.flush()
	}
	var self *statev1.CallRecord
	if sid := ev.GetCallSid(); eventcodec.ValidCallSid(sid) {
		var err error
		if self, err = f.load(sid); err != nil {
			return err
		}
		f.touch(self)
		addOwnEvent(self, id)
		f.touchTime(self, at)
	}
	if c := ev.GetConferenceEventReported(); c != nil {
		if err := f.conference(c, key, at); err != nil {
			return err
		}
		return f.flush()
	}
	if self == nil {
		return nil
	}
	if err := f.call(self, ev, key, at); err != nil {
		return err
	}
	return f.flush()
}

// call folds the body of an event of the call's own stream into self.
func (f *fold) call(self *statev1.CallRecord, ev *callledgerv1.Event, key *statev1.Key, at time.Time) error {
	sid := self.GetCallSid()
	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		r := b.CallStatusReported
		mergeStatus(self, key, r.GetStatus(), ev.GetSource(), endFacts{
			dur: r.CallDurationSeconds, sip: r.SipResponseCode, errCode: r.GetErrorCode(), errMsg: r.GetErrorMessage(),
		}, at, true)
		mergeIdentity(self, key, r.GetAccountSid(), r.GetDirection(), r.GetFrom(), r.GetTo())
		mergeKeyed(&self.Account, key, r.GetAccountSid())
		mergeKeyed(&self.AnsweredBy, key, r.GetAnsweredBy())
		mergeKeyed(&self.MachineDetectionDurationMs, key, optDecimal(r.MachineDetectionDurationMs))
		mergeKeyed(&self.CallerName, key, r.GetCallerName())
		mergeKeyed(&self.ForwardedFrom, key, r.GetForwardedFrom())
		mergeKeyed(&self.StirVerstat, key, r.GetStirVerstat())
		mergeKeyed(&self.StirStatus, key, r.GetStirStatus())
		mergeKeyed(&self.SipCallId, key, r.GetSipCallId())
		mergeKeyed(&self.CallbackSource, key, r.GetCallbackSource())
		mergeKeyed(&self.QueueTimeMs, key, optDecimal(r.QueueTimeMs))
		if r.GetRecordingSid() != "" {
			mergeRecording(self, key, &callledgerv1.Recording{RecordingSid: r.GetRecordingSid(), Url: r.GetRecordingUrl()})
		}
		if p := r.GetParentCallSid(); eventcodec.ValidCallSid(p) && p != sid {
			if err := f.link(p, self, key, at); err != nil {
				return err
			}
		}
	case *callledgerv1.Event_DialCompleted:
		d := b.DialCompleted
		mergeStatus(self, key, d.GetParentStatus(), ev.GetSource(), endFacts{}, at, true)
		mergeIdentity(self, key, d.GetAccountSid(), d.GetDirection(), d.GetFrom(), d.GetTo())
		mergeKeyed(&self.Account, key, d.GetAccountSid())
		mergeDial(self, key, &callledgerv1.DialOutcome{
			DialCallSid:             d.GetDialCallSid(),
			DialCallStatus:          d.GetDialCallStatus(),
			DialCallStatusRaw:       d.GetDialCallStatusRaw(),
			DialCallDurationSeconds: d.DialCallDurationSeconds,
			DialBridged:             d.DialBridged,
			ReceivedAt:              ev.GetReceivedAt(),
		})
		if re := recordingSidOf(d.GetRecordingUrl()); re != "" {
			mergeRecording(self, key, &callledgerv1.Recording{RecordingSid: re, Url: d.GetRecordingUrl()})
		}
		if c := d.GetDialCallSid(); eventcodec.ValidCallSid(c) && c != sid {
			child, err := f.load(c)
			if err != nil {
				return err
			}
			f.touch(child)
			f.touchTime(child, at)
			// The Dial action stands for the child's outcome at the Dial
			// action's rank: the child's own reports win over it.
			mergeStatus(child, key, d.GetDialCallStatus(), ev.GetSource(), endFacts{dur: d.DialCallDurationSeconds}, at, true)
			if err := f.link(sid, child, key, at); err != nil {
				return err
			}
		}
	case *callledgerv1.Event_RecordingStatusReported:
		r := b.RecordingStatusReported
		mergeKeyed(&self.Account, key, r.GetAccountSid())
		mergeRecording(self, key, &callledgerv1.Recording{
			RecordingSid:    r.GetRecordingSid(),
			Status:          r.GetRecordingStatus(),
			Url:             r.GetRecordingUrl(),
			DurationSeconds: r.RecordingDurationSeconds,
			Channels:        r.RecordingChannels,
			Source:          r.GetRecordingSource(),
			StartTime:       r.GetRecordingStartTime(),
			Track:           r.GetRecordingTrack(),
			ErrorCode:       r.GetErrorCode(),
		})
	case *callledgerv1.Event_TranscriptionReported:
		r := b.TranscriptionReported
		mergeKeyed(&self.Account, key, r.GetAccountSid())
		mergeRecording(self, key, &callledgerv1.Recording{RecordingSid: r.GetRecordingSid(), Url: r.GetRecordingUrl()})
		mergeTranscription(self, key, r.GetRecordingSid(), &callledgerv1.Transcription{
			TranscriptionSid: r.GetTranscriptionSid(),
			Status:           r.GetTranscriptionStatus(),
			Text:             r.GetTranscriptionText(),
			Url:              r.GetTranscriptionUrl(),
			Type:             r.GetTranscriptionType(),
		})
	case *callledgerv1.Event_CallSummaryReported:
		if err := f.summary(self, ev, b.CallSummaryReported, key, at); err != nil {
			return err
		}
	case *callledgerv1.Event_CallEventReported:
		mergeKeyed(&self.Account, key, b.CallEventReported.GetAccountSid())
	case *callledgerv1.Event_HangupRequested:
		h := b.HangupRequested
		mergeHangup(self, key, &callledgerv1.HangupRequest{
			RequestId:   h.GetRequestId(),
			RequestedBy: h.GetRequestedBy(),
			RequestedAt: timestamppb.New(at),
			EndCall:     h.GetEndCall(),
		})
	case *callledgerv1.Event_HangupSent:
		h := b.HangupSent
		mergeKeyed(&self.Account, key, h.GetAccountSid())
		mergeHangupResult(self, &statev1.HangupResult{
			Key: key, RequestId: h.GetRequestId(), Outcome: callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, Status: h.GetStatus(),
		})
	case *callledgerv1.Event_HangupFailed:
		h := b.HangupFailed
		mergeKeyed(&self.Account, key, h.GetAccountSid())
		mergeHangupResult(self, &statev1.HangupResult{
			Key: key, RequestId: h.GetRequestId(), Outcome: callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED, Status: h.GetStatus(),
			ErrorCode: h.GetErrorCode(), ErrorMessage: h.GetErrorMessage(),
		})
	case *callledgerv1.Event_CallReconciled:
		return f.reconciled(self, ev, b.CallReconciled, key, at)
	}
	return nil
}

// summary merges a Voice Insights call summary. Its status competes at the
// Voice Insights rank, below every status report (a summary comes long
// after the call, from another system); it sets no status times. What it
// says of the call beyond that is kept in the call's few best summaries
// (complete before partial, then the later).
func (f *fold) summary(self *statev1.CallRecord, ev *callledgerv1.Event, s *callledgerv1.CallSummaryReported, key *statev1.Key, at time.Time) error {
	statusAt, facts := at, endFacts{}
	if IsTerminal(s.GetStatus()) {
		if t := s.GetEndTime(); t != nil {
			statusAt = t.AsTime()
		}
		facts.dur = s.DurationSeconds
		facts.sip = s.LastSipResponse
	}
	mergeStatus(self, key, s.GetStatus(), ev.GetSource(), facts, statusAt, false)
	mergeIdentity(self, key, s.GetAccountSid(), "", s.GetFrom(), s.GetTo())
	mergeKeyed(&self.Account, key, s.GetAccountSid())
	mergeKeyed(&self.AnsweredBy, key, s.GetAnsweredBy())
	if t := s.GetStartTime(); t != nil {
		f.touchTime(self, t.AsTime())
	}
	rank := int32(0)
	switch s.GetProcessingState() {
	case "complete":
		rank = 2
	case "partial":
		rank = 1
	}
	rk := &statev1.Key{Priority: rank, TimeUnixNanos: key.GetTimeUnixNanos(), EventId: key.GetEventId()}
	self.Insights = insertBest(self.Insights, &statev1.InsightsReport{Key: rk, Insights: &callledgerv1.CallInsights{
		DisconnectedBy:  s.GetDisconnectedBy(),
		LastSipResponse: s.LastSipResponse,
		Tags:            s.GetTags(),
		ProcessingState: s.GetProcessingState(),
		CallType:        s.GetCallType(),
	}}, func(r *statev1.InsightsReport) *statev1.Key { return r.GetKey() }, nil, maxInsightsReports)
	if p := s.GetParentCallSid(); eventcodec.ValidCallSid(p) && p != self.GetCallSid() {
		return f.link(p, self, key, at)
	}
	return nil
}

// reconciled merges a read of Twilio's REST API. Every fact it reports
// competes at the lowest priority, so it fills what no webhook reported and
// never overrides what one did: a terminal status beats a non-terminal one
// whatever its source (the REST API saw the call end), but a webhook's
// terminal report beats the REST one, and a non-terminal REST status only
// counts when it ranks above every reported one. It sets no
// initiated/ringing/answered time: the resource does not say when those
// were.
func (f *fold) reconciled(self *statev1.CallRecord, ev *callledgerv1.Event, r *callledgerv1.CallReconciled, key *statev1.Key, at time.Time) error {
	fetched := ev.GetReceivedAt()
	rk := &statev1.Key{Priority: key.GetPriority(), TimeUnixNanos: fetched.AsTime().UnixNano(), EventId: key.GetEventId()}
	if self.Reconciled == nil || latestBeats(rk, self.Reconciled.GetKey()) {
		self.Reconciled = &statev1.ReconcileReport{Key: rk, Reconciliation: &callledgerv1.Reconciliation{
			FetchedAt: fetched, Status: r.GetStatus(), NotFound: r.GetNotFound(),
		}}
	}
	if r.GetNotFound() {
		return nil
	}
	statusAt := at
	var dur *int64
	if IsTerminal(r.GetStatus()) {
		if t := r.GetEndTime(); t != nil {
			statusAt = t.AsTime()
		}
		dur = r.DurationSeconds
	}
	mergeStatus(self, key, r.GetStatus(), ev.GetSource(), endFacts{dur: dur}, statusAt, false)
	mergeIdentity(self, key, r.GetAccountSid(), r.GetDirection(), r.GetFrom(), r.GetTo())
	mergeKeyed(&self.Account, key, r.GetAccountSid())
	mergeKeyed(&self.AnsweredBy, key, r.GetAnsweredBy())
	if t := r.GetStartTime(); t != nil {
		f.touchTime(self, t.AsTime())
	}
	if p := r.GetParentCallSid(); eventcodec.ValidCallSid(p) && p != self.GetCallSid() {
		return f.link(p, self, key, at)
	}
	return nil
}

// fold holds the records one event touches: a handful, so slices beat
// maps (a rebuild folds millions of events, each with its own fold).
type fold struct {
	tx    Tx
	pos   uint64
	recs  []*statev1.CallRecord    // loaded, by CallSid
	ends  []*timestamppb.Timestamp // each loaded record's end when loaded (endOf)
	dirty []*statev1.CallRecord    // in first-touch order, for a deterministic Put order
	named []*statev1.CallRecord    // the dirty records the event itself concerns (touch, not carry)
	confs []*statev1.ConferenceRecord
}

func (f *fold) load(sid string) (*statev1.CallRecord, error) {
	for _, r := range f.recs {
		if r.CallSid == sid {
			return r, nil
		}
	}
	r, err := f.tx.Get(sid)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", sid, err)
	}
	if r == nil {
		r = &statev1.CallRecord{CallSid: sid, RootCallSid: sid}
	}
	f.recs = append(f.recs, r)
	f.ends = append(f.ends, endOf(r))
	return r, nil
}

// loadConference returns the record of a conference, created when unknown;
// the fold stores it at flush.
func (f *fold) loadConference(sid string) (*statev1.ConferenceRecord, error) {
	for _, r := range f.confs {
		if r.ConferenceSid == sid {
			return r, nil
		}
	}
	r, err := f.tx.GetConference(sid)
	if err != nil {
		return nil, fmt.Errorf("load conference %s: %w", sid, err)
	}
	if r == nil {
		r = &statev1.ConferenceRecord{ConferenceSid: sid}
	}
	f.confs = append(f.confs, r)
	return r, nil
}

// touch marks r changed by the event, so that flush stores it with the
// event's position.
func (f *fold) touch(r *statev1.CallRecord) {
	f.carry(r)
	if !slices.Contains(f.named, r) {
		f.named = append(f.named, r)
	}
}

// carry marks r changed only because another record changed (an end
// carried down the tree, a conference's end carried to its participants):
// flush stores it without the event's position. Whether such a change
// happens at all depends on the order the events come in, so it must not
// move last_position, which a rebuild folding in any order reproduces.
func (f *fold) carry(r *statev1.CallRecord) {
	if !slices.Contains(f.dirty, r) {
		f.dirty = append(f.dirty, r)
	}
}

func (f *fold) touchTime(r *statev1.CallRecord, at time.Time) {
	r.StartTime = minTime(r.StartTime, at)
}

// link records that parent dialled child: the child's parent (the winner
// by source priority, then the smaller event ID, should two legs claim it)
// and the parent's set of children, creating the parent as a placeholder
// when unknown. Then it brings root_call_sid up to date below the parent.
func (f *fold) link(parentSid string, child *statev1.CallRecord, key *statev1.Key, at time.Time) error {
	parent, err := f.load(parentSid)
	if err != nil {
		return err
	}
	f.touch(parent)
	f.touchTime(parent, at)
	if i, found := slices.BinarySearch(parent.ChildCallSids, child.CallSid); !found {
		parent.ChildCallSids = slices.Insert(parent.ChildCallSids, i, child.CallSid)
	}
	cand := &statev1.Link{Key: key, CallSid: parentSid}
	if cur := child.GetParent(); cur == nil || linkBeats(cand, cur) {
		child.Parent = cand
		inferFrom(child, parent)
	}
	return f.reroot(parent)
}

// reroot recomputes root_call_sid of r and every leg below it.
func (f *fold) reroot(r *statev1.CallRecord) error {
	root, err := f.rootOf(r)
	if err != nil {
		return err
	}
	queue := []*statev1.CallRecord{r}
	var seen []string
	for depth := 0; len(queue) > 0 && depth < maxTreeDepth; depth++ {
		var next []*statev1.CallRecord
		for _, n := range queue {
			if slices.Contains(seen, n.CallSid) {
				continue
			}
			seen = append(seen, n.CallSid)
			if n.RootCallSid != root {
				n.RootCallSid = root
				f.carry(n) // derived from the tree above: no position of its own
			}
			for _, c := range n.ChildCallSids {
				child, err := f.load(c)
				if err != nil {
					return err
				}
				// Only legs whose parent link points back here belong
				// below n (a leg two parents claim has one parent).
				if child.GetParent().GetCallSid() == n.CallSid {
					next = append(next, child)
				}
			}
		}
		queue = next
	}
	return nil
}

// rootOf follows parent links up from r. In a cycle (SIDs naming each
// other, which Twilio never sends), the smallest SID of the walk is the
// root, so the answer does not depend on where the walk started.
func (f *fold) rootOf(r *statev1.CallRecord) (string, error) {
	walk := []string{r.CallSid} // also the set of SIDs seen
	cur := r
	for range maxTreeDepth {
		p := cur.GetParent().GetCallSid()
		if p == "" {
			return cur.CallSid, nil
		}
		if slices.Contains(walk, p) {
			return slices.Min(walk), nil
		}
		next, err := f.load(p)
		if err != nil {
			return "", err
		}
		walk = append(walk, p)
		cur = next
	}
	return cur.CallSid, nil
}

// flush hands the changed records back, once every changed end is carried
// down the tree (settleEnds).
func (f *fold) flush() error {
	if err := f.settleEnds(); err != nil {
		return err
	}
	if err := f.keepRedacted(); err != nil {
		return err
	}
	for _, r := range f.dirty {
		// The largest position, not the latest applied: a rebuild may fold
		// in any order and must still agree with the live projection.
		if slices.Contains(f.named, r) {
			r.LastPosition = max(r.LastPosition, f.pos)
		}
		if err := f.tx.Put(r); err != nil {
			return fmt.Errorf("store %s: %w", r.CallSid, err)
		}
	}
	for _, c := range f.confs {
		c.LastPosition = max(c.LastPosition, f.pos)
		if err := f.tx.PutConference(c); err != nil {
			return fmt.Errorf("store conference %s: %w", c.ConferenceSid, err)
		}
	}
	return nil
}

// settleEnds carries every end that changed down the tree: the children of
// a call whose end changed infer theirs from it, which may change their
// own end, and so on. A record is looked at maxTreeDepth times at most, so
// that SIDs naming each other cannot loop.
func (f *fold) settleEnds() error {
	for _, r := range f.dirty {
		if r.GetTerminal() != nil {
			r.InferredEnd = nil // it ended by a report of its own
		}
	}
	var passes map[string]int
	for changed := true; changed; {
		changed = false
		for i := 0; i < len(f.dirty); i++ { // dirty grows as children change
			r := f.dirty[i]
			j := slices.Index(f.recs, r)
			end := endOf(r)
			if sameTime(end, f.ends[j]) {
				continue
			}
			if passes == nil {
				passes = map[string]int{}
			}
			if passes[r.CallSid] >= maxTreeDepth {
				continue
			}
			passes[r.CallSid]++
			f.ends[j], changed = end, true
			for _, c := range r.GetChildCallSids() {
				child, err := f.load(c)
				if err != nil {
					return err
				}
				if child.GetParent().GetCallSid() == r.CallSid && inferFrom(child, r) {
					f.carry(child)
				}
			}
		}
	}
	return nil
}

func sameTime(a, b *timestamppb.Timestamp) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.GetSeconds() == b.GetSeconds() && a.GetNanos() == b.GetNanos()
}

// endOf is when a call ended: its winning terminal report's time, else the
// end it inferred from its parent's, else nil.
func endOf(r *statev1.CallRecord) *timestamppb.Timestamp {
	if t := r.GetTerminal(); t != nil {
		return t.GetAt()
	}
	return r.GetInferredEnd().GetAt()
}

// inferFrom sets child's inferred end to parent's end (none while the
// parent has not ended, or when the child has a terminal report of its
// own) and reports whether it changed.
func inferFrom(child, parent *statev1.CallRecord) bool {
	cur, end := child.GetInferredEnd(), endOf(parent)
	if end == nil || child.GetTerminal() != nil {
		child.InferredEnd = nil
		return cur != nil
	}
	if cur.GetParentCallSid() == parent.GetCallSid() && sameTime(cur.GetAt(), end) {
		return false
	}
	child.InferredEnd = &statev1.InferredEnd{ParentCallSid: parent.GetCallSid(), At: &timestamppb.Timestamp{Seconds: end.GetSeconds(), Nanos: end.GetNanos()}}
	return true
}

// EventKey is what the fold knows an event by (statev1.Key.event_id): the
// 16 bytes of the event's UUID; an event whose ID does not parse (never
// written by callledger) is keyed by its text.
func EventKey(ev *callledgerv1.Event) []byte {
	id, err := uuid.Parse(ev.GetEventId())
	if err != nil {
		return []byte(ev.GetEventId())
	}
	return id[:]
}

// eventTime is Twilio's time of the fact when the event carries one, else
// the time the server received it.
func eventTime(ev *callledgerv1.Event) time.Time {
	if t := ev.GetReportedAt(); t != nil {
		return t.AsTime()
	}
	return ev.GetReceivedAt().AsTime()
}

func addOwnEvent(r *statev1.CallRecord, id []byte) {
	i, found := slices.BinarySearchFunc(r.OwnEventIds, id, bytes.Compare)
	if !found {
		r.OwnEventIds = slices.Insert(r.OwnEventIds, i, id)
	}
}

func minTime(cur *timestamppb.Timestamp, t time.Time) *timestamppb.Timestamp {
	if cur == nil || t.Before(cur.AsTime()) {
		return timestamppb.New(t)
	}
	return cur
}

// IsTerminal reports whether s ends a call.
func IsTerminal(s callledgerv1.CallStatus) bool {
	return s >= callledgerv1.CallStatus_CALL_STATUS_COMPLETED && s <= callledgerv1.CallStatus_CALL_STATUS_CANCELED
}

// endFacts are what a report says of how a call ended, beside its status.
type endFacts struct {
	dur             *int64
	sip             *int32
	errCode, errMsg string
}

// maxTerminalReports bounds the terminal reports a record keeps: the best
// of a set under a total order are a function of the set, so keeping a few
// stays order-insensitive.
const maxTerminalReports = 8

// mergeStatus merges one status report. Terminal reports compete by source
// priority, then the later time, then the larger event ID; the best few are
// kept, so that the view can fill what the winner lacks. Non-terminal ones
// compete by rank (queued < initiated < ringing < in-progress), then the
// higher priority, then the earlier time, then the smaller event ID. The
// earliest report of each early status sets its timestamp.
func mergeStatus(r *statev1.CallRecord, key *statev1.Key, st callledgerv1.CallStatus, src callledgerv1.Source, facts endFacts, at time.Time, firsts bool) {
	if st == callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED {
		return // unknown values stay in the history and change nothing
	}
	rep := &statev1.StatusReport{Key: key, Status: st, Source: src, DurationSeconds: facts.dur, SipResponseCode: facts.sip,
		At: timestamppb.New(at), ErrorCode: facts.errCode, ErrorMessage: facts.errMsg}
	if IsTerminal(st) {
		if r.Terminal == nil || terminalBeats(rep.Key, r.Terminal.Key) {
			r.Terminal = rep
		}
		r.TerminalReports = insertBest(r.TerminalReports, rep, (*statev1.StatusReport).GetKey, nil, maxTerminalReports)
		return
	}
	switch {
	case !firsts:
	case st == callledgerv1.CallStatus_CALL_STATUS_INITIATED:
		r.InitiatedAt = minTime(r.InitiatedAt, at)
	case st == callledgerv1.CallStatus_CALL_STATUS_RINGING:
		r.RingingAt = minTime(r.RingingAt, at)
	case st == callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS:
		r.AnsweredAt = minTime(r.AnsweredAt, at)
	}
	cur := r.Nonterminal
	if cur == nil || st > cur.Status || (st == cur.Status && earliestBeats(rep.Key, cur.Key)) {
		rep.DurationSeconds, rep.SipResponseCode, rep.ErrorCode, rep.ErrorMessage = nil, nil, "", ""
		r.Nonterminal = rep
	}
}

// insertBest inserts x into list, which is sorted best first by
// terminalBeats on keyOf (within groups that same says are the same, when
// same is set, which orders groups), unless an element with x's event ID
// is there already (the same event applied again), and keeps at most n
// per group.
func insertBest[T any](list []T, x T, keyOf func(T) *statev1.Key, group func(a, b T) int, n int) []T {
	k := keyOf(x)
	for _, y := range list {
		if (group == nil || group(x, y) == 0) && bytes.Equal(keyOf(y).GetEventId(), k.GetEventId()) {
			return list
		}
	}
	i := 0
	for i < len(list) {
		if group != nil {
			if c := group(x, list[i]); c != 0 {
				if c < 0 {
					break
				}
				i++
				continue
			}
		}
		if terminalBeats(k, keyOf(list[i])) {
			break
		}
		i++
	}
	list = slices.Insert(list, i, x)
	// Drop the group's elements past n.
	count := 0
	for j := 0; j < len(list); j++ {
		if group != nil && group(x, list[j]) != 0 {
			continue
		}
		count++
		if count > n {
			list = slices.Delete(list, j, j+1)
			j--
		}
	}
	return list
}

// optDecimal spells an optional number as Keyed values hold it.
func optDecimal(n *int64) string {
	if n == nil {
		return ""
	}
	return strconv.FormatInt(*n, 10)
}

// terminalBeats orders terminal reports: priority, later time, larger ID.
func terminalBeats(a, b *statev1.Key) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if a.TimeUnixNanos != b.TimeUnixNanos {
		return a.TimeUnixNanos > b.TimeUnixNanos
	}
	return bytes.Compare(a.EventId, b.EventId) > 0
}

// earliestBeats orders reports of facts that do not change over a call
// (who called whom, answered by): priority, earlier time, smaller ID.
func earliestBeats(a, b *statev1.Key) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if a.TimeUnixNanos != b.TimeUnixNanos {
		return a.TimeUnixNanos < b.TimeUnixNanos
	}
	return bytes.Compare(a.EventId, b.EventId) < 0
}

// latestBeats orders reports where the newest fact counts (the last Dial
// action): later time, larger ID.
func latestBeats(a, b *statev1.Key) bool {
	if a.TimeUnixNanos != b.TimeUnixNanos {
		return a.TimeUnixNanos > b.TimeUnixNanos
	}
	return bytes.Compare(a.EventId, b.EventId) > 0
}

func linkBeats(a, b *statev1.Link) bool {
	if a.Key.Priority != b.Key.Priority {
		return a.Key.Priority > b.Key.Priority
	}
	if c := bytes.Compare(a.Key.EventId, b.Key.EventId); c != 0 {
		return c < 0
	}
	return a.CallSid < b.CallSid
}

func mergeIdentity(r *statev1.CallRecord, key *statev1.Key, account, direction, from, to string) {
	if account == "" && direction == "" && from == "" && to == "" {
		return
	}
	if r.Identity == nil || earliestBeats(key, r.Identity.Key) {
		r.Identity = &statev1.Identity{Key: key, AccountSid: account, Direction: direction, From: from, To: to}
	}
}

func mergeKeyed(dst **statev1.Keyed, key *statev1.Key, value string) {
	if value == "" {
		return
	}
	if *dst == nil || earliestBeats(key, (*dst).Key) {
		*dst = &statev1.Keyed{Key: key, Value: value}
	}
}

// mergeHangup keeps the latest hang-up request (later time, then larger
// ID): the one a client sees.
func mergeHangup(r *statev1.CallRecord, key *statev1.Key, req *callledgerv1.HangupRequest) {
	if r.Hangup == nil || latestBeats(key, r.Hangup.GetKey()) {
		r.Hangup = &statev1.HangupReport{Key: key, Request: req}
	}
}

// mergeHangupResult keeps one REST outcome per request_id: sent beats
// failed (a retried update that met an already ended call must not hide
// the one that ended it), then the later report, then the larger ID.
func mergeHangupResult(r *statev1.CallRecord, res *statev1.HangupResult) {
	if res.GetRequestId() == "" {
		return
	}
	i, found := slices.BinarySearchFunc(r.HangupResults, res.GetRequestId(), func(x *statev1.HangupResult, id string) int {
		return strings.Compare(x.GetRequestId(), id)
	})
	if !found {
		r.HangupResults = slices.Insert(r.HangupResults, i, res)
		return
	}
	cur := r.HangupResults[i]
	sent := func(x *statev1.HangupResult) bool {
		return x.GetOutcome() == callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT
	}
	if sent(res) != sent(cur) {
		if sent(res) {
			r.HangupResults[i] = res
		}
		return
	}
	if latestBeats(res.GetKey(), cur.GetKey()) {
		r.HangupResults[i] = res
	}
}

func mergeDial(r *statev1.CallRecord, key *statev1.Key, out *callledgerv1.DialOutcome) {
	if r.LastDial == nil || latestBeats(key, r.LastDial.Key) {
		r.LastDial = &statev1.DialReport{Key: key, Outcome: out}
	}
}

// recordingRank orders a recording's statuses along Twilio's lifecycle
// (docs/EVENTS.md): a mention (a status callback's RecordingSid) <
// in-progress or paused (which alternate: the later wins) < stopped <
// processing < absent < failed < completed. A recording that ever completed
// has its file, whatever came after; absent (too short or silent) and
// failed (encryption) end one that never did. Statuses Twilio may add rank
// with in-progress.
func recordingRank(status string) int32 {
	switch status {
	case "":
		return 0
	case "stopped":
		return 2
	case "processing":
		return 3
	case "absent":
		return 4
	case "failed":
		return 5
	case "completed":
		return 6
	default: // in-progress, paused, and anything new
		return 1
	}
}

// maxRecordingReports bounds the reports kept per recording.
const maxRecordingReports = 4

// mergeRecording merges one report of a recording, by RecordingSid: the
// reports of the highest status rank come first, then the later, then the
// larger event ID; the best few are kept, and the view takes the first's
// status and fills what it lacks from the next.
func mergeRecording(r *statev1.CallRecord, key *statev1.Key, rec *callledgerv1.Recording) {
	if rec.GetRecordingSid() == "" {
		return
	}
	k := &statev1.Key{Priority: recordingRank(rec.GetStatus()), TimeUnixNanos: key.GetTimeUnixNanos(), EventId: key.GetEventId()}
	r.RecordingReports = insertBest(r.RecordingReports, &statev1.RecordingReport{Key: k, Recording: rec},
		(*statev1.RecordingReport).GetKey, byRecording, maxRecordingReports)
}

func byRecording(a, b *statev1.RecordingReport) int {
	return strings.Compare(a.GetRecording().GetRecordingSid(), b.GetRecording().GetRecordingSid())
}

// transcriptionRank orders a transcription's statuses: completed and
// failed end it, in-progress does not.
func transcriptionRank(status string) int32 {
	switch status {
	case "":
		return 0
	case "completed":
		return 3
	case "failed":
		return 2
	default:
		return 1
	}
}

// maxTranscriptionReports bounds the reports kept per transcription.
const maxTranscriptionReports = 4

// mergeTranscription merges one transcription callback, by RecordingSid
// and TranscriptionSid, as recordings are merged.
func mergeTranscription(r *statev1.CallRecord, key *statev1.Key, recordingSid string, tr *callledgerv1.Transcription) {
	k := &statev1.Key{Priority: transcriptionRank(tr.GetStatus()), TimeUnixNanos: key.GetTimeUnixNanos(), EventId: key.GetEventId()}
	r.Transcriptions = insertBest(r.Transcriptions, &statev1.TranscriptionReport{Key: k, RecordingSid: recordingSid, Transcription: tr},
		(*statev1.TranscriptionReport).GetKey, byTranscription, maxTranscriptionReports)
}

func byTranscription(a, b *statev1.TranscriptionReport) int {
	if c := strings.Compare(a.GetRecordingSid(), b.GetRecordingSid()); c != 0 {
		return c
	}
	return strings.Compare(a.GetTranscription().GetTranscriptionSid(), b.GetTranscription().GetTranscriptionSid())
}

// maxInsightsReports bounds the Voice Insights summaries a record keeps.
const maxInsightsReports = 4

// recordingSidOf extracts the RecordingSid from a Twilio recording URL
// (…/Recordings/RE…), as a Dial action reports it.
func recordingSidOf(url string) string {
	i := strings.LastIndex(url, "/Recordings/")
	if i < 0 {
		return ""
	}
	sid := url[i+len("/Recordings/"):]
	sid, _, _ = strings.Cut(sid, ".")
	if len(sid) != 34 || !strings.HasPrefix(sid, "RE") {
		return ""
	}
	return sid
}
