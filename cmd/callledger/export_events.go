package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/eventexport"
)

type exportEventsConfig struct {
	storeFlags
	rowFileFlags
	includePersonal bool
	kek             kekFlag
	log             logFlags
}

func exportEventsCommand(stdout, stderr io.Writer) *ffcli.Command {
	var cfg exportEventsConfig
	fs := newFlagSet("export events", stderr)
	cfg.storeFlags.register(fs)
	cfg.kek.register(fs)
	cfg.rowFileFlags.register(fs, "events received")
	fs.BoolVar(&cfg.includePersonal, "include-personal", false, "fill the personal columns ("+strings.Join(eventexport.PersonalColumns, ", ")+"); null otherwise")
	cfg.log.register(fs)
	return &ffcli.Command{
		Name:       "events",
		ShortUsage: "callledger export events --format parquet|csv|jsonl --out FILE [flags]",
		ShortHelp:  "export one row per event of the log for analysis tools",
		LongHelp: "Reads the event log (the embedded store of a stopped server, or --store) and\n" +
			"writes one flat row per event, in log order: " + strings.Join(eventexport.Columns, ", ") + ".\n" +
			"Personal columns are null unless --include-personal is given. docs/ANALYSTS.md\n" +
			"has example queries.",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("export events takes no arguments, got %q", args)
			}
			logger, err := cfg.log.logger(stderr)
			if err != nil {
				return err
			}
			if !slices.Contains(eventexport.Formats, cfg.format) {
				return fmt.Errorf("--format %q: want parquet, csv or jsonl", cfg.format)
			}
			var opts eventexport.Options
			if opts.Since, err = parseTimeFlag("since", cfg.since); err != nil {
				return err
			}
			if opts.Until, err = parseTimeFlag("until", cfg.until); err != nil {
				return err
			}
			if cfg.includePersonal {
				// The key store is opened at the first sealed event.
				open := &lazyOpener{kek: &cfg.kek, dataDir: cfg.dataDir, log: logger}
				defer open.Close()
				opts.Personal = eventexport.Open(open)
			}
			out, err := createOut(cfg.out, cfg.format, stdout)
			if err != nil {
				return err
			}
			defer out.abandon()
			exp, err := eventexport.New(cfg.format, out, opts)
			if err != nil {
				return err
			}
			store, err := cfg.openOffline(ctx, logger, ", or export from a copy of the directory")
			if err != nil {
				return err
			}
			defer store.Close()
			if err := exp.Export(ctx, store); err != nil {
				return err
			}
			if err := exp.Close(); err != nil {
				return err
			}
			if err := out.commit(); err != nil {
				return err
			}
			logger.Info("exported events", "rows", exp.Rows(), "format", cfg.format, "out", cfg.out, "personal", cfg.includePersonal)
			return nil
		},
	}
}
