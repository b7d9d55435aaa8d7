package e2e_test

import (
	"context"
	"slices"
	"testing"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/corpus"
)

// TestChildrenBeforeParent replays, for every captured tree whose root
// dialled children, first every request of the children and only then the
// root's own (its status callback, Dial action, recordings). In between,
// the root is a placeholder of unknown status that already lists the
// children heard from; after its own requests it is a real call with
// every child, in its final state.
func TestChildrenBeforeParent(t *testing.T) {
	t.Parallel()
	reqs, exp, _ := mustCorpus(t)
	s := newStack(t)

	type tree struct {
		root     corpus.Expected
		children []corpus.Request // requests of the children's own streams
		own      []corpus.Request // requests of the root's stream
	}
	trees := map[string]*tree{}
	rootOf := map[int]string{} // corpus tree number → root CallSid
	for _, e := range exp {
		if e.ParentCallSid == "" && len(e.ChildCallSids) > 0 && !e.Placeholder {
			trees[e.CallSid] = &tree{root: e}
			rootOf[e.Tree] = e.CallSid
		}
	}
	for _, r := range reqs {
		tr := trees[rootOf[r.Tree]]
		if tr == nil || r.ExpectHTTP == 403 || r.Kind == "quarantine" {
			continue
		}
		if r.CallSid == tr.root.CallSid {
			tr.own = append(tr.own, r)
		} else {
			tr.children = append(tr.children, r)
		}
	}
	tested := 0
	for root, tr := range trees {
		if len(tr.children) == 0 {
			continue // only a Dial action names the child: nothing arrives first
		}
		tested++
		t.Run(tr.root.Scenario+"/"+root, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), failBound)
			defer cancel()

			var heard []string
			for _, r := range tr.children {
				s.deliver(t, r)
				heard = append(heard, r.CallSid)
			}
			slices.Sort(heard)
			heard = slices.Compact(heard)
			resp, err := s.getCall(ctx, root)
			if err != nil {
				t.Fatalf("after the children: %v", err)
			}
			c := resp.GetCall()
			if !c.GetPlaceholder() || c.GetEventCount() != 0 || c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED {
				t.Errorf("after the children: placeholder=%v event_count=%d status %v, want a placeholder of unknown status", c.GetPlaceholder(), c.GetEventCount(), c.GetStatus())
			}
			if !slices.Equal(c.GetChildCallSids(), heard) {
				t.Errorf("after the children: children %v, want %v", c.GetChildCallSids(), heard)
			}
			if want := append([]string{root}, heard...); !slices.Equal(legSids(resp.GetLegs()), want) {
				t.Errorf("after the children: legs %v, want %v", legSids(resp.GetLegs()), want)
			}

			for _, r := range tr.own {
				s.deliver(t, r)
			}
			resp, err = s.getCall(ctx, root)
			if err != nil {
				t.Fatalf("after the root: %v", err)
			}
			if resp.GetCall().GetPlaceholder() {
				t.Error("after its own callback the root is still a placeholder")
			}
			checkExpected(t, tr.root, resp.GetCall())
			if want := append([]string{root}, tr.root.ChildCallSids...); !slices.Equal(legSids(resp.GetLegs()), want) {
				t.Errorf("after the root: legs %v, want %v", legSids(resp.GetLegs()), want)
			}
		})
	}
	if tested < 5 {
		t.Errorf("only %d trees with children calling first; the corpus has more", tested)
	}
}
