package kurrentdb

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/eventstore/storetest"
)

// TestGateAdmitsAWaiterOnceTheClientIsProven: a call waiting at the gate
// of an unproven client, for the calls still inside to leave, is admitted
// as soon as one of them proves the client healthy. It once went on
// waiting until every call inside had left (or its own bound passed), so
// that under steady load the calls that queued behind it during a blip
// all failed with a timeout after the client had recovered.
func TestGateAdmitsAWaiterOnceTheClientIsProven(t *testing.T) {
	t.Parallel()
	r := &clientRef{
		healthy: true, entry: make(chan struct{}, 1), drained: make(chan struct{}),
		dead: make(chan struct{}), idle: make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), storetest.Deadline)
	defer cancel()
	// Three calls inside a healthy client; one finds the transport down.
	for i := range 3 {
		if alone, err := r.enter(ctx, nil, 0); alone || err != nil {
			t.Fatalf("call %d entering a healthy client: alone %v, %v", i, alone, err)
		}
	}
	r.exit(false, status.Error(codes.Unavailable, "connection refused"), false)
	// A fourth call waits for the two still inside.
	admitted := make(chan error, 1)
	go func() {
		alone, err := r.enter(ctx, nil, 0)
		if err == nil {
			r.exit(alone, nil, false)
		}
		admitted <- err
	}()
	for len(r.entry) == 0 { // it holds entry: the unproven client's turn
		if ctx.Err() != nil {
			t.Fatal("the fourth call never reached the gate")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let it wait for the others to leave; the outcome must not depend on it
	// One of them succeeds, which proves the client; the other stays.
	r.exit(false, nil, false)
	if err := <-admitted; err != nil {
		t.Fatalf("the waiting call was not admitted once the client was proven healthy: %v", err)
	}
}
