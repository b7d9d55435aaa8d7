package instrument

import (
	"context"
	"time"

	"github.com/callledger/callledger/eventstore"
)

// Observer is told of every append, for metrics; package metrics
// implements it, so that this package stays free of Prometheus.
type Observer interface {
	// Appended reports one append of events events, of which duplicates
	// were already stored (and not written again), that took took and
	// failed with err (nil on success; duplicates is then 0).
	Appended(events, duplicates int, took time.Duration, err error)
}

// Metrics returns s reporting every append to obs: its latency (queueing,
// commit and durability), its outcome, and how many of its events were
// written or duplicates.
func Metrics(s eventstore.Store, obs Observer) eventstore.Store {
	return decorate(&measured{Store: s, obs: obs}, s)
}

type measured struct {
	eventstore.Store
	obs Observer
}

func (m *measured) Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	began := time.Now()
	res, err := m.Store.Append(ctx, stream, expected, events...)
	m.obs.Appended(len(events), len(res.Duplicates), time.Since(began), err)
	return res, err
}
