// Package callstate is the call-state projection's fold: it merges the facts
// each event reports into per-call records, and derives the Call a client
// sees from a record.
//
// The fold is order-insensitive and idempotent by construction: every field
// of a record is either a set (own event IDs, children), the minimum of
// times (first initiated, first ringing, ...), or the winner of a fixed
// total order over reports (the terminal status: own status callback >
// Event Streams > parent's Dial action > reconciliation, then the later
// report, then the larger event ID), or a maximum (last_position). Merging
// a report twice, or in any order, gives the same record.
package callstate

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
)

// Tx gives the fold the records an event touches. The fold reads each
// record once, changes it in memory, and hands every changed record back
// through Put; the caller writes them (and its checkpoint) atomically.
type Tx interface {
	// Get returns the record of sid, or nil when the call is unknown.
	Get(sid string) (*statev1.CallRecord, error)
	// Put stores a record the fold changed.
	Put(rec *statev1.CallRecord) error
}

// Source priorities: which channel's terminal report wins a conflict.
const (
	prioReconciliation int32 = 1 + iota
	prioDialAction
	prioEventStreams
	prioStatusCallback
)

func priority(s callledgerv1.Source) int32 {
	switch s {
	case callledgerv1.Source_SOURCE_STATUS_CALLBACK:
		return prioStatusCallback
	case callledgerv1.Source_SOURCE_EVENT_STREAMS:
		return prioEventStreams
	case callledgerv1.Source_SOURCE_DIAL_ACTION:
		return prioDialAction
	case callledgerv1.Source_SOURCE_RECONCILIATION:
		return prioReconciliation
	default:
		return 0
	}
}

// maxTreeDepth bounds walks up and down a call tree, so that SIDs that name
// each other in a cycle cannot make the fold loop.
const maxTreeDepth = 64

// Apply folds ev, found at log position pos, into the records it touches:
// the call of its stream and, through ParentCallSid or DialCallSid, the
// other leg it names (created as a placeholder when unknown). Events that
// name no valid CallSid change nothing.
func Apply(tx Tx, ev *callledgerv1.Event, pos uint64) error {
	sid := ev.GetCallSid()
	if !eventcodec.ValidCallSid(sid) {
		return nil
	}
	f := &fold{tx: tx, pos: pos}
	self, err := f.load(sid)
	if err != nil {
		return err
	}
	f.touch(self)
	id := EventKey(ev)
	addOwnEvent(self, id)
	at := eventTime(ev)
	key := &statev1.Key{Priority: priority(ev.GetSource()), TimeUnixNanos: at.UnixNano(), EventId: id}
	f.touchTime(self, at)

	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		r := b.CallStatusReported
		mergeStatus(self, key, r.GetStatus(), ev.GetSource(), r.CallDurationSeconds, r.SipResponseCode, at, true)
		mergeIdentity(self, key, r.GetAccountSid(), r.GetDirection(), r.GetFrom(), r.GetTo())
		mergeKeyed(&self.AnsweredBy, key, r.GetAnsweredBy())
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
		mergeStatus(self, key, d.GetParentStatus(), ev.GetSource(), nil, nil, at, true)
		mergeIdentity(self, key, d.GetAccountSid(), d.GetDirection(), d.GetFrom(), d.GetTo())
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
			mergeStatus(child, key, d.GetDialCallStatus(), ev.GetSource(), d.DialCallDurationSeconds, nil, at, true)
			if err := f.link(sid, child, key, at); err != nil {
				return err
			}
		}
	case *callledgerv1.Event_RecordingStatusReported:
		r := b.RecordingStatusReported
		mergeRecording(self, key, &callledgerv1.Recording{
			RecordingSid:    r.GetRecordingSid(),
			Status:          r.GetRecordingStatus(),
			Url:             r.GetRecordingUrl(),
			DurationSeconds: r.RecordingDurationSeconds,
			Channels:        r.RecordingChannels,
			Source:          r.GetRecordingSource(),
			StartTime:       r.GetRecordingStartTime(),
		})
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
		mergeHangupResult(self, &statev1.HangupResult{
			Key: key, RequestId: h.GetRequestId(), Outcome: callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, Status: h.GetStatus(),
		})
	case *callledgerv1.Event_HangupFailed:
		h := b.HangupFailed
		mergeHangupResult(self, &statev1.HangupResult{
			Key: key, RequestId: h.GetRequestId(), Outcome: callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED, Status: h.GetStatus(),
			ErrorCode: h.GetErrorCode(), ErrorMessage: h.GetErrorMessage(),
		})
	case *callledgerv1.Event_CallReconciled:
		if err := f.reconciled(self, ev, b.CallReconciled, key, at); err != nil {
			return err
		}
	}
	return f.flush()
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
	mergeStatus(self, key, r.GetStatus(), ev.GetSource(), dur, nil, statusAt, false)
	mergeIdentity(self, key, r.GetAccountSid(), r.GetDirection(), r.GetFrom(), r.GetTo())
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
	recs  []*statev1.CallRecord // loaded, by CallSid
	dirty []*statev1.CallRecord // in first-touch order, for a deterministic Put order
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
	return r, nil
}

// touch marks r changed, so that flush stores it.
func (f *fold) touch(r *statev1.CallRecord) {
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
				f.touch(n)
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

func (f *fold) flush() error {
	for _, r := range f.dirty {
		// The largest position, not the latest applied: a rebuild may fold
		// in any order and must still agree with the live projection.
		r.LastPosition = max(r.LastPosition, f.pos)
		if err := f.tx.Put(r); err != nil {
			return fmt.Errorf("store %s: %w", r.CallSid, err)
		}
	}
	return nil
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

// mergeStatus merges one status report. Terminal reports compete by source
// priority, then the later time, then the larger event ID; non-terminal
// ones by rank (queued < initiated < ringing < in-progress), then the
// higher priority, then the earlier time, then the smaller event ID. The
// earliest report of each early status sets its timestamp.
func mergeStatus(r *statev1.CallRecord, key *statev1.Key, st callledgerv1.CallStatus, src callledgerv1.Source, dur *int64, sip *int32, at time.Time, firsts bool) {
	if st == callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED {
		return // unknown values stay in the history and change nothing
	}
	rep := &statev1.StatusReport{Key: key, Status: st, Source: src, DurationSeconds: dur, SipResponseCode: sip, At: timestamppb.New(at)}
	if IsTerminal(st) {
		if r.Terminal == nil || terminalBeats(rep.Key, r.Terminal.Key) {
			r.Terminal = rep
		}
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
		rep.DurationSeconds, rep.SipResponseCode = nil, nil
		r.Nonterminal = rep
	}
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

// recordingRank orders a recording's statuses: a final one beats
// in-progress, which beats a mere mention.
func recordingRank(status string) int32 {
	switch status {
	case "":
		return 0
	case "in-progress":
		return 1
	default:
		return 2
	}
}

// mergeRecording merges one report of a recording, by RecordingSid: the
// report of the highest status rank wins, then the later one, then the
// larger event ID.
func mergeRecording(r *statev1.CallRecord, key *statev1.Key, rec *callledgerv1.Recording) {
	if rec.GetRecordingSid() == "" {
		return
	}
	k := proto.Clone(key).(*statev1.Key)
	k.Priority = recordingRank(rec.GetStatus())
	i, found := slices.BinarySearchFunc(r.Recordings, rec.GetRecordingSid(), func(x *statev1.RecordingReport, sid string) int {
		return strings.Compare(x.GetRecording().GetRecordingSid(), sid)
	})
	cand := &statev1.RecordingReport{Key: k, Recording: rec}
	if !found {
		r.Recordings = slices.Insert(r.Recordings, i, cand)
		return
	}
	if terminalBeats(k, r.Recordings[i].Key) {
		r.Recordings[i] = cand
	}
}

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
