package metrics

import "github.com/prometheus/client_golang/prometheus"

// Erasure counts erasures of personal data: the calls erased and the
// erasures that failed, by who asked (operator: AdminService.Erase and
// journal replays; retention: the --retention job).
type Erasure struct {
	calls    *prometheus.CounterVec
	failures *prometheus.CounterVec
}

// The requesters an Erasure counts.
const (
	ErasureOperator  = "operator"
	ErasureRetention = "retention"
)

// NewErasure registers callledger_erasure_calls_total and
// callledger_erasure_failures_total with reg, both requesters at zero.
func NewErasure(reg prometheus.Registerer) (*Erasure, error) {
	m := &Erasure{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "erasure", Name: "calls_total",
			Help: "Call legs whose personal data was erased, by requester (operator, retention).",
		}, []string{"requester"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "erasure", Name: "failures_total",
			Help: "Erasures that failed, by requester (operator, retention).",
		}, []string{"requester"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{ErasureOperator, ErasureRetention} {
		m.calls.WithLabelValues(r)
		m.failures.WithLabelValues(r)
	}
	return m, nil
}

// Erased records n call legs erased for requester.
func (m *Erasure) Erased(requester string, n int) { m.calls.WithLabelValues(requester).Add(float64(n)) }

// Failed records a failed erasure of requester.
func (m *Erasure) Failed(requester string) { m.failures.WithLabelValues(requester).Inc() }
