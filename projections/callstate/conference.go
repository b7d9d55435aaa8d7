package callstate

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
)

// conference folds a conference callback into its conference's record
// and, for a participant's event, into the participant's call (created as
// a placeholder when unknown). A participant's facts are merged by the
// same function into both records, so that the conference and the call
// say the same of it; the conference's end is copied into every
// participant, in both records, whenever it changes.
func (f *fold) conference(c *callledgerv1.ConferenceEventReported, key *statev1.Key, at time.Time) error {
	if !eventcodec.ValidConferenceSid(c.GetConferenceSid()) {
		return nil
	}
	conf, err := f.loadConference(c.GetConferenceSid())
	if err != nil {
		return err
	}
	if i, found := slices.BinarySearchFunc(conf.EventIds, key.GetEventId(), bytes.Compare); !found {
		conf.EventIds = slices.Insert(conf.EventIds, i, key.GetEventId())
	}
	conf.StartTime = minTime(conf.StartTime, at)
	ck := conferenceKey(key, c)
	mergeKeyed(&conf.Account, key, c.GetAccountSid())
	mergeKeyed(&conf.FriendlyName, key, c.GetFriendlyName())
	switch c.GetEvent() {
	case callledgerv1.ConferenceEvent_CONFERENCE_EVENT_CONFERENCE_START:
		if conf.Started == nil || conferenceLater(conf.Started, ck) {
			conf.Started = ck
		}
	case callledgerv1.ConferenceEvent_CONFERENCE_EVENT_CONFERENCE_END:
		if conf.Ended == nil || conferenceLater(conf.Ended.GetKey(), ck) {
			reason := c.GetReasonConferenceEnded()
			if reason == "" {
				reason = c.GetReason()
			}
			conf.Ended = &statev1.ConferenceEnd{Key: ck, Reason: reason, CallSidEnding: c.GetCallSidEndingConference(),
				LabelEnding: c.GetParticipantLabelEndingConference()}
		}
	}
	end := conf.GetEnded().GetKey()
	if sid := c.GetCallSid(); eventcodec.ValidCallSid(sid) {
		p := participantOf(&conf.Participants, conf.GetConferenceSid(), sid)
		mergeParticipant(p, ck, c)
		call, err := f.load(sid)
		if err != nil {
			return err
		}
		f.touch(call)
		f.touchTime(call, at)
		mergeParticipant(participantOf(&call.Conferences, conf.GetConferenceSid(), sid), ck, c)
		if call.GetRedacted() {
			redactParticipant(p) // the call's copy is redacted at flush
		}
		mergeKeyed(&call.Account, key, c.GetAccountSid())
		if c.GetEvent() == callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_LEAVE {
			// The participant's call status as it left: a report of the
			// call's own status, ranked below every other channel's.
			mergeStatus(call, key, parseParticipantStatus(c.GetParticipantCallStatus()), callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK, endFacts{}, at, false)
		}
	}
	// Every participant, in the conference's record and in its call's,
	// holds the conference's end.
	for _, p := range conf.Participants {
		if sameKey(p.GetConferenceEnd(), end) {
			continue
		}
		p.ConferenceEnd = end
		call, err := f.load(p.GetCallSid())
		if err != nil {
			return err
		}
		cp := participantOf(&call.Conferences, conf.GetConferenceSid(), p.GetCallSid())
		if !sameKey(cp.GetConferenceEnd(), end) {
			cp.ConferenceEnd = end
			f.carry(call)
		}
	}
	if sid := c.GetCallSid(); eventcodec.ValidCallSid(sid) {
		// A participant new to the conference's record above got its end;
		// its call's copy too.
		call, err := f.load(sid)
		if err != nil {
			return err
		}
		participantOf(&call.Conferences, conf.GetConferenceSid(), sid).ConferenceEnd = end
	}
	return nil
}

// parseParticipantStatus maps ParticipantCallStatus, a call status (some
// simulators write the participant resource's "complete").
func parseParticipantStatus(s string) callledgerv1.CallStatus {
	if s == "complete" {
		return callledgerv1.CallStatus_CALL_STATUS_COMPLETED
	}
	return parseStatus(s)
}

// parseStatus maps a CallStatus as Twilio writes it.
func parseStatus(s string) callledgerv1.CallStatus {
	if v, ok := callledgerv1.CallStatus_value["CALL_STATUS_"+strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]; ok && s == strings.ToLower(s) {
		return callledgerv1.CallStatus(v)
	}
	return callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED
}

// conferenceKey orders a conference's callbacks: by Twilio's time, then
// by SequenceNumber (Timestamp has one-second resolution), then by event
// ID. The sequence number is kept in the key's priority (-1 when absent).
func conferenceKey(key *statev1.Key, c *callledgerv1.ConferenceEventReported) *statev1.Key {
	seq := int32(-1)
	if n := c.SequenceNumber; n != nil && *n >= 0 && *n <= 1<<30 {
		seq = int32(*n)
	}
	return &statev1.Key{Priority: seq, TimeUnixNanos: key.GetTimeUnixNanos(), EventId: key.GetEventId()}
}

// conferenceLater reports whether conference callback a comes after b.
func conferenceLater(a, b *statev1.Key) bool {
	if a.GetTimeUnixNanos() != b.GetTimeUnixNanos() {
		return a.GetTimeUnixNanos() > b.GetTimeUnixNanos()
	}
	if a.GetPriority() != b.GetPriority() {
		return a.GetPriority() > b.GetPriority()
	}
	return bytes.Compare(a.GetEventId(), b.GetEventId()) > 0
}

func sameKey(a, b *statev1.Key) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.GetPriority() == b.GetPriority() && a.GetTimeUnixNanos() == b.GetTimeUnixNanos() && bytes.Equal(a.GetEventId(), b.GetEventId())
}

// participantOf returns the participant record of call sid in list,
// sorted by CallSid, inserting it when missing.
func participantOf(list *[]*statev1.ParticipantRecord, conferenceSid, sid string) *statev1.ParticipantRecord {
	i, found := slices.BinarySearchFunc(*list, [2]string{conferenceSid, sid}, func(p *statev1.ParticipantRecord, k [2]string) int {
		if c := strings.Compare(p.GetConferenceSid(), k[0]); c != 0 {
			return c
		}
		return strings.Compare(p.GetCallSid(), k[1])
	})
	if !found {
		*list = slices.Insert(*list, i, &statev1.ParticipantRecord{ConferenceSid: conferenceSid, CallSid: sid})
	}
	return (*list)[i]
}

// mergeParticipant merges one participant's callback: its first and latest
// join, its latest leave, and the latest value of each state it reports.
// A hold, unhold, mute or unmute event says its state even without the
// parameter.
func mergeParticipant(p *statev1.ParticipantRecord, k *statev1.Key, c *callledgerv1.ConferenceEventReported) {
	hold, muted := c.Hold, c.Muted
	switch c.GetEvent() {
	case callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_JOIN:
		if p.FirstJoin == nil || conferenceLater(p.FirstJoin, k) {
			p.FirstJoin = k
		}
		if p.LastJoin == nil || conferenceLater(k, p.LastJoin) {
			p.LastJoin = k
		}
	case callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_LEAVE:
		if p.LastLeave == nil || conferenceLater(k, p.LastLeave.GetKey()) {
			p.LastLeave = &statev1.LeaveReport{Key: k, Reason: c.GetReasonParticipantLeft(), CallStatus: c.GetParticipantCallStatus()}
		}
	case callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_HOLD:
		hold = orBool(hold, true)
	case callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_UNHOLD:
		hold = orBool(hold, false)
	case callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_MUTE:
		muted = orBool(muted, true)
	case callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_UNMUTE:
		muted = orBool(muted, false)
	}
	latestBool(&p.Hold, k, hold)
	latestBool(&p.Muted, k, muted)
	latestBool(&p.Coaching, k, c.Coaching)
	latestKeyed(&p.Label, k, c.GetParticipantLabel())
	latestKeyed(&p.CallSidToCoach, k, c.GetCallSidToCoach())
	latestKeyed(&p.FriendlyName, k, c.GetFriendlyName())
}

func orBool(b *bool, def bool) *bool {
	if b != nil {
		return b
	}
	return &def
}

func latestBool(dst **statev1.KeyedBool, k *statev1.Key, v *bool) {
	if v == nil {
		return
	}
	if *dst == nil || conferenceLater(k, (*dst).GetKey()) {
		*dst = &statev1.KeyedBool{Key: k, Value: *v}
	}
}

func latestKeyed(dst **statev1.Keyed, k *statev1.Key, v string) {
	if v == "" {
		return
	}
	if *dst == nil || conferenceLater(k, (*dst).GetKey()) {
		*dst = &statev1.Keyed{Key: k, Value: v}
	}
}

// ParticipantView derives what a conference and a call show of one
// participant.
func ParticipantView(p *statev1.ParticipantRecord) *callledgerv1.ConferenceParticipant {
	out := &callledgerv1.ConferenceParticipant{
		ConferenceSid:  p.GetConferenceSid(),
		CallSid:        p.GetCallSid(),
		Label:          p.GetLabel().GetValue(),
		Hold:           p.GetHold().GetValue(),
		Muted:          p.GetMuted().GetValue(),
		Coaching:       p.GetCoaching().GetValue(),
		FriendlyName:   p.GetFriendlyName().GetValue(),
		CallSidToCoach: p.GetCallSidToCoach().GetValue(),
	}
	if j := p.GetFirstJoin(); j != nil {
		out.JoinedAt = keyTime(j)
	}
	if l := p.GetLastLeave(); l != nil {
		out.LeftAt = keyTime(l.GetKey())
		out.ReasonLeft, out.CallStatusAtLeave = l.GetReason(), l.GetCallStatus()
	}
	join, leave := p.GetLastJoin(), p.GetLastLeave().GetKey()
	out.Present = join != nil && (leave == nil || conferenceLater(join, leave)) && p.GetConferenceEnd() == nil
	return out
}

func keyTime(k *statev1.Key) *timestamppb.Timestamp {
	return timestamppb.New(time.Unix(0, k.GetTimeUnixNanos()).UTC())
}

// ConferenceView derives the Conference a client sees from a stored
// record.
func ConferenceView(r *statev1.ConferenceRecord) *callledgerv1.Conference {
	c := &callledgerv1.Conference{
		ConferenceSid: r.GetConferenceSid(),
		AccountSid:    r.GetAccount().GetValue(),
		FriendlyName:  r.GetFriendlyName().GetValue(),
		EventCount:    int64(len(r.GetEventIds())),
		LastPosition:  r.GetLastPosition(),
		StartTime:     r.GetStartTime(),
		Status:        callledgerv1.ConferenceStatus_CONFERENCE_STATUS_INIT,
	}
	if s := r.GetStarted(); s != nil {
		c.StartedAt = keyTime(s)
		c.Status = callledgerv1.ConferenceStatus_CONFERENCE_STATUS_IN_PROGRESS
	}
	for _, p := range r.GetParticipants() {
		v := ParticipantView(p)
		if v.GetPresent() {
			c.Status = callledgerv1.ConferenceStatus_CONFERENCE_STATUS_IN_PROGRESS
		}
		c.Participants = append(c.Participants, v)
	}
	if e := r.GetEnded(); e != nil {
		c.EndedAt = keyTime(e.GetKey())
		c.ReasonEnded, c.CallSidEnding = e.GetReason(), e.GetCallSidEnding()
		c.Status = callledgerv1.ConferenceStatus_CONFERENCE_STATUS_COMPLETED
	}
	return c
}

// ConferenceActive reports whether a conference has not ended.
func ConferenceActive(c *callledgerv1.Conference) bool {
	return c.GetStatus() != callledgerv1.ConferenceStatus_CONFERENCE_STATUS_COMPLETED
}
