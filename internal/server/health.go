package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/callledger/callledger/projections"
)

// queryReadiness decides whether a replica should receive reads: not
// before its projection first caught up with the log, and not while the
// oldest event it has not applied is older than maxLag (0: no bound) or
// the lag cannot be measured — a balancer then sends reads elsewhere
// rather than to a replica that answers from a stale read model.
func queryReadiness(caughtUp bool, lag projections.Lag, lagErr error, maxLag time.Duration) healthpb.HealthCheckResponse_ServingStatus {
	switch {
	case !caughtUp, lagErr != nil:
		return healthpb.HealthCheckResponse_NOT_SERVING
	case maxLag > 0 && lag.Age > maxLag:
		return healthpb.HealthCheckResponse_NOT_SERVING
	default:
		return healthpb.HealthCheckResponse_SERVING
	}
}

// projectionHealth keeps the gRPC health status of service in line with
// queryReadiness until ctx ends, checking every interval.
type projectionHealth struct {
	health   *health.Server
	service  string
	caughtUp func() bool
	lag      func(ctx context.Context) (projections.Lag, error)
	maxLag   time.Duration
	interval time.Duration
	log      *slog.Logger
}

func (p projectionHealth) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_NOT_SERVING // as the server starts it
	for {
		var lag projections.Lag
		var err error
		up := p.caughtUp()
		if up {
			lag, err = p.lag(ctx)
		}
		st := queryReadiness(up, lag, err, p.maxLag)
		if st != last {
			p.health.SetServingStatus(p.service, st)
			attrs := []any{"status", st.String(), "lag_events", lag.Positions, "lag", lag.Age}
			if err != nil {
				attrs = append(attrs, "err", err)
			}
			p.log.Info("query service health", attrs...)
			last = st
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}
