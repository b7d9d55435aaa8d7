package query_test

import (
	"cmp"
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/services/query"
)

// listed is what the test knows of a call it wrote.
type listed struct {
	sid    string
	start  time.Time
	status callledgerv1.CallStatus
	parent string
}

func (c listed) active() bool {
	return c.status != callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED && !isTerminal(c.status)
}

// TestListCallsPaging pages through a few hundred calls under several
// filters: every matching call comes exactly once, newest start first
// (then by CallSid), and nothing else comes.
func TestListCallsPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	parent := sid(5000)
	cycle := []callledgerv1.CallStatus{
		callledgerv1.CallStatus_CALL_STATUS_RINGING,
		callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS,
		callledgerv1.CallStatus_CALL_STATUS_COMPLETED,
		callledgerv1.CallStatus_CALL_STATUS_BUSY,
	}
	var model []listed
	var evs []*callledgerv1.Event
	for i := range 300 {
		// Pairs of calls share a start time, so the CallSid order within
		// one start time is exercised too.
		c := listed{sid: sid(1000 + i), start: base.Add(time.Duration(i/2) * time.Second), status: cycle[i%len(cycle)]}
		if i%10 == 0 {
			c.parent = parent
		}
		model = append(model, c)
		evs = append(evs, statusEvent(c.sid, c.parent, c.status, c.start))
	}
	// The parent is known only from its children: a placeholder of unknown
	// status, starting with its earliest child.
	model = append(model, listed{sid: parent, start: base})
	head := e.appendAll(t, evs)
	e.waitApplied(t, head)

	slices.SortFunc(model, func(a, b listed) int {
		return cmp.Or(b.start.Compare(a.start), cmp.Compare(a.sid, b.sid))
	})
	at := func(s int) *timestamppb.Timestamp { return timestamppb.New(base.Add(time.Duration(s) * time.Second)) }
	inRange := func(c listed, after, before int) bool {
		return !c.start.Before(base.Add(time.Duration(after)*time.Second)) && c.start.Before(base.Add(time.Duration(before)*time.Second))
	}
	hasStatus := func(sts ...callledgerv1.CallStatus) func(listed) bool {
		return func(c listed) bool { return slices.Contains(sts, c.status) }
	}
	ringing, completed, busy := cycle[0], cycle[2], cycle[3]

	for _, tc := range []struct {
		name   string
		filter *callledgerv1.CallFilter
		match  func(listed) bool
	}{
		{"everything", nil, func(listed) bool { return true }},
		{"active only", &callledgerv1.CallFilter{ActiveOnly: true}, listed.active},
		{"statuses", &callledgerv1.CallFilter{Statuses: []callledgerv1.CallStatus{busy, completed}}, hasStatus(completed, busy)},
		{"status unknown", &callledgerv1.CallFilter{Statuses: []callledgerv1.CallStatus{callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED}}, hasStatus(callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED)},
		{"time range", &callledgerv1.CallFilter{StartedAfter: at(50), StartedBefore: at(100)}, func(c listed) bool { return inRange(c, 50, 100) }},
		{"started after", &callledgerv1.CallFilter{StartedAfter: at(140)}, func(c listed) bool { return inRange(c, 140, 1e6) }},
		{"started before", &callledgerv1.CallFilter{StartedBefore: at(10)}, func(c listed) bool { return inRange(c, 0, 10) }},
		{"children", &callledgerv1.CallFilter{ParentCallSid: parent}, func(c listed) bool { return c.parent == parent }},
		{"ringing children", &callledgerv1.CallFilter{ParentCallSid: parent, Statuses: []callledgerv1.CallStatus{ringing}},
			func(c listed) bool { return c.parent == parent && c.status == ringing }},
		{"active in a time range", &callledgerv1.CallFilter{ActiveOnly: true, StartedAfter: at(20), StartedBefore: at(120)},
			func(c listed) bool { return c.active() && inRange(c, 20, 120) }},
		{"active and ringing", &callledgerv1.CallFilter{ActiveOnly: true, Statuses: []callledgerv1.CallStatus{ringing}}, hasStatus(ringing)},
		{"nothing", &callledgerv1.CallFilter{StartedAfter: at(1000)}, func(listed) bool { return false }},
	} {
		var want []string
		for _, c := range model {
			if tc.match(c) {
				want = append(want, c.sid)
			}
		}
		for _, size := range []int32{7, 0, query.MaxPageSize} {
			t.Run(tc.name+"/"+map[int32]string{7: "7", 0: "default", query.MaxPageSize: "max"}[size], func(t *testing.T) {
				t.Parallel()
				got, pages := listAll(t, e, tc.filter, size)
				if !slices.Equal(got, want) {
					t.Errorf("listed %d calls, want %d\n got %v\nwant %v", len(got), len(want), got, want)
				}
				if limit := cmp.Or(int(size), query.DefaultPageSize); pages < len(want)/limit {
					t.Errorf("%d pages of at most %d for %d calls", pages, limit, len(want))
				}
			})
		}
	}

	// Calls carry the start time the order is by.
	t.Run("start times", func(t *testing.T) {
		t.Parallel()
		resp, err := e.client.ListCalls(context.Background(), &callledgerv1.ListCallsRequest{PageSize: query.MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetPosition() < uint64(head) {
			t.Errorf("position %d, want at least %d", resp.GetPosition(), head)
		}
		for i, c := range resp.GetCalls() {
			if !c.GetStartTime().AsTime().Equal(model[i].start) {
				t.Errorf("%s starts at %v, want %v", c.GetCallSid(), c.GetStartTime().AsTime(), model[i].start)
			}
		}
	})
}

// listAll pages through ListCalls and returns the CallSids in order and
// the number of pages.
func listAll(t *testing.T, e *env, f *callledgerv1.CallFilter, size int32) ([]string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	limit := cmp.Or(int(size), query.DefaultPageSize)
	var out []string
	token := ""
	for pages := 1; ; pages++ {
		resp, err := e.client.ListCalls(ctx, &callledgerv1.ListCallsRequest{Filter: f, PageSize: size, PageToken: token})
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(resp.GetCalls()) > limit {
			t.Fatalf("page %d holds %d calls, more than %d", pages, len(resp.GetCalls()), limit)
		}
		out = append(out, sids(resp.GetCalls())...)
		if token = resp.GetNextPageToken(); token == "" {
			return out, pages
		}
		if pages > 1000 {
			t.Fatal("more than 1000 pages: the tokens do not advance")
		}
	}
}
