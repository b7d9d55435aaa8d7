package metrics

import "github.com/prometheus/client_golang/prometheus"

// Reconciler counts what the reconciler did to calls it found stale.
type Reconciler struct {
	actions *prometheus.CounterVec
}

// NewReconciler registers callledger_reconciler_actions_total with reg,
// exporting the given actions at zero so that rates exist before the first
// action.
func NewReconciler(reg prometheus.Registerer, actions ...string) (*Reconciler, error) {
	m := &Reconciler{actions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "reconciler", Name: "actions_total",
		Help: "Reconciler actions by kind (the reconciler's OnAction hook).",
	}, []string{"action"})}
	if err := reg.Register(m.actions); err != nil {
		return nil, err
	}
	for _, a := range actions {
		m.actions.WithLabelValues(a)
	}
	return m, nil
}

// Action records one reconciler action; its signature matches the
// reconciler's OnAction hook, so wiring is `OnAction: m.Action`. Actions
// are a small fixed set chosen by the reconciler, never request data, so
// the label stays bounded.
func (m *Reconciler) Action(action string) { m.actions.WithLabelValues(action).Inc() }
