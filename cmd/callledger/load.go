package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/internal/ledgerload"
)

// loadCommand is a development tool, left out of the help: it fills a
// data directory with realistic call history for rebuild benchmarks.
func loadCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("load", stderr)
	var sf storeFlags
	sf.register(fs)
	events := fs.Int("events", 1_000_000, "number of events to append")
	seed := fs.Uint64("seed", 1, "seed of the generated call flows")
	var lf logFlags
	lf.register(fs)
	return &ffcli.Command{
		Name:       "load",
		ShortUsage: "callledger load --events N [--data-dir DIR | --store esdb://...]",
		ShortHelp:  "development: fill a data directory with generated call history",
		LongHelp: "Development tool: appends realistic call flows (the events the webhook would\n" +
			"store, verbatim requests included) straight to the event store, for rebuild\n" +
			"benchmarks. See docs/BENCHMARKS.md.",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("load takes no arguments, got %q", args)
			}
			if *events <= 0 {
				return errors.New("--events must be positive")
			}
			logger, err := lf.logger(stderr)
			if err != nil {
				return err
			}
			store, err := sf.openOffline(ctx, logger, "")
			if err != nil {
				return err
			}
			defer store.Close()
			st, err := ledgerload.Load(ctx, store, ledgerload.Config{Events: *events, Seed: *seed, Progress: func(n int64) {
				if n%1_000_000 < 100_000 {
					logger.Info("loading", "events", n)
				}
			}})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "appended %d events of %d call trees in %s (%.0f events/s)\n",
				st.Events, st.Calls, st.Elapsed.Round(1e6), float64(st.Events)/st.Elapsed.Seconds())
			return nil
		},
	}
}
