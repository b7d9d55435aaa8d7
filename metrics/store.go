package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Store measures the appends of any event store, through the decorator
// of eventstore/instrument (it implements instrument.Observer): latency,
// outcome, and the events written or found already stored.
type Store struct {
	latency    prometheus.Histogram
	appends    prometheus.Counter
	errors     prometheus.Counter
	events     prometheus.Counter
	duplicates prometheus.Counter
}

// NewStore registers the append metrics with reg.
func NewStore(reg prometheus.Registerer) (*Store, error) {
	m := &Store{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "store", Name: "append_seconds",
			Help:    "Time of one append as its caller sees it: queueing, commit and durability (fsync or quorum).",
			Buckets: LatencyBuckets,
		}),
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "store", Name: "appends_total",
			Help: "Appends to the event store, successful or not.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "store", Name: "append_errors_total",
			Help: "Appends that failed (a webhook's failed append is answered 503).",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "store", Name: "events_total",
			Help: "Events written to the log (duplicates excluded).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "store", Name: "duplicate_events_total",
			Help: "Events appended again that the log already held (retries), not written twice.",
		}),
	}
	if err := register(reg, m.latency, m.appends, m.errors, m.events, m.duplicates); err != nil {
		return nil, err
	}
	return m, nil
}

// Appended records one append: a histogram update and a few atomic
// additions, no allocation.
func (m *Store) Appended(events, duplicates int, took time.Duration, err error) {
	m.latency.Observe(took.Seconds())
	m.appends.Inc()
	if err != nil {
		m.errors.Inc()
		return
	}
	m.events.Add(float64(events - duplicates))
	m.duplicates.Add(float64(duplicates))
}

// GroupCommit measures the embedded store's group commit: how many appends
// share one fsync, and how long the fsync takes. Only the embedded store
// has one.
type GroupCommit struct {
	commits prometheus.Counter
	appends prometheus.Histogram
	events  prometheus.Histogram
	commit  prometheus.Histogram
}

// NewGroupCommit registers the group-commit metrics with reg.
func NewGroupCommit(reg prometheus.Registerer) (*GroupCommit, error) {
	m := &GroupCommit{
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "store", Name: "commits_total",
			Help: "Group commits that wrote to disk (one fsync each).",
		}),
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
	if err := register(reg, m.commits, m.appends, m.events, m.commit); err != nil {
		return nil, err
	}
	return m, nil
}

// Commit records one durable group commit. It runs on the committer's
// goroutine: atomic updates only, no allocation.
func (m *GroupCommit) Commit(appends, events int, took time.Duration) {
	m.commits.Inc()
	m.appends.Observe(float64(appends))
	m.events.Observe(float64(events))
	m.commit.Observe(took.Seconds())
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
