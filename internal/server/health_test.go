package server

import (
	"errors"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/callledger/callledger/projections"
)

func TestQueryReadiness(t *testing.T) {
	t.Parallel()
	const serving, not = healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING
	for _, tc := range []struct {
		name     string
		caughtUp bool
		age      time.Duration
		err      error
		maxLag   time.Duration
		want     healthpb.HealthCheckResponse_ServingStatus
	}{
		{"still catching up", false, 0, nil, 30 * time.Second, not},
		{"current", true, 0, nil, 30 * time.Second, serving},
		{"behind within the bound", true, 29 * time.Second, nil, 30 * time.Second, serving},
		{"behind past the bound", true, 31 * time.Second, nil, 30 * time.Second, not},
		{"lag unmeasurable", true, 0, errors.New("store unavailable"), 30 * time.Second, not},
		{"no bound", true, time.Hour, nil, 0, serving},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := queryReadiness(tc.caughtUp, projections.Lag{Age: tc.age}, tc.err, tc.maxLag); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
