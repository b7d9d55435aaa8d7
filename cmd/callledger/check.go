package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/eventstore/pebblestore"
)

func checkCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("check", stderr)
	dataDir := fs.String("data-dir", "./data", dataDirFlagUsage)
	perKind := fs.Int("max-per-kind", 10, "problems of each kind to list (all are counted)")
	var lf logFlags
	lf.register(fs)
	return &ffcli.Command{
		Name:       "check",
		ShortUsage: "callledger check [--data-dir DIR]",
		ShortHelp:  "verify the embedded ledger of a stopped server",
		LongHelp: "Reads the whole embedded ledger (<data-dir>/ledger) of a stopped server without\n" +
			"changing it: the checksums of every WAL record and table block, the positions\n" +
			"(1, 2, 3, … without a gap), every event record, and the index against the log\n" +
			"(every event indexed under its stream and revision, dedup entries present,\n" +
			"nothing indexed that the log lacks). Prints what it found and exits non-zero\n" +
			"on any problem. Refuses a ledger a running server holds.",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("check takes no arguments, got %q", args)
			}
			logger, err := lf.logger(stderr)
			if err != nil {
				return err
			}
			dir := filepath.Join(*dataDir, "ledger")
			r, err := pebblestore.Check(ctx, dir, pebblestore.CheckOptions{Logger: logger, MaxPerKind: *perKind})
			if errors.Is(err, pebblestore.ErrLocked) {
				return fmt.Errorf("%w: a server (or another command) holds %s; stop it first", err, *dataDir)
			}
			if err != nil {
				return err
			}
			printCheck(stdout, dir, r)
			if !r.OK() {
				return fmt.Errorf("ledger %s: problems: %d", dir, r.Total())
			}
			return nil
		},
	}
}

// printCheck writes the report: what was read, then each kind of problem
// with its count and its first instances, then the notes.
func printCheck(w io.Writer, dir string, r *pebblestore.Report) {
	fmt.Fprintf(w, "ledger %s: %d events (head %d) in %d streams; index covers up to %d; %d tables verified\n",
		dir, r.Events, r.Head, r.Streams, r.Applied, r.Tables)
	if r.OK() {
		fmt.Fprintln(w, "no problems")
	} else {
		fmt.Fprintf(w, "problems: %d\n", r.Total())
		for _, kind := range r.Kinds() {
			fmt.Fprintf(w, "%s: %d\n", kind, r.Counts[kind])
			for _, p := range r.Problems {
				if p.Kind == kind {
					fmt.Fprintf(w, "  %s\n", p.Detail)
				}
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
