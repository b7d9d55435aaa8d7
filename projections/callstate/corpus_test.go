package callstate_test

import (
	"net/http"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/twilio"
)

// corpusEvents derives the events of every verified corpus request, in
// delivery order, duplicates included.
func corpusEvents(t testing.TB) []*callledgerv1.Event {
	t.Helper()
	reqs, err := corpus.Requests()
	if err != nil {
		t.Fatal(err)
	}
	var out []*callledgerv1.Event
	received := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range reqs {
		if r.ExpectHTTP == http.StatusForbidden {
			continue
		}
		h := http.Header{}
		for k, v := range r.Headers {
			h.Set(k, v)
		}
		received = received.Add(time.Second)
		kind, _ := twilio.KindOfPath(r.Path) // an unknown path derives a quarantined event
		for _, d := range twilio.Derive(kind, &twilio.Request{
			Method: r.Method, URL: corpus.PublicURL + r.URI(), RawQuery: r.Query, ContentType: r.ContentType,
			Header: h, Body: []byte(r.Body), ReceivedAt: received,
		}) {
			out = append(out, d.Event)
		}
	}
	return out
}

func TestCorpusReachesExpectedStates(t *testing.T) {
	t.Parallel()
	events := corpusEvents(t)
	mem := callstate.NewMemory()
	for i, ev := range events {
		if err := callstate.Apply(mem, ev, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	checkExpected(t, mem)
}

func checkExpected(t *testing.T, mem *callstate.Memory) {
	t.Helper()
	exp, err := corpus.ExpectedCalls()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exp {
		rec, _ := mem.Get(e.CallSid)
		if rec == nil {
			t.Errorf("%s (%s): no record", e.CallSid, e.Scenario)
			continue
		}
		c := callstate.View(rec)
		var problems []string
		check := func(ok bool, what string, got, want any) {
			if !ok {
				problems = append(problems, what)
				t.Errorf("%s (%s, tree %d): %s = %v, want %v", e.CallSid, e.Scenario, e.Tree, what, got, want)
			}
		}
		check(c.GetStatus().String() == e.Status, "status", c.GetStatus(), e.Status)
		check(c.GetTerminal() == e.Terminal, "terminal", c.GetTerminal(), e.Terminal)
		check(c.GetPlaceholder() == e.Placeholder, "placeholder", c.GetPlaceholder(), e.Placeholder)
		check(c.GetParentCallSid() == e.ParentCallSid, "parent_call_sid", c.GetParentCallSid(), e.ParentCallSid)
		check(equalStrings(c.GetChildCallSids(), e.ChildCallSids), "child_call_sids", c.GetChildCallSids(), e.ChildCallSids)
		check(c.GetRootCallSid() == e.RootCallSid, "root_call_sid", c.GetRootCallSid(), e.RootCallSid)
		check(equalDuration(c.DurationSeconds, e.DurationSeconds), "duration_seconds", fmtPtr(c.DurationSeconds), fmtPtr(e.DurationSeconds))
		check(len(c.GetRecordings()) == e.Recordings, "recordings", len(c.GetRecordings()), e.Recordings)
		check(c.GetEventCount() == int64(e.OwnEvents), "event_count", c.GetEventCount(), e.OwnEvents)
	}
	absent, err := corpus.AbsentCalls()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range absent {
		if rec, _ := mem.Get(a.CallSid); rec != nil {
			t.Errorf("forged %s (%s) has a record", a.CallSid, a.Reason)
		}
	}
	if mem.Len() != len(exp) {
		t.Errorf("%d calls known, want %d", mem.Len(), len(exp))
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalDuration(a, b *int64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func fmtPtr(p *int64) any {
	if p == nil {
		return "null"
	}
	return *p
}
