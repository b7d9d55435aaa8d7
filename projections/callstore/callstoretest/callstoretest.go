// Package callstoretest runs the call-state read model for tests, fed
// from a real event log by the projection runner, as serve runs it.
package callstoretest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstore"
)

// Start opens a Pebble event log and a call store in temporary
// directories of t, and projects the log's call streams into the store
// until t ends, when both are closed.
func Start(t testing.TB) (*pebblestore.Store, *callstore.Store) {
	t.Helper()
	events, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	calls, err := callstore.Open(t.TempDir(), callstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { calls.Close() })
	Project(t, events, calls)
	return events, calls
}

// Project runs the call-state projection from log into calls until t
// ends; cleanups registered earlier (closing either store) run after it
// has stopped.
func Project(t testing.TB, log projections.Source, calls *callstore.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	runner := projections.NewRunner(log, calls, eventstore.Filter{StreamPrefixes: eventcodec.ProjectedStreamPrefixes()}, nil)
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
