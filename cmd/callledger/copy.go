package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/internal/server"
)

func copyCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("copy", stderr)
	var sf storeFlags
	sf.register(fs)
	to := fs.String("to", "", "the KurrentDB database to copy the ledger into: a connection string (esdb://…, esdb+discover://…)")
	sealClear := fs.Bool("seal", true, "seal, on the way, the personal data of events stored in the clear (before sealing existed, or with --seal=false), with keys in the key store of --data-dir")
	var kek kekFlag
	kek.register(fs)
	var lf logFlags
	lf.register(fs)
	return &ffcli.Command{
		Name:       "copy",
		ShortUsage: "callledger copy [--data-dir DIR] [--store SRC] --to esdb://… [--kek-file FILE]",
		ShortHelp:  "copy the ledger of a stopped server into KurrentDB",
		LongHelp: "Copies every event of the ledger of a stopped server (its embedded store, or\n" +
			"the KurrentDB database of --store) into the KurrentDB database of --to, each\n" +
			"stream revision for revision, for a server that then runs with the same\n" +
			"--data-dir and --store set to --to: when one machine is no longer enough, or to\n" +
			"seal a KurrentDB ledger written in the clear (KurrentDB cannot rewrite events in\n" +
			"place; retire the old database and its archive afterwards). Events stored in the\n" +
			"clear are sealed on the way (--seal, with keys in the key store of --data-dir;\n" +
			"each checked to open to what was stored), events already sealed are copied as\n" +
			"they are. The read model of --data-dir, which counts the old store's positions,\n" +
			"is moved aside: the server builds a new one from --to. Events already in --to\n" +
			"are skipped, so running it again finishes an interrupted copy.\n" +
			"docs/deploy-kurrentdb.md.",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("copy takes no arguments, got %q", args)
			}
			if *to == "" {
				return errors.New("--to: give the KurrentDB database to copy into (esdb://…); to move an embedded ledger to another machine, use callledger backup")
			}
			if *to == sf.store {
				return errors.New("--to names the ledger being copied (--store): copy into another database")
			}
			logger, err := lf.logger(stderr)
			if err != nil {
				return err
			}
			src, err := sf.openOffline(ctx, logger, "")
			if err != nil {
				return err
			}
			defer src.Close()
			rep, err := server.CopyLedger(ctx, src, sf.dataDir, *to, kek.file, *sealClear, logger)
			fmt.Fprintf(stdout, "%-30s %d\n", "events read:", rep.Read)
			fmt.Fprintf(stdout, "%-30s %d\n", "events written:", rep.Written)
			fmt.Fprintf(stdout, "%-30s %d\n", "already there:", rep.Present)
			if *sealClear {
				fmt.Fprintf(stdout, "%-30s %d\n", "sealed on the way:", rep.Seal.Sealed)
				fmt.Fprintf(stdout, "%-30s %d\n", "redacted (calls erased):", rep.Seal.Redacted)
			}
			if err != nil {
				return err
			}
			if rep.ReadModel != "" {
				fmt.Fprintf(stdout, "the read model of the old ledger was moved to %s (delete it once the server runs on --to)\n", rep.ReadModel)
			}
			if sf.store == "" {
				fmt.Fprintf(stdout, "the embedded ledger in %s/ledger still holds the events as they were stored: delete it once the server runs on --to (erasures will not reach it)\n", sf.dataDir)
			} else {
				fmt.Fprintln(stdout, "the database of --store still holds the events as they were stored: retire it and its archive once the server runs on --to (erasures will not reach it)")
			}
			fmt.Fprintf(stdout, "next: callledger serve --data-dir %s --store <the --to connection string>\n", sf.dataDir)
			return nil
		},
	}
}
