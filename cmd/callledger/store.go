package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/server"
)

// The help of --data-dir and --store, the same in every command that reads
// or writes the ledger.
const (
	dataDirFlagUsage = "data directory: the embedded event store (ledger/) and the projections (projections/)"
	storeFlagUsage   = "event store: empty for the embedded store in <data-dir>/ledger, or a KurrentDB " +
		"connection string (esdb://host:2113?tls=true, esdb://user:pass@h1:2113,h2:2113,h3:2113, esdb+discover://cluster.example.com)"
)

// storeFlags are --data-dir and --store. Every command that reads or writes
// the ledger declares them through register, so that they all name a
// ledger alike, with the same defaults, help and environment variables.
type storeFlags struct {
	dataDir string
	store   string
}

// register adds --data-dir and --store to fs.
func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "./data", dataDirFlagUsage)
	fs.StringVar(&f.store, "store", "", storeFlagUsage)
}

// offlineCacheBytes is the block cache of the embedded log for the offline
// commands: they read it once from end to end, so a server's 256 MiB would
// only raise their peak memory (docs/BENCHMARKS.md §3, round 2).
const offlineCacheBytes = 32 << 20

// openOffline opens the event log for a command that needs the embedded
// store to itself. While a server holds it, the error says so and adds
// hint: what else the user can do (", or ...").
func (f storeFlags) openOffline(ctx context.Context, logger *slog.Logger, hint string) (eventstore.Store, error) {
	store, err := server.OpenStore(ctx, f.store, f.dataDir, server.StoreOptions{Logger: logger, CacheBytes: offlineCacheBytes})
	if errors.Is(err, pebblestore.ErrLocked) {
		return nil, fmt.Errorf("%w: a server (or another command) holds %s; stop it first%s", err, f.dataDir, hint)
	}
	return store, err
}
