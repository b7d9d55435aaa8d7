package hangup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/hangup"
	"github.com/callledger/callledger/keystore/keystoretest"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callstore/callstoretest"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

const acct = "AC0123456789abcdef0123456789abcdef"

// env is the command over real parts: a Pebble event log, the call-state
// projection into a call store, and a fake Twilio REST API on loopback.
type env struct {
	events *pebblestore.Store
	calls  *callstore.Store
	fake   *resttest.Fake
	h      *hangup.Handler
}

func newEnv(t testing.TB, withTwilio bool) *env {
	t.Helper()
	events, calls := callstoretest.Start(t)

	e := &env{events: events, calls: calls}
	cfg := hangup.Config{Log: events, Calls: calls}
	if withTwilio {
		account := rest.Account{AccountSid: acct, AuthToken: "token1"}
		e.fake = resttest.New(t, account)
		rc, err := rest.New(rest.Config{Accounts: []rest.Account{account}, Transport: e.fake.Transport()})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Twilio = rc
	}
	var err error
	if e.h, err = hangup.New(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func newSid(n int) string { return fmt.Sprintf("CA%032x", n) }

func (e *env) handle(t testing.TB, r hangup.Request) hangup.Result {
	t.Helper()
	res, err := e.h.Handle(context.Background(), r)
	if err != nil {
		t.Fatalf("%+v: %v", r, err)
	}
	return res
}

// status appends an in-progress status callback of sid, told apart by n.
func (e *env) status(t testing.TB, sid string, n int) {
	t.Helper()
	ev := &callledgerv1.Event{
		EventId: eventcodec.EventID("test-status", fmt.Appendf(nil, "%s %d", sid, n)).String(), CallSid: sid,
		Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK, ReceivedAt: timestamppb.Now(),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			Status: callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, StatusRaw: "in-progress", AccountSid: acct,
		}},
	}
	rec, err := eventcodec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.events.Append(context.Background(), eventcodec.CallStream(sid), eventstore.Any(), rec); err != nil {
		t.Fatal(err)
	}
}

// shown is the hang-up request the read model shows for sid once it has
// applied pos.
func (e *env) shown(t testing.TB, sid string, pos eventstore.Position) *callledgerv1.HangupRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.calls.WaitFor(ctx, pos); err != nil {
		t.Fatal(err)
	}
	tree, err := e.calls.Tree(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	return tree.Call.GetHangupRequest()
}

func (e *env) updates() int {
	return e.fake.Count(func(r resttest.Request) bool { return r.Method == http.MethodPost })
}

// TestAnswersWhatTheReadModelShows: every answer, first attempt and
// retries alike, is the request as the read model shows it once it has
// applied the answer's positions; the outcome ranks as the fold ranks it
// (a success beats the failures before it, whatever their order); and a
// retry answers its own request even after a later one replaced it in the
// call's view.
func TestAnswersWhatTheReadModelShows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sid := newSid(1)
	e.fake.Put(resttest.Call{Sid: sid, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
	e.fake.Fail(sid, resttest.Fault{Status: 503, Code: 20503}, resttest.Fault{Status: 429, Code: 20429})
	req := hangup.Request{CallSid: sid, RequestID: "a", RequestedBy: "agent-a", EndCall: true}
	var sent hangup.Result
	for i, want := range []struct {
		outcome callledgerv1.HangupOutcome
		code    int32
		dup     bool
	}{
		{callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED, 20503, false},
		{callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED, 20429, true},
		{callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, 0, true},
		{callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, 0, true}, // answered from the log: Twilio is not asked again
	} {
		res := e.handle(t, req)
		h := res.Request
		if h.GetOutcome() != want.outcome || h.GetErrorCode() != want.code || res.Duplicate != want.dup ||
			h.GetRequestId() != "a" || h.GetRequestedBy() != "agent-a" || !h.GetEndCall() || res.OutcomePosition <= res.Position {
			t.Fatalf("attempt %d: %+v", i+1, res)
		}
		if got := e.shown(t, sid, res.OutcomePosition); !proto.Equal(got, h) {
			t.Errorf("attempt %d answered %v, the read model shows %v", i+1, h, got)
		}
		sent = res
	}
	if n := e.updates(); n != 3 {
		t.Errorf("Twilio got %d updates, want 3", n)
	}

	// A later request, now the one the call shows; then a retry of the
	// first.
	later := e.handle(t, hangup.Request{CallSid: sid, RequestID: "b", RequestedBy: "agent-b"})
	if got := e.shown(t, sid, later.Position); got.GetRequestId() != "b" || !proto.Equal(got, later.Request) {
		t.Fatalf("the call shows %v, the later request answered %v", got, later.Request)
	}
	again := e.handle(t, req)
	if !again.Duplicate || again.Position != sent.Position || again.OutcomePosition != sent.OutcomePosition || !proto.Equal(again.Request, sent.Request) {
		t.Errorf("retry after a later request: %+v, want %+v", again, sent)
	}
	if n := e.updates(); n != 3 {
		t.Errorf("Twilio got %d updates, want still 3", n)
	}
}

// TestRetryReadsTheWholeStream: a retry finds its request's events however
// far into the call's stream they lie, reading it page by page.
func TestRetryReadsTheWholeStream(t *testing.T) {
	t.Parallel()
	for _, before := range []int{0, 1, 5, 6} {
		t.Run(fmt.Sprintf("%d events before", before), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, true)
			hangup.SetReadPage(e.h, 2)
			sid := newSid(100 + before)
			e.fake.Put(resttest.Call{Sid: sid, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
			for i := range before {
				e.status(t, sid, i)
			}
			req := hangup.Request{CallSid: sid, RequestID: "r", RequestedBy: "agent", EndCall: true}
			first := e.handle(t, req)
			for i := range 3 {
				e.status(t, sid, before+i)
			}
			again := e.handle(t, req)
			if !again.Duplicate || again.OutcomePosition != first.OutcomePosition || !proto.Equal(again.Request, first.Request) ||
				again.Request.GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT {
				t.Errorf("retry %+v, original %+v", again, first)
			}
			if n := e.updates(); n != 1 {
				t.Errorf("Twilio got %d updates, want 1: the retry missed the recorded outcome", n)
			}
		})
	}
}

// TestEventIDsArePinned: the command records the IDs it recorded before
// it became a package of its own (see eventcodec's pins): a retry after an
// upgrade must meet the IDs stored before it.
func TestEventIDsArePinned(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	ok, bad := "CA0123456789abcdef0123456789abcdef", "CA00000000000000000000000000000002"
	e.fake.Put(resttest.Call{Sid: ok, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
	e.fake.Put(resttest.Call{Sid: bad, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
	e.fake.Fail(bad, resttest.Fault{Status: 503, Code: 20503})
	e.handle(t, hangup.Request{CallSid: ok, RequestID: "req-1", RequestedBy: "agent-7", EndCall: true})
	e.handle(t, hangup.Request{CallSid: bad, RequestID: "req-2", RequestedBy: "agent-7", EndCall: true})
	for sid, want := range map[string][]string{
		ok:  {"HangupRequested ddc726e0-c0f8-5cdf-8411-d27ac226c4f0", "HangupSent 5019b75a-ab77-5371-ad8d-51b1366211db"},
		bad: {"HangupRequested d053714b-573a-522d-a7de-cef242c048ac", "HangupFailed fe1e0601-0eed-588f-86e2-c3547181c712"},
	} {
		recs, err := e.events.ReadStream(context.Background(), eventcodec.CallStream(sid), 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, r.Type+" "+r.ID.String())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: stored %v, want %v", sid, got, want)
		}
	}
}

// TestRefusals: a refused request is a typed error and records nothing.
func TestRefusals(t *testing.T) {
	t.Parallel()
	withTwilio, without := newEnv(t, true), newEnv(t, false)
	sid := newSid(500)
	long := string(make([]byte, 129))
	for _, tc := range []struct {
		name string
		e    *env
		req  hangup.Request
		want error
	}{
		{"malformed CallSid", withTwilio, hangup.Request{CallSid: "CA123", RequestID: "r", RequestedBy: "a"}, hangup.ErrInvalid},
		{"no request ID", withTwilio, hangup.Request{CallSid: sid, RequestedBy: "a"}, hangup.ErrInvalid},
		{"request ID too long", withTwilio, hangup.Request{CallSid: sid, RequestID: long, RequestedBy: "a"}, hangup.ErrInvalid},
		{"requester with a newline", withTwilio, hangup.Request{CallSid: sid, RequestID: "r", RequestedBy: "a\n"}, hangup.ErrInvalid},
		{"end_call without credentials", without, hangup.Request{CallSid: sid, RequestID: "r", RequestedBy: "a", EndCall: true}, hangup.ErrCannotEnd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.e.h.Handle(context.Background(), tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if _, err := tc.e.events.ReadStream(context.Background(), eventcodec.CallStream(sid), 0, 10); !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Errorf("after a refusal the stream reads %v, want ErrStreamNotFound", err)
			}
		})
	}
	if n := withTwilio.fake.Count(nil); n != 0 {
		t.Errorf("refused requests reached Twilio %d times", n)
	}
}

// TestFailureMessageSealed: with Personal, the message of a failed
// hang-up (Twilio's messages quote numbers) is stored sealed, and a retry
// that reads the failure back answers with it opened.
func TestFailureMessageSealed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	keys := keystoretest.Open(t)
	personal := seal.NewEvents(keys)
	rc, err := rest.New(rest.Config{Accounts: []rest.Account{{AccountSid: acct, AuthToken: "token1"}}, Transport: e.fake.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	if e.h, err = hangup.New(hangup.Config{Log: e.events, Calls: e.calls, Twilio: rc, Personal: personal}); err != nil {
		t.Fatal(err)
	}
	sid := newSid(900)
	e.fake.Put(resttest.Call{Sid: sid, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
	e.fake.Fail(sid, resttest.Fault{Status: 400, Code: 21220}, resttest.Fault{Status: 400, Code: 21220})
	req := hangup.Request{CallSid: sid, RequestID: "r", RequestedBy: "agent", EndCall: true}
	first := e.handle(t, req)
	msg := first.Request.GetErrorMessage()
	if first.Request.GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED || msg == "" {
		t.Fatalf("first attempt: %+v, want a failure with a message", first.Request)
	}
	recs, err := e.events.ReadStream(context.Background(), eventcodec.CallStream(sid), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rec := range recs {
		ev, err := eventcodec.Decode(rec)
		if err != nil {
			t.Fatal(err)
		}
		f := ev.GetHangupFailed()
		if f == nil {
			continue
		}
		found = true
		if f.GetErrorMessage() != "" || ev.GetSealed() == nil || bytes.Contains(rec.Data, []byte(msg)) {
			t.Errorf("the failure is stored with its message in the clear: %v", ev)
		}
		if _, err := personal.Open(context.Background(), ev); err != nil || ev.GetHangupFailed().GetErrorMessage() != msg {
			t.Errorf("opened: %q, %v; want %q", ev.GetHangupFailed().GetErrorMessage(), err, msg)
		}
	}
	if !found {
		t.Fatal("no HangupFailed stored")
	}
	again := e.handle(t, req)
	if !again.Duplicate || again.Request.GetErrorMessage() == "" {
		t.Errorf("retry: %+v, want the recorded failure's message opened", again.Request)
	}
}
