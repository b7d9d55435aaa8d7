package main

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

	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/metrics"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/delays"
	"github.com/callledger/callledger/reconcile"
)

// telemetry is serve's metrics wiring: one registry per server, never the
// global one, and the observers each component is handed.
type telemetry struct {
	reg        *prometheus.Registry
	webhook    *metrics.Webhook
	store      *metrics.Store
	grpc       *grpcprom.ServerMetrics
	reconciler *metrics.Reconciler
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

// onCommit is the event store's group-commit hook.
func (t *telemetry) onCommit(ci pebblestore.CommitInfo) {
	t.store.Commit(ci.Appends, ci.Events, ci.Duration)
}

// watchStore exports the event store's cumulative counters.
func (t *telemetry) watchStore(store *pebblestore.Store) error {
	err := metrics.RegisterStoreStats(t.reg, func() metrics.StoreStats {
		st := store.Stats()
		return metrics.StoreStats{Commits: st.Commits, Appends: st.Appends, Events: st.Events}
	})
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
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

// grpcOptions instrument a gRPC server; call instrumentGRPC once its
// services are registered.
func (t *telemetry) grpcOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(t.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(t.grpc.StreamServerInterceptor()),
	}
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
