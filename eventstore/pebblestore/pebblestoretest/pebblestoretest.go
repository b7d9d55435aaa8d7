// Package pebblestoretest opens real embedded event stores for tests of
// the packages above the port, made the same way everywhere: a temporary
// directory, closed when the test ends. Only _test.go files import it.
package pebblestoretest

import (
	"testing"

	"github.com/callledger/callledger/eventstore/pebblestore"
)

// Open opens an embedded event store in a temporary directory, closed
// when the test ends (a failure to close fails the test).
func Open(t testing.TB) *pebblestore.Store {
	t.Helper()
	s, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close the event store: %v", err)
		}
	})
	return s
}
