package e2e_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/server"
)

// TestWatcherFloodIsShed opens more WatchCalls streams than the server
// admits: those beyond the bound are refused RESOURCE_EXHAUSTED at once,
// those admitted keep streaming, webhooks are acknowledged throughout, and
// a stream that ends makes room for a new one.
func TestWatcherFloodIsShed(t *testing.T) {
	t.Parallel()
	const admitted = 4
	reqs, exp, abs := mustCorpus(t)
	s := newStackWith(t, embedded, server.Config{Overload: server.Overload{MaxStreams: admitted}})
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()

	var open []context.CancelFunc
	var refused int
	for range 3 * admitted {
		wctx, stop := context.WithCancel(ctx)
		w, err := s.client.WatchCalls(wctx, &callledgerv1.WatchCallsRequest{})
		if err == nil {
			_, err = w.Recv() // the first message (or the refusal)
		}
		switch status.Code(err) {
		case codes.OK:
			open = append(open, stop)
		case codes.ResourceExhausted:
			refused++
			stop()
		default:
			stop()
			t.Fatalf("WatchCalls: %v", err)
		}
	}
	if len(open) != admitted || refused != 2*admitted {
		t.Fatalf("%d watchers admitted, %d refused; want %d and %d", len(open), refused, admitted, 2*admitted)
	}
	s.deliverAll(t, reqs) // webhooks are never the ones shed
	if t.Failed() {
		t.FailNow()
	}
	open[0]()
	for {
		w, err := s.client.WatchCalls(ctx, &callledgerv1.WatchCallsRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || ctx.Err() != nil {
			t.Fatalf("a watcher after one ended: %v", err)
		}
	}
	for _, stop := range open[1:] {
		stop()
	}
	s.checkCorpus(t, exp, abs)
}
