package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Store measures the embedded store's group commit: how many appends share
// one fsync, and how long the fsync takes.
type Store struct {
	appends prometheus.Histogram
	events  prometheus.Histogram
	commit  prometheus.Histogram
}

// StoreStats are the store's cumulative write-path counters.
type StoreStats struct{ Commits, Appends, Events uint64 }

// NewStore registers the group-commit metrics with reg.
func NewStore(reg prometheus.Registerer) (*Store, error) {
	m := &Store{
		appends: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "store", Name: "group_commit_appends",
			Help:    "Appends that shared one group commit (one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 … 1024, the default group limit
		}),
		events: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "store", Name: "group_commit_events",
			Help:    "Events written by one group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "store", Name: "commit_seconds",
			Help:    "Time to write and fsync one group commit's log batch.",
			Buckets: LatencyBuckets,
		}),
	}
	if err := register(reg, m.appends, m.events, m.commit); err != nil {
		return nil, err
	}
	return m, nil
}

// RegisterStoreStats exports the store's cumulative write-path counters,
// read from stats at each scrape.
func RegisterStoreStats(reg prometheus.Registerer, stats func() StoreStats) error {
	return register(reg,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "store", Name: "commits_total",
			Help: "Group commits that wrote to disk (one fsync each).",
		}, func() float64 { return float64(stats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "store", Name: "appends_total",
			Help: "Appends the committer processed, successful or not.",
		}, func() float64 { return float64(stats().Appends) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "store", Name: "events_total",
			Help: "Events written to the log (duplicates excluded).",
		}, func() float64 { return float64(stats().Events) }),
	)
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Commit records one durable group commit. It runs on the committer's
// goroutine: three atomic histogram updates, no allocation.
func (m *Store) Commit(appends, events int, took time.Duration) {
	m.appends.Observe(float64(appends))
	m.events.Observe(float64(events))
	m.commit.Observe(took.Seconds())
}
