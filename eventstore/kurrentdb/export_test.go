package kurrentdb

import "github.com/EventStore/EventStore-Client-Go/v4/esdb"

// SetNamespace isolates a store's streams under ns, so that several
// conformance backings can share one server.
func SetNamespace(o *Options, ns string) { o.namespace = ns }

// Client returns the store's current client, for tests that drive it into
// states the store must recover from.
func (s *Store) Client() *esdb.Client {
	s.conn.mu.Lock()
	defer s.conn.mu.Unlock()
	return s.conn.cur.c
}

// InFlight reports the calls running inside a client, including those the
// caller gave up on: a call stranded in a dead client never returns.
func (s *Store) InFlight() int64 { return s.conn.inflight.Load() }
