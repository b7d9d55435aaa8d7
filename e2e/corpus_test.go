package e2e_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/corpus"
)

// TestCorpusEndToEnd sends the whole capture corpus over HTTP, shuffled,
// each request one to three times, from several goroutines at once; every
// answer must be the captured one. Then every call of expected.jsonl, read
// over gRPC at the highest position answered, must be in its expected
// state, every SID only forged requests name must be unknown, and the
// projection must have applied every event of the log exactly once. It
// runs on every backend.
func TestCorpusEndToEnd(t *testing.T) {
	t.Parallel()
	reqs, exp, abs := mustCorpus(t)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			s := newStackOn(t, b)
			sends := shuffledWithRetries(t, reqs)
			s.deliverAll(t, sends)
			if t.Failed() {
				t.FailNow()
			}
			t.Logf("%d requests sent (%d distinct); highest position %d", len(sends), len(reqs), s.seen())
			s.checkCorpus(t, exp, abs)
		})
	}
}

// shuffledWithRetries returns every request one to three times, shuffled:
// Twilio's retries and its disorder.
func shuffledWithRetries(t *testing.T, reqs []corpus.Request) []corpus.Request {
	seed := rand.Uint64()
	t.Logf("shuffle seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	var sends []corpus.Request
	for _, r := range reqs {
		for range 1 + rng.IntN(3) {
			sends = append(sends, r)
		}
	}
	rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })
	return sends
}

// deliverAll delivers sends from eight goroutines, checking every answer.
func (s *stack) deliverAll(t *testing.T, sends []corpus.Request) {
	work := make(chan corpus.Request)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for r := range work {
				s.deliver(t, r)
			}
		})
	}
	for _, r := range sends {
		work <- r
	}
	close(work)
	wg.Wait()
}

// checkCorpus checks, after the whole corpus was delivered, every call of
// expected.jsonl and its legs and history over gRPC, that forged SIDs are
// unknown, and that the projection applied the log exactly once.
func (s *stack) checkCorpus(t *testing.T, exp []corpus.Expected, abs []corpus.Absent) {
	t.Helper()
	s.checkCorpusRebuilt(t, exp, abs, 0)
}

// checkCorpusRebuilt is checkCorpus after the read model was rebuilt from
// the ledger up to at most position rebuilt (checkExactlyOnceAfter).
func (s *stack) checkCorpusRebuilt(t *testing.T, exp []corpus.Expected, abs []corpus.Absent, rebuilt eventstore.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	byRoot := map[string][]string{}
	for _, e := range exp {
		byRoot[e.RootCallSid] = append(byRoot[e.RootCallSid], e.CallSid)
	}
	for _, e := range exp {
		resp, err := s.getCall(ctx, e.CallSid)
		if err != nil {
			t.Errorf("%s (%s, tree %d): %v", e.CallSid, e.Scenario, e.Tree, err)
			continue
		}
		checkExpected(t, e, resp.GetCall())
		// The legs are the whole tree: root first, then by CallSid.
		want := slices.Sorted(slices.Values(byRoot[e.RootCallSid]))
		if i := slices.Index(want, e.RootCallSid); i > 0 {
			want = slices.Insert(slices.Delete(want, i, i+1), 0, e.RootCallSid)
		}
		if got := legSids(resp.GetLegs()); !slices.Equal(got, want) {
			t.Errorf("%s (%s): legs %v, want %v", e.CallSid, e.Scenario, got, want)
		}
		// The history is the call's own events, each stored once.
		events, err := s.client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: e.CallSid})
		if err != nil {
			t.Errorf("%s: ListCallEvents: %v", e.CallSid, err)
		} else if len(events.GetEvents()) != e.OwnEvents {
			t.Errorf("%s (%s): %d events in its history, want %d", e.CallSid, e.Scenario, len(events.GetEvents()), e.OwnEvents)
		}
	}
	for _, a := range abs {
		_, err := s.getCall(ctx, a.CallSid)
		if status.Code(err) != codes.NotFound {
			t.Errorf("forged %s (%s): %v, want NOT_FOUND", a.CallSid, a.Reason, err)
		}
		events, err := s.client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: a.CallSid})
		if err != nil || len(events.GetEvents()) != 0 {
			t.Errorf("forged %s: ListCallEvents %v with %d events, want an empty history", a.CallSid, err, len(events.GetEvents()))
		}
	}
	s.projection.checkExactlyOnceAfter(ctx, t, s.events, rebuilt)
}

// checkExpected compares a served call with its line of expected.jsonl.
func checkExpected(t *testing.T, e corpus.Expected, c *callledgerv1.Call) {
	t.Helper()
	var diffs []string
	diff := func(field string, got, want any) {
		diffs = append(diffs, fmt.Sprintf("%s: got %v, want %v", field, got, want))
	}
	if c.GetCallSid() != e.CallSid {
		diff("call_sid", c.GetCallSid(), e.CallSid)
	}
	if c.GetStatus().String() != e.Status {
		diff("status", c.GetStatus().String(), e.Status)
	}
	if c.GetTerminal() != e.Terminal {
		diff("terminal", c.GetTerminal(), e.Terminal)
	}
	if c.GetPlaceholder() != e.Placeholder {
		diff("placeholder", c.GetPlaceholder(), e.Placeholder)
	}
	if c.GetParentCallSid() != e.ParentCallSid {
		diff("parent_call_sid", c.GetParentCallSid(), e.ParentCallSid)
	}
	if !slices.Equal(c.GetChildCallSids(), e.ChildCallSids) && len(c.GetChildCallSids())+len(e.ChildCallSids) > 0 {
		diff("child_call_sids", c.GetChildCallSids(), e.ChildCallSids)
	}
	if c.GetRootCallSid() != e.RootCallSid {
		diff("root_call_sid", c.GetRootCallSid(), e.RootCallSid)
	}
	switch {
	case e.DurationSeconds == nil && c.DurationSeconds != nil:
		diff("duration_seconds", *c.DurationSeconds, "null")
	case e.DurationSeconds != nil && c.DurationSeconds == nil:
		diff("duration_seconds", "null", *e.DurationSeconds)
	case e.DurationSeconds != nil && *e.DurationSeconds != *c.DurationSeconds:
		diff("duration_seconds", *c.DurationSeconds, *e.DurationSeconds)
	}
	if len(c.GetRecordings()) != e.Recordings {
		diff("recordings", len(c.GetRecordings()), e.Recordings)
	}
	if c.GetEventCount() != int64(e.OwnEvents) {
		diff("event_count", c.GetEventCount(), e.OwnEvents)
	}
	if len(diffs) > 0 {
		t.Errorf("%s (%s, tree %d):\n\t%s", e.CallSid, e.Scenario, e.Tree, strings.Join(diffs, "\n\t"))
	}
}

func legSids(legs []*callledgerv1.Call) []string {
	out := make([]string, len(legs))
	for i, l := range legs {
		out[i] = l.GetCallSid()
	}
	return out
}
