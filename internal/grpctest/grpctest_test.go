package grpctest_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/callledger/callledger/internal/grpctest"
)

// TestServe: a service registered through Serve answers over the returned
// connection and over another one dialled to its target.
func TestServe(t *testing.T) {
	t.Parallel()
	hs := health.NewServer()
	hs.SetServingStatus("callledger", healthpb.HealthCheckResponse_SERVING)
	conn := grpctest.Serve(t, func(g grpc.ServiceRegistrar) { healthpb.RegisterHealthServer(g, hs) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []*grpc.ClientConn{conn, grpctest.Dial(t, conn.Target())} {
		resp, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{Service: "callledger"})
		if err != nil {
			t.Fatalf("Check over %s: %v", c.Target(), err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check over %s: %v, want SERVING", c.Target(), resp.GetStatus())
		}
	}
}
