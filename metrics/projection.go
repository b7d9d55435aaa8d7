package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LagFunc measures how far a projection trails the log: in log positions
// (events, for the embedded store) and as the age of the oldest event it
// has not applied yet (zero when it is current).
type LagFunc func(ctx context.Context) (positions uint64, age time.Duration, err error)

// CallCounts reports the read model's calls by status (lower-case Twilio
// names, "unspecified" for placeholders without one) and how many are
// active (known and not ended).
type CallCounts interface {
	CallCounts() (byStatus map[string]int64, active int64)
}

// Projection exports the call-state projection's lag and the read model's
// call counts, computed at scrape time so the projection's hot path does
// nothing for them.
type Projection struct {
	lag     LagFunc
	counts  CallCounts
	timeout time.Duration

	lagEvents, lagSeconds, scrapeErrors, calls, active *prometheus.Desc
}

// NewProjection registers the projection metrics with reg. Either source
// may be nil, and then its metrics are left out.
func NewProjection(reg prometheus.Registerer, lag LagFunc, counts CallCounts) (*Projection, error) {
	p := &Projection{
		lag: lag, counts: counts, timeout: 2 * time.Second,
		lagEvents: prometheus.NewDesc(Namespace+"_projection_lag_events",
			"Log positions the call-state projection has not applied yet (head minus checkpoint).", nil, nil),
		lagSeconds: prometheus.NewDesc(Namespace+"_projection_lag_seconds",
			"Age of the oldest event the call-state projection has not applied yet; 0 when it is current.", nil, nil),
		scrapeErrors: prometheus.NewDesc(Namespace+"_projection_lag_scrape_error",
			"1 when the last scrape could not measure the projection lag.", nil, nil),
		calls: prometheus.NewDesc(Namespace+"_calls",
			"Calls in the read model by status.", []string{"status"}, nil),
		active: prometheus.NewDesc(Namespace+"_active_calls",
			"Calls known and not ended (status set, not terminal).", nil, nil),
	}
	if err := reg.Register(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Describe implements prometheus.Collector.
func (p *Projection) Describe(ch chan<- *prometheus.Desc) {
	if p.lag != nil {
		ch <- p.lagEvents
		ch <- p.lagSeconds
		ch <- p.scrapeErrors
	}
	if p.counts != nil {
		ch <- p.calls
		ch <- p.active
	}
}

// Collect implements prometheus.Collector.
func (p *Projection) Collect(ch chan<- prometheus.Metric) {
	if p.lag != nil {
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		positions, age, err := p.lag(ctx)
		cancel()
		failed := 0.0
		if err != nil {
			failed = 1
		} else {
			ch <- prometheus.MustNewConstMetric(p.lagEvents, prometheus.GaugeValue, float64(positions))
			ch <- prometheus.MustNewConstMetric(p.lagSeconds, prometheus.GaugeValue, age.Seconds())
		}
		ch <- prometheus.MustNewConstMetric(p.scrapeErrors, prometheus.GaugeValue, failed)
	}
	if p.counts != nil {
		byStatus, active := p.counts.CallCounts()
		for status, n := range byStatus {
			ch <- prometheus.MustNewConstMetric(p.calls, prometheus.GaugeValue, float64(n), status)
		}
		ch <- prometheus.MustNewConstMetric(p.active, prometheus.GaugeValue, float64(active))
	}
}

// NewReadModel registers the health of the call-state read model: how
// many times it was found corrupt (each time it is rebuilt from the
// ledger), and whether queries are refused now while that rebuild runs.
func NewReadModel(reg prometheus.Registerer, corruptions func() uint64, damaged func() bool) error {
	return register(reg,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "read_model", Name: "corruptions_total",
			Help: "Times the call-state read model was found corrupt or unusable; each is rebuilt from the ledger in the background.",
		}, func() float64 { return float64(corruptions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "read_model", Name: "damaged",
			Help: "1 while the read model is corrupt and queries answer UNAVAILABLE until its rebuild takes over, else 0.",
		}, func() float64 {
			if damaged() {
				return 1
			}
			return 0
		}),
	)
}
