package freespace

import (
	"context"
	"fmt"

	"github.com/callledger/callledger/eventstore"
)

// pinger is a store with a cheaper liveness check than Head.
type pinger interface {
	Ping(ctx context.Context) error
}

// visitor is a store that lends its events to rebuilds (pebblestore).
type visitor interface {
	VisitAll(ctx context.Context, from, to eventstore.Position, fn func(*eventstore.RecordedEvent) error) error
}

// Guarded returns s refusing appends while g is low on space, and failing
// Ping (readiness) meanwhile. Reads, subscriptions and Close go to s
// unchanged; s's VisitAll is kept, and Unwrap returns s.
func Guarded(s eventstore.Store, g *Guard) eventstore.Store {
	gs := &guarded{Store: s, g: g}
	if v, ok := s.(visitor); ok {
		return guardedVisitor{gs, v}
	}
	return gs
}

type guarded struct {
	eventstore.Store
	g *Guard
}

type guardedVisitor struct {
	*guarded
	visitor
}

// Append refuses at once while space is low; the store is not asked.
func (s *guarded) Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := s.g.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

// Ping fails while space is low, then asks the store (its Ping, or Head).
func (s *guarded) Ping(ctx context.Context) error {
	if err := s.g.Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if p, ok := s.Store.(pinger); ok {
		return p.Ping(ctx)
	}
	_, err := s.Store.Head(ctx)
	return err
}

// Unwrap returns the guarded store.
func (s *guarded) Unwrap() eventstore.Store { return s.Store }
