package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/projections/callexport"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/projections/rebuild"
)

type exportConfig struct {
	storeFlags
	rowFileFlags
	kek        kekFlag
	activeOnly bool
	fromLedger bool
	log        logFlags
}

// rowFileFlags are what both exports take: the file, its format, and the
// time window of what goes in it.
type rowFileFlags struct {
	format, out  string
	since, until string
}

// register adds the flags; rows says what the window keeps ("calls that
// started").
func (f *rowFileFlags) register(fs *flag.FlagSet, rows string) {
	fs.StringVar(&f.format, "format", "parquet", "output format: parquet, csv or jsonl")
	fs.StringVar(&f.out, "out", "", "output file (required; - for standard output, except parquet)")
	fs.StringVar(&f.since, "since", "", "keep "+rows+" at or after this time (RFC 3339)")
	fs.StringVar(&f.until, "until", "", "keep "+rows+" before this time (RFC 3339)")
}

func exportCommand(stdout, stderr io.Writer) *ffcli.Command {
	var cfg exportConfig
	fs := newFlagSet("export", stderr)
	cfg.storeFlags.register(fs)
	cfg.kek.register(fs)
	cfg.rowFileFlags.register(fs, "calls that started")
	fs.BoolVar(&cfg.activeOnly, "active-only", false, "keep calls under way only")
	fs.BoolVar(&cfg.fromLedger, "from-ledger", false, "replay the ledger (the embedded store, or --store) into a throw-away projection instead of reading the read model")
	cfg.log.register(fs)
	return &ffcli.Command{
		Name:       "export",
		ShortUsage: "callledger export [events] --format parquet|csv|jsonl --out FILE [flags]",
		ShortHelp:  "export one row per call leg for analysis tools",
		LongHelp: "Reads the call-state read model of a stopped server, or with --from-ledger\n" +
			"folds the whole ledger in memory (leaving the read model untouched), and writes\n" +
			"one flat row per call leg: " + strings.Join(callexport.Columns, ", ") + ".",
		FlagSet:     fs,
		Options:     ffOptions(),
		Subcommands: []*ffcli.Command{exportEventsCommand(stdout, stderr)},
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("export takes no arguments, got %q (export events exports the log's events)", args)
			}
			logger, err := cfg.log.logger(stderr)
			if err != nil {
				return err
			}
			return exportCalls(ctx, cfg, stdout, stderr, logger)
		},
	}
}

func parseTimeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2026-03-01T00:00:00Z): %w", name, v, err)
	}
	return t, nil
}

func exportCalls(ctx context.Context, cfg exportConfig, stdout, stderr io.Writer, logger *slog.Logger) error {
	if !slices.Contains(callexport.Formats, cfg.format) {
		return fmt.Errorf("--format %q: want parquet, csv or jsonl", cfg.format)
	}
	var f callexport.Filter
	var err error
	if f.Since, err = parseTimeFlag("since", cfg.since); err != nil {
		return err
	}
	if f.Until, err = parseTimeFlag("until", cfg.until); err != nil {
		return err
	}
	f.ActiveOnly = cfg.activeOnly

	out, err := createOut(cfg.out, cfg.format, stdout)
	if err != nil {
		return err
	}
	defer out.abandon()
	exp, err := callexport.New(cfg.format, out, f)
	if err != nil {
		return err
	}
	if cfg.fromLedger {
		err = exportFromLedger(ctx, cfg.storeFlags, cfg.kek, exp, stderr, logger)
	} else {
		err = exportFromReadModel(ctx, cfg.dataDir, exp)
	}
	if err != nil {
		return err
	}
	if err := exp.Close(); err != nil {
		return err
	}
	if err := out.commit(); err != nil {
		return err
	}
	logger.Info("exported", "rows", exp.Rows(), "format", cfg.format, "out", cfg.out)
	return nil
}

// exportOut is the file an export writes: a temporary file beside --out,
// renamed when complete, so that a failed export never leaves a truncated
// file under the name asked for; or standard output (--out -).
type exportOut struct {
	io.Writer
	file *os.File
	path string
}

func createOut(path, format string, stdout io.Writer) (*exportOut, error) {
	switch {
	case path == "":
		return nil, errors.New("--out is required")
	case path == "-" && format == "parquet":
		return nil, errors.New("--out - (standard output) takes csv or jsonl; parquet needs a file")
	case path == "-":
		return &exportOut{Writer: stdout}, nil
	}
	file, err := os.CreateTemp(filepath.Dir(path), ".export-*")
	if err != nil {
		return nil, fmt.Errorf("create --out: %w", err)
	}
	return &exportOut{Writer: file, file: file, path: path}, nil
}

// commit makes the file durable under its name.
func (o *exportOut) commit() error {
	if o.file == nil {
		return nil
	}
	if err := o.file.Sync(); err != nil {
		return fmt.Errorf("write --out: %w", err)
	}
	if err := o.file.Close(); err != nil {
		return fmt.Errorf("write --out: %w", err)
	}
	if err := os.Rename(o.file.Name(), o.path); err != nil {
		return fmt.Errorf("write --out: %w", err)
	}
	o.file = nil
	return nil
}

// abandon removes an uncommitted file.
func (o *exportOut) abandon() {
	if o.file != nil {
		o.file.Close()
		os.Remove(o.file.Name())
	}
}

// exportFromReadModel reads the current read model of a stopped server.
func exportFromReadModel(ctx context.Context, dataDir string, exp *callexport.Exporter) error {
	cat := callversions.Catalog{Root: server.ProjectionRoot(dataDir)}
	name, version, ok, err := cat.Current(callstore.Version)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no call-state read model in %s: run serve or rebuild first, or export --from-ledger", cat.Root)
	}
	st, err := callstore.Open(cat.Path(name), callstore.Options{Version: version})
	if err != nil {
		return fmt.Errorf("%w (is a server running on %s? stop it first, or export --from-ledger from a copy)", err, dataDir)
	}
	defer st.Close()
	return st.Records(ctx, exp.Add)
}

// exportFromLedger folds the whole ledger in memory and exports the result.
func exportFromLedger(ctx context.Context, sf storeFlags, kek kekFlag, exp *callexport.Exporter, stderr io.Writer, logger *slog.Logger) error {
	store, err := sf.openOffline(ctx, logger, ", or export from a copy of the directory")
	if err != nil {
		return err
	}
	defer store.Close()
	opts := rebuild.Options{Logger: logger}
	fctx, closeKeys, err := kek.openForFold(ctx, &opts, sf.dataDir, logger)
	if err != nil {
		return err
	}
	defer closeKeys()
	progress := newProgress(stderr, logger)
	opts.Progress = progress.update
	res, err := rebuild.Fold(fctx, store, opts)
	progress.finish()
	if err != nil {
		return foldFailure(fctx, err)
	}
	return res.Calls(exp.Add)
}
