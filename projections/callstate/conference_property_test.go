package callstate_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstate"
)

// drawConference draws the callbacks of one conference: its start and end
// (now and then missing, or reported twice), up to four participants that
// join, leave, join again, are held, muted, modified and coached, in the
// same second at times (SequenceNumber orders those), some events without
// their state parameters, some participants' calls reporting their own
// status, and now and then a callback whose CallSid is not a CallSid.
func drawConference(t *rapid.T) []*callledgerv1.Event {
	g := &treeGen{t: t}
	cf := fmt.Sprintf("CF%032x", rapid.Uint64Range(1, 1<<62).Draw(t, "conference"))
	seq := int64(0)
	conf := func(ev callledgerv1.ConferenceEvent, raw, call string, mutate func(*callledgerv1.ConferenceEventReported)) {
		seq++
		c := &callledgerv1.ConferenceEventReported{ConferenceSid: cf, FriendlyName: "room", Event: ev, EventRaw: raw, CallSid: call, AccountSid: "AC1"}
		if rapid.IntRange(0, 4).Draw(t, "has-seq") > 0 {
			n := seq
			c.SequenceNumber = &n
		}
		if mutate != nil {
			mutate(c)
		}
		// Timestamp has one-second resolution: events often share a second.
		at := baseTime.Add(time.Duration(rapid.IntRange(0, 20).Draw(t, "second")) * time.Second)
		g.add(&callledgerv1.Event{
			EventId: g.id(), Source: callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK, ReportedAt: timestamppb.New(at),
			Body: &callledgerv1.Event_ConferenceEventReported{ConferenceEventReported: c},
		})
	}
	optBool := func(label string) *bool {
		switch rapid.IntRange(0, 2).Draw(t, label) {
		case 0:
			return nil
		case 1:
			b := true
			return &b
		}
		b := false
		return &b
	}
	for n := rapid.IntRange(0, 2).Draw(t, "starts"); n > 0; n-- {
		conf(callledgerv1.ConferenceEvent_CONFERENCE_EVENT_CONFERENCE_START, "conference-start", "", nil)
	}
	kinds := []callledgerv1.ConferenceEvent{3, 4, 5, 6, 7, 8, 9, 10}
	for p := rapid.IntRange(1, 4).Draw(t, "participants"); p > 0; p-- {
		call := g.sid("participant")
		if rapid.IntRange(0, 9).Draw(t, "bad-sid") == 0 {
			call = "CA_AGENT"
		}
		for n := rapid.IntRange(1, 6).Draw(t, "participant-events"); n > 0; n-- {
			kind := rapid.SampledFrom(kinds).Draw(t, "event")
			conf(kind, kind.String(), call, func(c *callledgerv1.ConferenceEventReported) {
				c.Hold, c.Muted, c.Coaching = optBool("hold"), optBool("muted"), optBool("coaching")
				c.ParticipantLabel = rapid.SampledFrom([]string{"", "agent", "customer"}).Draw(t, "label")
				if kind == callledgerv1.ConferenceEvent_CONFERENCE_EVENT_PARTICIPANT_LEAVE {
					c.ReasonParticipantLeft = rapid.SampledFrom([]string{"participant_hung_up", "participant_updated_via_api"}).Draw(t, "reason")
					c.ParticipantCallStatus = rapid.SampledFrom([]string{"completed", "in-progress", ""}).Draw(t, "participant-status")
				}
			})
		}
		if rapid.IntRange(0, 2).Draw(t, "own-callbacks") == 0 {
			g.leg(call, "")
		}
	}
	for n := rapid.IntRange(0, 2).Draw(t, "ends"); n > 0; n-- {
		conf(callledgerv1.ConferenceEvent_CONFERENCE_EVENT_CONFERENCE_END, "conference-end", "", func(c *callledgerv1.ConferenceEventReported) {
			c.ReasonConferenceEnded = rapid.SampledFrom([]string{"last-participant-left", "conference-ended-via-api"}).Draw(t, "end-reason")
		})
	}
	return g.events
}

// foldAllWith folds events at their positions into a fresh Memory.
func foldAllWith(t *rapid.T, events []*callledgerv1.Event, positions map[string]uint64) *callstate.Memory {
	mem := callstate.NewMemory()
	for _, ev := range events {
		if err := callstate.Apply(mem, ev, positions[ev.GetEventId()]); err != nil {
			t.Fatal(err)
		}
	}
	return mem
}

// TestConferenceFoldIsOrderInsensitiveAndIdempotent: every permutation of
// a conference's callbacks (and its participants' own), with random
// duplicates, folds into the same conference record and the same call
// records, and each participant shows the same in its conference and on
// its call.
func TestConferenceFoldIsOrderInsensitiveAndIdempotent(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		events := drawConference(t)
		positions := map[string]uint64{}
		for i, ev := range events {
			positions[ev.GetEventId()] = uint64(i + 1)
		}
		want := foldAllWith(t, events, positions)
		shuffled := rapid.Permutation(events).Draw(t, "order")
		for n := rapid.IntRange(0, len(events)).Draw(t, "duplicates"); n > 0; n-- {
			dup := rapid.SampledFrom(events).Draw(t, "duplicate")
			at := rapid.IntRange(0, len(shuffled)).Draw(t, "duplicate-at")
			shuffled = append(shuffled[:at], append([]*callledgerv1.Event{dup}, shuffled[at:]...)...)
		}
		got := foldAllWith(t, shuffled, positions)

		for _, cf := range want.ConferenceSids() {
			w, _ := want.GetConference(cf)
			g, _ := got.GetConference(cf)
			if !proto.Equal(w, g) {
				t.Fatalf("conference %s differs by order:\nin order: %v\nshuffled: %v", cf, callstate.ConferenceView(w), callstate.ConferenceView(g))
			}
			view := callstate.ConferenceView(w)
			for _, p := range view.GetParticipants() {
				rec, _ := want.Get(p.GetCallSid())
				if rec == nil {
					t.Fatalf("participant %s has no call", p.GetCallSid())
				}
				var mine *callledgerv1.ConferenceParticipant
				for _, m := range callstate.View(rec).GetConferences() {
					if m.GetConferenceSid() == cf {
						mine = m
					}
				}
				if !proto.Equal(mine, p) {
					t.Fatalf("participant %s: the conference says %v, the call says %v", p.GetCallSid(), p, mine)
				}
				if view.GetStatus() == callledgerv1.ConferenceStatus_CONFERENCE_STATUS_COMPLETED && p.GetPresent() {
					t.Fatalf("%s present in an ended conference", p.GetCallSid())
				}
			}
		}
		if len(want.Sids()) != len(got.Sids()) {
			t.Fatalf("%d calls in order, %d shuffled", len(want.Sids()), len(got.Sids()))
		}
		for _, sid := range want.Sids() {
			w, _ := want.Get(sid)
			g, _ := got.Get(sid)
			if !proto.Equal(w, g) {
				t.Fatalf("call %s differs by order:\nin order: %v\nshuffled: %v", sid, callstate.View(w), callstate.View(g))
			}
		}
		var recs = map[string]*statev1.CallRecord{}
		for _, sid := range want.Sids() {
			recs[sid], _ = want.Get(sid)
		}
		checkInvariants(t, recs)
	})
}
