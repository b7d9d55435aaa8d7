package query_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/services/query"
)

// TestRequestValidation checks the status code of every kind of request,
// good and bad, on one populated service.
func TestRequestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	var head eventstore.Position
	for i := 1; i <= 3; i++ {
		head = e.append(t, statusEvent(sid(i), "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(time.Duration(i)*time.Second)))
	}
	head = max(head, e.append(t, statusEvent(sid(1), "", callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, base.Add(time.Minute))))
	e.waitApplied(t, head)

	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	// Tokens issued for one request, to be replayed with another.
	listPage, err := e.client.ListCalls(ctx, &callledgerv1.ListCallsRequest{PageSize: 1})
	if err != nil || listPage.GetNextPageToken() == "" {
		t.Fatalf("ListCalls page 1: %v, token %q", err, listPage.GetNextPageToken())
	}
	eventsPage, err := e.client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: sid(1), PageSize: 1})
	if err != nil || eventsPage.GetNextPageToken() == "" {
		t.Fatalf("ListCallEvents page 1: %v, token %q", err, eventsPage.GetNextPageToken())
	}

	ts := func(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
	list := func(f *callledgerv1.CallFilter, size int32, token string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.client.ListCalls(ctx, &callledgerv1.ListCallsRequest{Filter: f, PageSize: size, PageToken: token})
			return err
		}
	}
	get := func(sid string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid})
			return err
		}
	}
	events := func(sid string, size int32, token string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: sid, PageSize: size, PageToken: token})
			return err
		}
	}
	watch := func(f *callledgerv1.CallFilter) func(context.Context) error {
		return func(ctx context.Context) error {
			st, err := e.client.WatchCalls(ctx, &callledgerv1.WatchCallsRequest{Filter: f})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}
	}
	upper := "CA" + strings.Repeat("A", 32)
	unknown := sid(999)

	for _, tc := range []struct {
		name string
		call func(context.Context) error
		want codes.Code
	}{
		{"GetCall known", get(sid(1)), codes.OK},
		{"GetCall unknown", get(unknown), codes.NotFound},
		{"GetCall empty sid", get(""), codes.InvalidArgument},
		{"GetCall short sid", get("CA123"), codes.InvalidArgument},
		{"GetCall uppercase hex", get(upper), codes.InvalidArgument},
		{"GetCall wrong prefix", get("CB" + sid(1)[2:]), codes.InvalidArgument},
		{"GetCall malformed sid with min_position", func(ctx context.Context) error {
			_, err := e.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: "x", MinPosition: uint64(head) + 1000})
			return err
		}, codes.InvalidArgument},
		{"GetCall min_position reached", func(ctx context.Context) error {
			_, err := e.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid(2), MinPosition: uint64(head)})
			return err
		}, codes.OK},
		{"GetCall min_position not reached before the deadline", func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_, err := e.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid(2), MinPosition: uint64(head) + 1000})
			return err
		}, codes.DeadlineExceeded},

		{"ListCalls default", list(nil, 0, ""), codes.OK},
		{"ListCalls max page", list(nil, query.MaxPageSize, ""), codes.OK},
		{"ListCalls page too large", list(nil, query.MaxPageSize+1, ""), codes.InvalidArgument},
		{"ListCalls negative page", list(nil, -1, ""), codes.InvalidArgument},
		{"ListCalls next page", list(nil, 1, listPage.GetNextPageToken()), codes.OK},
		{"ListCalls token not base64", list(nil, 1, "%%%"), codes.InvalidArgument},
		{"ListCalls token garbage", list(nil, 1, "AAAAAAAAAAAAAAAA"), codes.InvalidArgument},
		{"ListCalls token of another filter", list(&callledgerv1.CallFilter{ActiveOnly: true}, 1, listPage.GetNextPageToken()), codes.InvalidArgument},
		{"ListCalls parent malformed", list(&callledgerv1.CallFilter{ParentCallSid: "CA1"}, 0, ""), codes.InvalidArgument},
		{"ListCalls parent valid", list(&callledgerv1.CallFilter{ParentCallSid: sid(1)}, 0, ""), codes.OK},
		{"ListCalls parent unknown", list(&callledgerv1.CallFilter{ParentCallSid: unknown}, 0, ""), codes.OK},
		{"ListCalls unknown status", list(&callledgerv1.CallFilter{Statuses: []callledgerv1.CallStatus{42}}, 0, ""), codes.InvalidArgument},
		{"ListCalls statuses", list(&callledgerv1.CallFilter{Statuses: []callledgerv1.CallStatus{callledgerv1.CallStatus_CALL_STATUS_RINGING, callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED}}, 0, ""), codes.OK},
		{"ListCalls invalid timestamp", list(&callledgerv1.CallFilter{StartedAfter: &timestamppb.Timestamp{Seconds: 1, Nanos: 2e9}}, 0, ""), codes.InvalidArgument},
		{"ListCalls started_before the epoch", list(&callledgerv1.CallFilter{StartedBefore: ts(time.Unix(0, 0))}, 0, ""), codes.InvalidArgument},
		{"ListCalls started_after before the epoch", list(&callledgerv1.CallFilter{StartedAfter: ts(time.Unix(-10, 0))}, 0, ""), codes.InvalidArgument},
		{"ListCalls started_after the epoch", list(&callledgerv1.CallFilter{StartedAfter: ts(time.Unix(0, 0))}, 0, ""), codes.OK},
		{"ListCalls time beyond int64 nanoseconds", list(&callledgerv1.CallFilter{StartedBefore: ts(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))}, 0, ""), codes.InvalidArgument},
		{"ListCalls inverted range", list(&callledgerv1.CallFilter{StartedAfter: ts(base.Add(time.Hour)), StartedBefore: ts(base)}, 0, ""), codes.InvalidArgument},
		{"ListCalls empty range", list(&callledgerv1.CallFilter{StartedAfter: ts(base), StartedBefore: ts(base)}, 0, ""), codes.OK},

		{"ListCallEvents known", events(sid(1), 0, ""), codes.OK},
		{"ListCallEvents unknown call", events(unknown, 0, ""), codes.OK},
		{"ListCallEvents malformed sid", events("CA", 0, ""), codes.InvalidArgument},
		{"ListCallEvents uppercase sid", events(upper, 0, ""), codes.InvalidArgument},
		{"ListCallEvents page too large", events(sid(1), query.MaxPageSize+1, ""), codes.InvalidArgument},
		{"ListCallEvents negative page", events(sid(1), -5, ""), codes.InvalidArgument},
		{"ListCallEvents next page", events(sid(1), 1, eventsPage.GetNextPageToken()), codes.OK},
		{"ListCallEvents token garbage", events(sid(1), 1, "bm90IGEgdG9rZW4"), codes.InvalidArgument},
		{"ListCallEvents token not base64", events(sid(1), 1, "***"), codes.InvalidArgument},
		{"ListCallEvents token of another call", events(sid(2), 1, eventsPage.GetNextPageToken()), codes.InvalidArgument},
		{"ListCallEvents token of ListCalls", events(sid(1), 1, listPage.GetNextPageToken()), codes.InvalidArgument},

		{"WatchCalls everything", watch(nil), codes.OK},
		{"WatchCalls parent malformed", watch(&callledgerv1.CallFilter{ParentCallSid: "nope"}), codes.InvalidArgument},
		{"WatchCalls unknown status", watch(&callledgerv1.CallFilter{Statuses: []callledgerv1.CallStatus{-1}}), codes.InvalidArgument},
		{"WatchCalls inverted range", watch(&callledgerv1.CallFilter{StartedAfter: ts(base.Add(time.Hour)), StartedBefore: ts(base)}), codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), failBound)
			defer cancel()
			wantCode(t, tc.call(ctx), tc.want)
		})
	}
}

// TestGetCallMaxWait: without a deadline, a min_position that never comes
// is bounded by Config.MaxWait.
func TestGetCallMaxWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxWait: 50 * time.Millisecond})
	pos := e.append(t, statusEvent(sid(1), "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base))
	// No deadline on the request: only the server's MaxWait ends it.
	_, err := e.client.GetCall(context.Background(), &callledgerv1.GetCallRequest{CallSid: sid(1), MinPosition: uint64(pos) + 1})
	wantCode(t, err, codes.DeadlineExceeded)
	// A position already applied needs no wait at all.
	if got := e.getCall(t, sid(1), pos); got.GetCall().GetStatus() != callledgerv1.CallStatus_CALL_STATUS_RINGING {
		t.Errorf("status %v, want ringing", got.GetCall().GetStatus())
	}
}

func TestNewRequiresDependencies(t *testing.T) {
	t.Parallel()
	if _, err := query.New(query.Config{}); err == nil {
		t.Error("New without Calls and History succeeded")
	}
}
