package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/internal/corpus"
)

// These tests break KurrentDB (the stand-in) under the whole service and
// check what Twilio and query clients see: webhooks answered 503 with
// Retry-After while nothing can be stored, readiness following the store,
// and the read model ending exactly where the log says, with every event
// applied once.

// TestSubscriptionDropsLoseNothing drops the projection's subscription
// between and during deliveries of the corpus, as a restarting server or
// one that finds its consumer too slow does: the projection resumes, and
// applies every event exactly once.
func TestSubscriptionDropsLoseNothing(t *testing.T) {
	t.Parallel()
	reqs, exp, abs := mustCorpus(t)
	s := newStackOn(t, kurrentDB)
	sends := shuffledWithRetries(t, reqs)
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()

	drops := []struct {
		code codes.Code
		msg  string
	}{
		{codes.Unavailable, "Server is shutting down"},
		{codes.Aborted, "Operation timed out: Consumer too slow to handle event while live. Client resubscription required."},
		{codes.Unavailable, "Server Is Not Ready"},
	}
	chunks := len(drops) + 1
	for i := range chunks {
		if i > 0 {
			// The projection applied everything so far, so its
			// subscription is open: this drop ends it.
			d := drops[i-1]
			s.kdb.DropSubscriptions(d.code, d.msg)
		}
		chunk := sends[i*len(sends)/chunks : (i+1)*len(sends)/chunks]
		var wg sync.WaitGroup
		if i == chunks-1 {
			// And once more while events stream in.
			half := len(chunk) / 2
			wg.Go(func() {
				s.deliverAll(t, chunk[:half])
				s.kdb.DropSubscriptions(codes.Unavailable, "Server is shutting down")
				s.deliverAll(t, chunk[half:])
			})
		} else {
			wg.Go(func() { s.deliverAll(t, chunk) })
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if err := s.projection.waitFor(ctx, s.seen()); err != nil {
			t.Fatalf("after drop %d: %v", i, err)
		}
	}
	s.checkCorpus(t, exp, abs)
	if got := s.kstore.Stats().Resubscriptions; got < uint64(len(drops)) {
		t.Errorf("%d resubscriptions, want at least %d: the drops did not reach the subscription", got, len(drops))
	}
}

// TestStoreUnreachable stops KurrentDB halfway through the corpus: every
// webhook is answered 503 with Retry-After (never a 2xx for an event not
// stored) and /readyz fails; once KurrentDB is back, the same process
// becomes ready and takes Twilio's retries, and the read model ends
// exactly as if nothing had happened.
func TestStoreUnreachable(t *testing.T) {
	t.Parallel()
	reqs, exp, abs := mustCorpus(t)
	s := newStackOn(t, kurrentDB)
	s.deliverAll(t, reqs[:len(reqs)/2])
	if code, err := s.readyz(); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz before the outage: %d %v, want 200", code, err)
	}

	s.kdb.Stop()
	if code, err := s.readyz(); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with KurrentDB unreachable: %d %v, want 503", code, err)
	}
	refused := 0
	for _, r := range reqs[len(reqs)/2:] {
		if r.ExpectHTTP/100 != 2 {
			continue // forged or oversized: refused before the store
		}
		resp, err := s.post(r)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("seq %d with KurrentDB unreachable: HTTP %d, Retry-After %q; want 503 with Retry-After",
				r.Seq, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if refused++; refused == 3 {
			break
		}
	}
	if refused == 0 {
		t.Fatal("no webhook of the second half expects a 2xx")
	}

	if err := s.kdb.Restart(); err != nil {
		t.Fatal(err)
	}
	s.waitReady(t)
	// Twilio retries everything, and sends the rest.
	s.deliverAll(t, reqs)
	if t.Failed() {
		t.FailNow()
	}
	s.checkCorpus(t, exp, abs)
}

// TestNotLeaderIsRetried answers appends as a follower would, naming the
// leader: the adapter retries on the leader and Twilio sees its success.
func TestNotLeaderIsRetried(t *testing.T) {
	t.Parallel()
	reqs, exp, abs := mustCorpus(t)
	s := newStackOn(t, kurrentDB)
	leader := s.kdb.Addr() // one log: the node names itself after an election
	retried := 0
	for _, r := range reqs {
		if retried == 5 {
			break
		}
		if r.ExpectHTTP/100 != 2 {
			continue
		}
		before := s.kdb.Calls(kurrentdbtest.MethodAppend)
		s.kdb.NotLeaderNext(1, leader, kurrentdbtest.MethodAppend)
		s.deliver(t, r)
		switch appends := s.kdb.Calls(kurrentdbtest.MethodAppend) - before; appends {
		case 0:
			// Its events were stored already (a captured retry): no append,
			// and the fault waits for the next one.
		case 2:
			retried++
		default:
			t.Fatalf("seq %d: %d appends reached the server, want the not-leader answer and one retry", r.Seq, appends)
		}
	}
	if retried == 0 {
		t.Fatal("no append met the not-leader answer")
	}
	s.deliverAll(t, reqs)
	s.checkCorpus(t, exp, abs)
}

// post delivers r and returns the whole answer, body read and closed.
func (s *stack) post(r corpus.Request) (*http.Response, error) {
	req, err := http.NewRequest(r.Method, s.url+r.URI(), strings.NewReader(r.Body))
	if err != nil {
		return nil, err
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// waitReady waits until /readyz answers 200; reaching failBound fails.
func (s *stack) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(failBound)
	for {
		code, err := s.readyz()
		if err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %v %v after KurrentDB came back", code, err, failBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
