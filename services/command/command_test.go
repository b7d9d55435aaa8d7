package command_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/hangup"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore/callstoretest"
	"github.com/callledger/callledger/services/command"
	"github.com/callledger/callledger/services/query"
	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

const (
	acct      = "AC0123456789abcdef0123456789abcdef"
	otherAcct = "ACfedcba9876543210fedcba9876543210"
)

// env is the real stack on loopback: Pebble event store, the projection
// into the call store, the query and command services over gRPC, and a
// fake Twilio REST API.
type env struct {
	events  *pebblestore.Store
	fake    *resttest.Fake
	query   callledgerv1.CallQueryServiceClient
	command callledgerv1.CallCommandServiceClient
}

func newEnv(t testing.TB, withTwilio bool) *env {
	t.Helper()
	events, calls := callstoretest.Start(t)

	e := &env{events: events}
	cfg := command.Config{Store: events, Calls: calls}
	if withTwilio {
		account := rest.Account{AccountSid: acct, AuthToken: "token1"}
		e.fake = resttest.New(t, account)
		rc, err := rest.New(rest.Config{Accounts: []rest.Account{account}, Transport: e.fake.Transport()})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Twilio = rc
	}
	cmd, err := command.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	qry, err := query.New(query.Config{Calls: calls, History: events})
	if err != nil {
		t.Fatal(err)
	}
	conn := grpctest.Serve(t, func(g grpc.ServiceRegistrar) {
		cmd.Register(g)
		qry.Register(g)
	})
	e.query = callledgerv1.NewCallQueryServiceClient(conn)
	e.command = callledgerv1.NewCallCommandServiceClient(conn)
	return e
}

func newSid(n int) string { return fmt.Sprintf("CA%032x", n) }

// status appends a status callback of sid and returns its position.
func (e *env) status(t testing.TB, sid, st string) eventstore.Position {
	t.Helper()
	enum := callledgerv1.CallStatus(callledgerv1.CallStatus_value["CALL_STATUS_"+map[string]string{
		"queued": "QUEUED", "ringing": "RINGING", "in-progress": "IN_PROGRESS", "completed": "COMPLETED",
	}[st]])
	ev := &callledgerv1.Event{
		EventId: eventcodec.EventID("test-status", []byte(sid+st)).String(), CallSid: sid,
		Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK, ReceivedAt: timestamppb.Now(),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			Status: enum, StatusRaw: st, AccountSid: acct,
		}},
	}
	rec, err := eventcodec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.events.Append(context.Background(), eventcodec.CallStream(sid), eventstore.Any(), rec)
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// getCall reads sid after pos.
func (e *env) getCall(t testing.TB, sid string, pos uint64) *callledgerv1.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := e.query.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid, MinPosition: pos})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetCall()
}

func TestRequestHangupShowsEndingAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	sid := newSid(1)
	e.status(t, sid, "in-progress")
	resp, err := e.command.RequestHangup(context.Background(), &callledgerv1.RequestHangupRequest{
		CallSid: sid, RequestedBy: "agent-7", RequestId: "req-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := e.getCall(t, sid, resp.GetPosition())
	h := c.GetHangupRequest()
	if !c.GetEnding() || c.GetTerminal() || h.GetRequestId() != "req-1" || h.GetRequestedBy() != "agent-7" ||
		h.GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_PENDING || resp.GetOutcomePosition() != 0 {
		t.Errorf("after RequestHangup: call %v, response %v", c, resp)
	}
}

func TestRequestHangupEndsCallThroughTwilio(t *testing.T) {
	t.Parallel()
	for i, tc := range []struct {
		name        string
		webhook     string // status the webhooks reported; "" for none
		twilio      string // status of the call at Twilio; "" for unknown there
		wantSent    string
		wantOutcome callledgerv1.HangupOutcome
		wantCode    int32
	}{
		{"answered call is completed", "in-progress", "in-progress", "completed", callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, 0},
		{"ringing call is canceled", "ringing", "ringing", "canceled", callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, 0},
		{"queued call is canceled", "queued", "queued", "canceled", callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, 0},
		{"inbound call never reported is completed", "", "in-progress", "completed", callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT, 0},
		{"call unknown to Twilio fails with 20404", "in-progress", "", "completed", callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED, 20404},
		{"call already over fails with 21220", "in-progress", "completed", "completed", callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED, 21220},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, true)
			sid := newSid(100 + i)
			var reported eventstore.Position
			if tc.webhook != "" {
				reported = e.status(t, sid, tc.webhook)
			}
			if tc.twilio != "" {
				e.fake.Put(resttest.Call{Sid: sid, AccountSid: acct, Status: tc.twilio, StartTime: time.Now().Add(-time.Minute)})
			}
			if tc.webhook != "" {
				// The request reads the read model to choose the Status:
				// wait until it has applied the webhook.
				e.getCall(t, sid, uint64(reported))
			}
			resp, err := e.command.RequestHangup(context.Background(), &callledgerv1.RequestHangupRequest{
				CallSid: sid, RequestedBy: "agent", RequestId: "r-" + tc.name, EndCall: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			updates := e.fake.Count(func(r resttest.Request) bool { return r.Method == http.MethodPost })
			if updates != 1 {
				t.Fatalf("Twilio got %d updates, want 1", updates)
			}
			if got := e.fake.Requests()[0].Form.Get("Status"); got != tc.wantSent {
				t.Errorf("sent Status=%s, want %s", got, tc.wantSent)
			}
			h := resp.GetHangupRequest()
			if h.GetOutcome() != tc.wantOutcome || h.GetErrorCode() != tc.wantCode || h.GetSentStatus() != tc.wantSent {
				t.Errorf("response %v", h)
			}
			c := e.getCall(t, sid, resp.GetOutcomePosition())
			if got := c.GetHangupRequest(); got.GetOutcome() != tc.wantOutcome || got.GetErrorCode() != tc.wantCode || !c.GetEnding() {
				t.Errorf("call after the outcome: %v", c)
			}
		})
	}
}

func TestRequestHangupIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sid := newSid(200)
	reported := e.status(t, sid, "in-progress")
	e.fake.Put(resttest.Call{Sid: sid, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
	e.getCall(t, sid, uint64(reported))
	req := &callledgerv1.RequestHangupRequest{CallSid: sid, RequestedBy: "agent", RequestId: "same", EndCall: true}
	first, err := e.command.RequestHangup(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.command.RequestHangup(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !again.GetDuplicate() || first.GetDuplicate() || again.GetPosition() != first.GetPosition() ||
		again.GetOutcomePosition() != first.GetOutcomePosition() || again.GetHangupRequest().GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT ||
		!again.GetHangupRequest().GetRequestedAt().AsTime().Equal(first.GetHangupRequest().GetRequestedAt().AsTime()) {
		t.Errorf("retry answered %v, original %v", again, first)
	}
	if n := e.fake.Count(nil); n != 1 {
		t.Errorf("Twilio got %d requests, want 1", n)
	}
	events, err := e.events.ReadStream(context.Background(), eventcodec.CallStream(sid), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 { // the status callback, the request, the outcome
		t.Errorf("%d events stored, want 3", len(events))
	}
}

// TestRetryAfterFailureSendsAgain: a request whose update failed for a
// reason that may pass (Twilio overloaded) is sent again when the client
// retries it, and the success wins over the failure.
func TestRetryAfterFailureSendsAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sid := newSid(300)
	reported := e.status(t, sid, "in-progress")
	e.fake.Put(resttest.Call{Sid: sid, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
	e.fake.Fail(sid, resttest.Fault{Status: 503, Code: 20503})
	e.getCall(t, sid, uint64(reported))
	req := &callledgerv1.RequestHangupRequest{CallSid: sid, RequestedBy: "agent", RequestId: "r", EndCall: true}
	first, err := e.command.RequestHangup(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.GetHangupRequest().GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED || first.GetHangupRequest().GetErrorCode() != 20503 {
		t.Fatalf("first attempt %v", first)
	}
	again, err := e.command.RequestHangup(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetHangupRequest().GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT {
		t.Fatalf("retry %v", again)
	}
	if c := e.getCall(t, sid, again.GetOutcomePosition()); c.GetHangupRequest().GetOutcome() != callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT {
		t.Errorf("call shows %v", c.GetHangupRequest())
	}
	if n := e.fake.Count(nil); n != 2 {
		t.Errorf("Twilio got %d requests, want 2", n)
	}
}

// TestRetryAfterLostOutcomeSendsAgain: a request whose outcome could not
// be recorded (the store failed, or the process died, after Twilio was
// asked) is carried out again when the client retries, and this time its
// outcome is recorded.
func TestRetryAfterLostOutcomeSendsAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	sid := newSid(400)
	e.fake.Put(resttest.Call{Sid: sid, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
	rc, err := rest.New(rest.Config{Accounts: []rest.Account{{AccountSid: acct, AuthToken: "token1"}}, Transport: e.fake.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	broken, err := command.New(command.Config{Store: &failSecond{Log: e.events}, Calls: noCalls{}, Twilio: rc})
	if err != nil {
		t.Fatal(err)
	}
	req := &callledgerv1.RequestHangupRequest{CallSid: sid, RequestedBy: "agent", RequestId: "r", EndCall: true}
	if _, err := broken.RequestHangup(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("with the outcome lost: %v, want UNAVAILABLE", err)
	}
	resp, err := e.command.RequestHangup(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// Twilio ended the call the first time; the second update says so.
	if !resp.GetDuplicate() || resp.GetOutcomePosition() == 0 || resp.GetHangupRequest().GetErrorCode() != 21220 {
		t.Errorf("retry: %v", resp)
	}
	if n := e.fake.Count(func(r resttest.Request) bool { return r.Method == http.MethodPost }); n != 2 {
		t.Errorf("Twilio got %d updates, want 2", n)
	}
}

// failSecond fails every append after the first, as a store that went
// away would.
type failSecond struct {
	hangup.Log
	n int
}

func (f *failSecond) Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if f.n++; f.n > 1 {
		return eventstore.AppendResult{}, fmt.Errorf("test: %w", eventstore.ErrUnavailable)
	}
	return f.Log.Append(ctx, stream, expected, events...)
}

type noCalls struct{}

func (noCalls) Tree(context.Context, string) (callstate.Tree, error) {
	return callstate.Tree{}, callstate.ErrNotFound
}

func TestRequestHangupRefusals(t *testing.T) {
	t.Parallel()
	withTwilio, without := newEnv(t, true), newEnv(t, false)
	// A call of an account without credentials.
	foreign := newSid(501)
	ev := &callledgerv1.Event{
		EventId: eventcodec.EventID("test", []byte(foreign)).String(), CallSid: foreign, Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK,
		ReceivedAt: timestamppb.Now(),
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			Status: callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, StatusRaw: "in-progress", AccountSid: otherAcct,
		}},
	}
	rec, _ := eventcodec.Encode(ev)
	res, err := withTwilio.events.Append(context.Background(), eventcodec.CallStream(foreign), eventstore.Any(), rec)
	if err != nil {
		t.Fatal(err)
	}
	withTwilio.getCall(t, foreign, uint64(res.Position))
	sid := newSid(500)
	for _, tc := range []struct {
		name string
		e    *env
		req  *callledgerv1.RequestHangupRequest
		want codes.Code
		// before is how many events the call's stream held before the
		// request: a refusal must leave exactly these.
		before int
	}{
		{"malformed CallSid", withTwilio, &callledgerv1.RequestHangupRequest{CallSid: "CA123", RequestedBy: "a", RequestId: "r"}, codes.InvalidArgument, 0},
		{"no request_id", withTwilio, &callledgerv1.RequestHangupRequest{CallSid: sid, RequestedBy: "a"}, codes.InvalidArgument, 0},
		{"request_id with a newline", withTwilio, &callledgerv1.RequestHangupRequest{CallSid: sid, RequestedBy: "a", RequestId: "r\n"}, codes.InvalidArgument, 0},
		{"no requested_by", withTwilio, &callledgerv1.RequestHangupRequest{CallSid: sid, RequestId: "r"}, codes.InvalidArgument, 0},
		{"end_call without credentials", without, &callledgerv1.RequestHangupRequest{CallSid: sid, RequestedBy: "a", RequestId: "r", EndCall: true}, codes.FailedPrecondition, 0},
		{"end_call for another account", withTwilio, &callledgerv1.RequestHangupRequest{CallSid: foreign, RequestedBy: "a", RequestId: "r", EndCall: true}, codes.FailedPrecondition, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.e.command.RequestHangup(context.Background(), tc.req)
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if eventcodec.ValidCallSid(tc.req.GetCallSid()) {
				recs, err := tc.e.events.ReadStream(context.Background(), eventcodec.CallStream(tc.req.GetCallSid()), 0, 100)
				if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
					t.Fatal(err)
				}
				if len(recs) != tc.before {
					t.Errorf("the stream holds %d events after a refused request, %d before", len(recs), tc.before)
				}
			}
		})
	}
	if n := withTwilio.fake.Count(nil); n != 0 {
		t.Errorf("refused requests reached Twilio %d times", n)
	}
}

// BenchmarkRequestHangup: a hang-up request over gRPC until its position
// is known (recorded only, the UI's optimistic state), and with the REST
// update to a Twilio on loopback.
func BenchmarkRequestHangup(b *testing.B) {
	for _, endCall := range []bool{false, true} {
		b.Run(fmt.Sprintf("end_call=%v", endCall), func(b *testing.B) {
			e := newEnv(b, true)
			for i := 0; b.Loop(); i++ {
				sid := newSid(1_000_000 + i)
				if endCall {
					e.fake.Put(resttest.Call{Sid: sid, AccountSid: acct, Status: "in-progress", StartTime: time.Now()})
				}
				_, err := e.command.RequestHangup(context.Background(), &callledgerv1.RequestHangupRequest{
					CallSid: sid, RequestedBy: "bench", RequestId: "r", EndCall: endCall,
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestStoreDownOnKurrentDB: with KurrentDB down, whose errors wrap the
// client's gRPC status, RequestHangup answers like any unavailable store:
// UNAVAILABLE with the request_id hint and no internal details (it used
// to pass the store's status through, message and all).
func TestStoreDownOnKurrentDB(t *testing.T) {
	t.Parallel()
	kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kdb.Close)
	events, err := kurrentdb.Open(context.Background(), kdb.ConnString(), kurrentdb.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	cmd, err := command.New(command.Config{Store: events, Calls: noCalls{}})
	if err != nil {
		t.Fatal(err)
	}
	req := &callledgerv1.RequestHangupRequest{CallSid: newSid(600), RequestedBy: "agent", RequestId: "r"}
	if _, err := cmd.RequestHangup(context.Background(), req); err != nil {
		t.Fatalf("with KurrentDB up: %v", err)
	}
	kdb.Stop()
	req.RequestId = "r2"
	_, err = cmd.RequestHangup(context.Background(), req)
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "store unavailable; retry with the same request_id" {
		t.Fatalf("with KurrentDB down: %v %q, want UNAVAILABLE with the request_id hint", st.Code(), st.Message())
	}
}
