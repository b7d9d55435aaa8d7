package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/services/projection"
)

// projectionRoot is the directory of every version of the call-state read
// model; each version (and each rebuild) has a directory of its own in it.
func projectionRoot(dataDir string) string {
	return filepath.Join(dataDir, "projections", "callstate")
}

// openProjection opens the call-state read model of the data directory and
// starts following the log; after a version bump it serves the old version
// while the new one builds beside it. opts tunes every read model it opens.
func openProjection(ctx context.Context, dataDir string, store eventstore.Store, opts callstore.Options, logger *slog.Logger) (*callversions.Manager, error) {
	m, err := callversions.Open(ctx, callversions.Config{Root: projectionRoot(dataDir), Log: store, Logger: logger, Store: opts})
	if err != nil {
		return nil, fmt.Errorf("open call-state read model: %w", err)
	}
	return m, nil
}

// registerProjection serves ProjectionService on g.
func registerProjection(g grpc.ServiceRegistrar, m *callversions.Manager, store eventstore.Store, logger *slog.Logger) error {
	srv, err := projection.New(projection.Config{Projection: m, Log: store, Logger: logger})
	if err != nil {
		return err
	}
	srv.Register(g)
	return nil
}
