package query_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
)

// cfSid makes the n-th test ConferenceSid.
func cfSid(n int) string { return fmt.Sprintf("CF%032x", n) }

// appendConference stores a conference callback in its conference's
// stream and returns its commit position.
func (e *env) appendConference(t *testing.T, cf, event, call string, seq int64, at time.Time, mutate ...func(*callledgerv1.ConferenceEventReported)) eventstore.Position {
	t.Helper()
	c := &callledgerv1.ConferenceEventReported{ConferenceSid: cf, FriendlyName: "room", EventRaw: event, CallSid: call, SequenceNumber: &seq,
		AccountSid: "AC00000000000000000000000000000001"}
	c.Event = callledgerv1.ConferenceEvent(callledgerv1.ConferenceEvent_value["CONFERENCE_EVENT_"+upperSnake(event)])
	for _, m := range mutate {
		m(c)
	}
	rec, err := eventcodec.Encode(&callledgerv1.Event{
		EventId: uuid.NewString(), Source: callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK,
		ReceivedAt: timestamppb.New(at), ReportedAt: timestamppb.New(at),
		Body: &callledgerv1.Event_ConferenceEventReported{ConferenceEventReported: c},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.events.Append(context.Background(), eventcodec.ConferenceStream(cf), eventstore.Any(), rec)
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

func upperSnake(s string) string {
	out := []byte(s)
	for i, c := range out {
		switch {
		case c == '-':
			out[i] = '_'
		case 'a' <= c && c <= 'z':
			out[i] = c - 'a' + 'A'
		}
	}
	return string(out)
}

// TestGetConference: a conference with three participants (join, hold,
// unhold, mute, leave, end), read after its last event's position: its
// view, its participants, and their calls, each showing its membership as
// the conference does. Unknown and malformed SIDs are told apart.
func TestGetConference(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cf := cfSid(1)
	customer, agent, supervisor := sid(1), sid(2), sid(3)
	e.append(t, statusEvent(customer, "", callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, base))
	hold := func(v bool) func(*callledgerv1.ConferenceEventReported) {
		return func(c *callledgerv1.ConferenceEventReported) { c.Hold = &v }
	}
	e.appendConference(t, cf, "participant-join", customer, 1, base.Add(time.Second))
	e.appendConference(t, cf, "conference-start", "", 2, base.Add(time.Second))
	e.appendConference(t, cf, "participant-join", agent, 3, base.Add(2*time.Second), func(c *callledgerv1.ConferenceEventReported) { c.ParticipantLabel = "agent" })
	e.appendConference(t, cf, "participant-join", supervisor, 4, base.Add(3*time.Second))
	e.appendConference(t, cf, "participant-hold", customer, 5, base.Add(10*time.Second), hold(true))
	e.appendConference(t, cf, "participant-unhold", customer, 6, base.Add(10*time.Second), hold(false))
	e.appendConference(t, cf, "participant-hold", customer, 7, base.Add(20*time.Second), hold(true))
	e.appendConference(t, cf, "participant-mute", agent, 8, base.Add(30*time.Second))
	last := e.appendConference(t, cf, "participant-leave", supervisor, 9, base.Add(40*time.Second), func(c *callledgerv1.ConferenceEventReported) {
		c.ReasonParticipantLeft, c.ParticipantCallStatus = "participant_hung_up", "completed"
	})

	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	resp, err := e.client.GetConference(ctx, &callledgerv1.GetConferenceRequest{ConferenceSid: cf, MinPosition: uint64(last)})
	if err != nil {
		t.Fatal(err)
	}
	c := resp.GetConference()
	if c.GetStatus() != callledgerv1.ConferenceStatus_CONFERENCE_STATUS_IN_PROGRESS || c.GetEventCount() != 9 || resp.GetPosition() < uint64(last) ||
		!c.GetStartedAt().AsTime().Equal(base.Add(time.Second)) || c.GetEndedAt() != nil || c.GetFriendlyName() != "room" {
		t.Errorf("conference %v at %d", c, resp.GetPosition())
	}
	want := map[string]string{customer: "present hold", agent: "present muted agent", supervisor: "left participant_hung_up"}
	var got []string
	for _, p := range c.GetParticipants() {
		got = append(got, p.GetCallSid())
		var flags string
		switch {
		case p.GetPresent() && p.GetHold():
			flags = "present hold"
		case p.GetPresent() && p.GetMuted():
			flags = "present muted " + p.GetLabel()
		case !p.GetPresent() && p.GetLeftAt() != nil:
			flags = "left " + p.GetReasonLeft()
		}
		if flags != want[p.GetCallSid()] {
			t.Errorf("participant %s: %v, want %s", p.GetCallSid(), p, want[p.GetCallSid()])
		}
	}
	if !slices.Equal(got, []string{customer, agent, supervisor}) {
		t.Errorf("participants %v, want by CallSid", got)
	}
	// Every participant's call is there, placeholders too, each saying of
	// its membership what the conference says.
	if len(resp.GetCalls()) != 3 {
		t.Fatalf("%d calls, want 3", len(resp.GetCalls()))
	}
	for i, call := range resp.GetCalls() {
		if len(call.GetConferences()) != 1 || call.GetConferences()[0].String() != c.GetParticipants()[i].String() {
			t.Errorf("call %s: membership %v, conference says %v", call.GetCallSid(), call.GetConferences(), c.GetParticipants()[i])
		}
	}
	if sup := resp.GetCalls()[2]; !sup.GetPlaceholder() || sup.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED || sup.GetStatusSource() != callledgerv1.Source_SOURCE_CONFERENCE_CALLBACK {
		t.Errorf("the supervisor's call, known only from the conference: %v", sup)
	}

	// The end: nobody is present, the conference is completed.
	end := e.appendConference(t, cf, "conference-end", "", 10, base.Add(time.Minute))
	resp, err = e.client.GetConference(ctx, &callledgerv1.GetConferenceRequest{ConferenceSid: cf, MinPosition: uint64(end)})
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.GetConference(); c.GetStatus() != callledgerv1.ConferenceStatus_CONFERENCE_STATUS_COMPLETED || slices.ContainsFunc(c.GetParticipants(), (*callledgerv1.ConferenceParticipant).GetPresent) {
		t.Errorf("ended conference %v", c)
	}
	for _, call := range resp.GetCalls() {
		if call.GetConferences()[0].GetPresent() {
			t.Errorf("call %s still present in an ended conference", call.GetCallSid())
		}
	}

	for _, tc := range []struct {
		sid  string
		code codes.Code
	}{{cfSid(99), codes.NotFound}, {"CF1", codes.InvalidArgument}, {sid(1), codes.InvalidArgument}} {
		_, err := e.client.GetConference(ctx, &callledgerv1.GetConferenceRequest{ConferenceSid: tc.sid})
		if status.Code(err) != tc.code {
			t.Errorf("GetConference(%q) = %v, want %v", tc.sid, err, tc.code)
		}
	}
}

// TestListAndWatchConferences: conferences newest first, active only,
// paged; a watch gets the snapshot, caught_up, then each change, the end
// of an active conference included.
func TestListAndWatchConferences(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for i := 1; i <= 3; i++ {
		e.appendConference(t, cfSid(i), "participant-join", sid(i), 1, base.Add(time.Duration(i)*time.Minute))
	}
	head := e.appendConference(t, cfSid(1), "conference-end", "", 2, base.Add(10*time.Minute))
	e.waitApplied(t, head)
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()

	var all []string
	token := ""
	for {
		resp, err := e.client.ListConferences(ctx, &callledgerv1.ListConferencesRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.GetConferences() {
			all = append(all, c.GetConferenceSid())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if want := []string{cfSid(3), cfSid(2), cfSid(1)}; !slices.Equal(all, want) {
		t.Errorf("pages %v, want %v", all, want)
	}
	active, err := e.client.ListConferences(ctx, &callledgerv1.ListConferencesRequest{Filter: &callledgerv1.ConferenceFilter{ActiveOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(active.GetConferences()); got != 2 {
		t.Errorf("%d active conferences, want 2", got)
	}
	if _, err := e.client.ListConferences(ctx, &callledgerv1.ListConferencesRequest{PageToken: "garbage"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a bad page token: %v", err)
	}

	st, err := e.client.WatchConferences(ctx, &callledgerv1.WatchConferencesRequest{Filter: &callledgerv1.ConferenceFilter{ActiveOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	var snap []string
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetCaughtUp() {
			break
		}
		snap = append(snap, m.GetConference().GetConferenceSid())
	}
	if want := []string{cfSid(3), cfSid(2)}; !slices.Equal(snap, want) {
		t.Errorf("snapshot %v, want %v", snap, want)
	}
	pos := e.appendConference(t, cfSid(2), "conference-end", "", 2, base.Add(20*time.Minute))
	m, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetConference().GetConferenceSid() != cfSid(2) || m.GetConference().GetStatus() != callledgerv1.ConferenceStatus_CONFERENCE_STATUS_COMPLETED ||
		m.GetPosition() != uint64(pos) || m.GetSnapshot() {
		t.Errorf("change %v", m)
	}
}
