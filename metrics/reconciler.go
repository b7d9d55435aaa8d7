package metrics

import "github.com/prometheus/client_golang/prometheus"

// Reconciler counts what the reconciler did to calls it found stale.
type Reconciler struct {
	actions *prometheus.CounterVec
}

// NewReconciler registers callledger_reconciler_actions_total with reg.
func NewReconciler(reg prometheus.Registerer) (*Reconciler, error) {
	m := &Reconciler{actions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "reconciler", Name: "actions_total",
		Help: "Reconciler actions by kind (the reconciler's OnAction hook).",
	}, []string{"action"})}
	if err := reg.Register(m.actions); err != nil {
		return nil, err
	}
	return m, nil
}

// Action records one reconciler action; its signature matches the
// reconciler's OnAction hook, so wiring is `OnAction: m.Action`. Actions
// are a small fixed set chosen by the reconciler, never request data, so
// the label stays bounded.
func (m *Reconciler) Action(action string) { m.actions.WithLabelValues(action).Inc() }
