package loadshed_test

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/internal/loadshed"
)

const query = "/callledger.v1.CallQueryService/GetCall"

// TestUnaryBoundAndBusy: calls of a shed service beyond the bound, or
// while the webhooks are busy, are RESOURCE_EXHAUSTED; other services and
// calls that end give room back.
func TestUnaryBoundAndBusy(t *testing.T) {
	t.Parallel()
	var busy atomic.Bool
	s := loadshed.New(loadshed.Limits{MaxQueries: 2, Services: []string{"callledger.v1.CallQueryService"}, Busy: busy.Load})
	in := s.Unary()
	call := func(method string, h grpc.UnaryHandler) error {
		_, err := in(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method}, h)
		return err
	}
	ok := func(context.Context, any) (any, error) { return nil, nil }
	// Two calls in progress (each calls the next from inside), a third is shed.
	var third error
	err := call(query, func(context.Context, any) (any, error) {
		return nil, call(query, func(context.Context, any) (any, error) {
			third = call(query, ok)
			if err := call("/grpc.health.v1.Health/Check", ok); err != nil {
				t.Errorf("health shed: %v", err)
			}
			return nil, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if status.Code(third) != codes.ResourceExhausted {
		t.Errorf("a third query with two in progress: %v, want RESOURCE_EXHAUSTED", third)
	}
	if err := call(query, ok); err != nil {
		t.Errorf("after the others ended: %v", err)
	}
	busy.Store(true)
	if err := call(query, ok); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a query while webhooks are busy: %v, want RESOURCE_EXHAUSTED", err)
	}
	if err := call("/callledger.v1.CallCommandService/RequestHangup", ok); err != nil {
		t.Errorf("a service not shed, while busy: %v", err)
	}
}

type fakeStream struct{ grpc.ServerStream }

func TestStreamBound(t *testing.T) {
	t.Parallel()
	s := loadshed.New(loadshed.Limits{MaxStreams: 1, Services: []string{"callledger.v1.CallQueryService"}})
	in := s.Stream()
	info := &grpc.StreamServerInfo{FullMethod: "/callledger.v1.CallQueryService/WatchCalls", IsServerStream: true}
	var second error
	err := in(nil, fakeStream{}, info, func(any, grpc.ServerStream) error {
		second = in(nil, fakeStream{}, info, func(any, grpc.ServerStream) error { return nil })
		return nil
	})
	if err != nil || status.Code(second) != codes.ResourceExhausted {
		t.Errorf("first %v, second %v: want the second RESOURCE_EXHAUSTED", err, second)
	}
	if err := in(nil, fakeStream{}, info, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Errorf("after the first ended: %v", err)
	}
}
