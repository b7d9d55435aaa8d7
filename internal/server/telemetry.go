package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/callledger/callledger/metrics"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/delays"
	"github.com/callledger/callledger/reconcile"
)

// telemetry is the server's metrics wiring: one registry per server, never
// the global one, and the observers each component is handed.
type telemetry struct {
	reg     *prometheus.Registry
	webhook *metrics.Webhook
	// store measures every append, through the store's decorator.
	store      *metrics.Store
	grpc       *grpcprom.ServerMetrics
	reconciler *metrics.Reconciler
	// erasure counts erasures; nil with RoleWebhooks.
	erasure *metrics.Erasure
	// delays feeds GetStats; the projection fills it.
	delays *delays.Window
}

func newTelemetry() (*telemetry, error) {
	reg := prometheus.NewRegistry()
	t := &telemetry{reg: reg, delays: delays.NewWindow(0, nil)}
	var err error
	if err = reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if t.webhook, err = metrics.NewWebhook(reg); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if t.store, err = metrics.NewStore(reg); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if t.reconciler, err = metrics.NewReconciler(reg, reconcile.AllActions()...); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	t.grpc = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(metrics.LatencyBuckets)))
	if err = reg.Register(t.grpc); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return t, nil
}

// groupCommit registers the group-commit metrics, which only the embedded
// store has, and returns its hook for StoreOptions.OnGroupCommit.
func (t *telemetry) groupCommit() (func(appends, events int, took time.Duration), error) {
	m, err := metrics.NewGroupCommit(t.reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m.Commit, nil
}

// watchProjection registers the call-state projection's lag and the read
// model's counts.
func (t *telemetry) watchProjection(log projections.Log, calls projectionState) error {
	lag := func(ctx context.Context) (uint64, time.Duration, error) {
		l, err := projections.MeasureLag(ctx, log, calls, time.Now())
		return l.Positions, l.Age, err
	}
	if _, err := metrics.NewProjection(t.reg, lag, callCounts{calls}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// instrumentGRPC exports every registered method at zero, so that rates
// and alerts work before the first call.
func (t *telemetry) instrumentGRPC(srv *grpc.Server) { t.grpc.InitializeMetrics(srv) }

// handler serves /metrics.
func (t *telemetry) handler(logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		Registry: t.reg,
	})
}

// projectionState is what the metrics read of the call-state read model.
type projectionState interface {
	projections.Checkpointer
	Counts() callstore.Counts
}

// callCounts adapts the read model's counts to the metrics' labels.
type callCounts struct{ calls projectionState }

func (c callCounts) CallCounts() (map[string]int64, int64) {
	counts := c.calls.Counts()
	out := make(map[string]int64, len(counts.ByStatus))
	for st, n := range counts.ByStatus {
		out[callstore.StatusName(st)] = n
	}
	return out, counts.Active
}
