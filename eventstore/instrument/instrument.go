// Package instrument decorates an [eventstore.Store] with what every
// adapter should get alike, whatever its backend: metrics of appends,
// tracing, and (for tests) a hook on subscriptions. Each decorator wraps
// the port, never an adapter, so a new backend gets them without a line of
// its own; model: eventhorizon's eventstore/tracing.
//
// Callers type-assert optional capabilities on a store (Ping for
// readiness, VisitAll for fast rebuilds): a decorator offers exactly the
// ones of the store it wraps, and [Unwrap] reaches the adapter for what
// only it knows (its Stats).
package instrument

import (
	"context"

	"github.com/callledger/callledger/eventstore"
)

// pinger is a store with a cheaper liveness check than Head (KurrentDB).
type pinger interface {
	Ping(ctx context.Context) error
}

// visitor is a store that lends its events instead of copying them out
// (pebblestore), which rebuilds look for.
type visitor interface {
	VisitAll(ctx context.Context, from, to eventstore.Position, fn func(*eventstore.RecordedEvent) error) error
}

// unwrapper is a decorated store.
type unwrapper interface {
	Unwrap() eventstore.Store
}

// Unwrap returns the store under every decorator of this package: the
// adapter itself.
func Unwrap(s eventstore.Store) eventstore.Store {
	for {
		u, ok := s.(unwrapper)
		if !ok {
			return s
		}
		s = u.Unwrap()
	}
}

// decorate returns outer, which overrides some methods of inner, with
// inner's optional capabilities and an Unwrap to inner. The four types
// below are every combination of the two capabilities, so that a type
// assertion on the result succeeds exactly when it does on inner.
func decorate(outer, inner eventstore.Store) eventstore.Store {
	base := decorated{Store: outer, inner: inner}
	p, canPing := inner.(pinger)
	v, canVisit := inner.(visitor)
	switch {
	case canPing && canVisit:
		return pingVisitDecorated{base, p, v}
	case canPing:
		return pingDecorated{base, p}
	case canVisit:
		return visitDecorated{base, v}
	default:
		return base
	}
}

// decorated is outer's Store methods and an Unwrap to inner.
type decorated struct {
	eventstore.Store
	inner eventstore.Store
}

// Unwrap returns the decorated store.
func (d decorated) Unwrap() eventstore.Store { return d.inner }

type pingDecorated struct {
	decorated
	pinger
}

type visitDecorated struct {
	decorated
	visitor
}

type pingVisitDecorated struct {
	decorated
	pinger
	visitor
}
