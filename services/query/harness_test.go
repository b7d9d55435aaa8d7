package query_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/logsink"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/delays"
	"github.com/callledger/callledger/services/query"
)

// failBound bounds every wait of a test: reaching it is a failure, never
// an expected outcome.
const failBound = 20 * time.Second

// env is the real stack on loopback: a Pebble event store, the call store
// fed by the projection runner, and the query service over gRPC.
type env struct {
	events *pebblestore.Store
	calls  *callstore.Store
	client callledgerv1.CallQueryServiceClient
	addr   string // the service's address, for more connections
	logs   *logsink.Buffer
}

type envOptions struct {
	// watchBuffer is callstore.Options.WatchBuffer.
	watchBuffer int
	// maxWait is query.Config.MaxWait.
	maxWait time.Duration
	// history replaces the event store as the service's History.
	history func(eventstore.Store) query.History
	// maxPageBytes is query.Config.MaxPageBytes.
	maxPageBytes int
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	events, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	window := delays.NewWindow(0, nil)
	calls, err := callstore.Open(t.TempDir(), callstore.Options{WatchBuffer: o.watchBuffer, Observe: window.Observe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { calls.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	runner := projections.NewRunner(events, calls, eventstore.Filter{StreamPrefixes: eventcodec.ProjectedStreamPrefixes()}, nil)
	runner.MinBackoff, runner.MaxBackoff = time.Millisecond, 10*time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = runner.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })

	logs := &logsink.Buffer{}
	var history query.History = events
	if o.history != nil {
		history = o.history(events)
	}
	srv, err := query.New(query.Config{
		Calls:   calls,
		History: history,
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxWait: o.maxWait,
		Counts:  calls,
		Delays:  window,

		MaxPageBytes: o.maxPageBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := grpctest.Serve(t, srv.Register)
	return &env{events: events, calls: calls, client: callledgerv1.NewCallQueryServiceClient(conn), addr: conn.Target(), logs: logs}
}

// append stores ev in its call's stream and returns its commit position.
func (e *env) append(t testing.TB, ev *callledgerv1.Event) eventstore.Position {
	t.Helper()
	pos, err := e.tryAppend(ev)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// tryAppend is append for goroutines other than the test's.
func (e *env) tryAppend(ev *callledgerv1.Event) (eventstore.Position, error) {
	rec, err := eventcodec.Encode(ev)
	if err != nil {
		return 0, err
	}
	res, err := e.events.Append(context.Background(), eventcodec.CallStream(ev.GetCallSid()), eventstore.Any(), rec)
	if err != nil {
		return 0, fmt.Errorf("append %s: %w", ev.GetCallSid(), err)
	}
	return res.Position, nil
}

// appendAll appends evs concurrently (group commit batches them) and
// returns the highest position.
func (e *env) appendAll(t *testing.T, evs []*callledgerv1.Event) eventstore.Position {
	t.Helper()
	var (
		mu   sync.Mutex
		head eventstore.Position
		errs []error
		wg   sync.WaitGroup
		work = make(chan *callledgerv1.Event)
	)
	for range 16 {
		wg.Go(func() {
			for ev := range work {
				pos, err := e.tryAppend(ev)
				mu.Lock()
				head = max(head, pos)
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	for _, ev := range evs {
		work <- ev
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return head
}

// waitApplied waits until the projection has applied pos.
func (e *env) waitApplied(t *testing.T, pos eventstore.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	if err := e.calls.WaitFor(ctx, pos); err != nil {
		t.Fatal(err)
	}
}

// getCall calls GetCall, failing the test on any error.
func (e *env) getCall(t *testing.T, sid string, minPos eventstore.Position) *callledgerv1.GetCallResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	resp, err := e.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid, MinPosition: uint64(minPos)})
	if err != nil {
		t.Fatalf("GetCall %s: %v", sid, err)
	}
	return resp
}

// sid makes the n-th test CallSid.
func sid(n int) string { return fmt.Sprintf("CA%032x", n) }

// base is when the test calls start.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// statusEvent is a status callback of call, child of parent when parent is
// not empty, reported at at.
func statusEvent(call, parent string, st callledgerv1.CallStatus, at time.Time) *callledgerv1.Event {
	r := &callledgerv1.CallStatusReported{
		Status:        st,
		StatusRaw:     strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(st.String(), "CALL_STATUS_"), "_", "-")),
		AccountSid:    "AC00000000000000000000000000000001",
		ParentCallSid: parent,
		Direction:     "outbound-api",
		From:          "+15005550006",
		To:            "+15005550001",
	}
	if parent != "" {
		r.Direction = "outbound-dial"
	}
	if isTerminal(st) {
		d := int64(42)
		r.CallDurationSeconds = &d
	}
	return &callledgerv1.Event{
		EventId:    uuid.NewString(),
		CallSid:    call,
		Source:     callledgerv1.Source_SOURCE_STATUS_CALLBACK,
		ReceivedAt: timestamppb.New(at),
		ReportedAt: timestamppb.New(at),
		Body:       &callledgerv1.Event_CallStatusReported{CallStatusReported: r},
	}
}

// dialEvent is a Dial action on parent's stream that names child.
func dialEvent(parent, child string, childStatus callledgerv1.CallStatus, at time.Time) *callledgerv1.Event {
	d := int64(7)
	return &callledgerv1.Event{
		EventId:    uuid.NewString(),
		CallSid:    parent,
		Source:     callledgerv1.Source_SOURCE_DIAL_ACTION,
		ReceivedAt: timestamppb.New(at),
		Body: &callledgerv1.Event_DialCompleted{DialCompleted: &callledgerv1.DialCompleted{
			DialCallSid:             child,
			DialCallStatus:          childStatus,
			DialCallDurationSeconds: &d,
			ParentStatus:            callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS,
			Direction:               "inbound",
		}},
	}
}

func isTerminal(st callledgerv1.CallStatus) bool {
	switch st {
	case callledgerv1.CallStatus_CALL_STATUS_COMPLETED, callledgerv1.CallStatus_CALL_STATUS_BUSY,
		callledgerv1.CallStatus_CALL_STATUS_FAILED, callledgerv1.CallStatus_CALL_STATUS_NO_ANSWER,
		callledgerv1.CallStatus_CALL_STATUS_CANCELED:
		return true
	}
	return false
}

// sids lists the CallSids of calls in order.
func sids(calls []*callledgerv1.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.GetCallSid()
	}
	return out
}

// wantCode fails the test unless err is a status with code want.
func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}
