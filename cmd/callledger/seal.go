package main

import (
	"context"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/internal/server"
)

func sealCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("seal", stderr)
	dataDir := fs.String("data-dir", "./data", dataDirFlagUsage)
	var kek kekFlag
	kek.register(fs)
	var lf logFlags
	lf.register(fs)
	return &ffcli.Command{
		Name:       "seal",
		ShortUsage: "callledger seal [--data-dir DIR] [--kek-file FILE]",
		ShortHelp:  "seal the personal data of events stored in the clear, offline",
		LongHelp: "Once, on a stopped server whose embedded ledger holds events stored before\n" +
			"sealing existed or with --seal=false: seals their personal data in place, with\n" +
			"keys in the key store of the data directory (made with --kek-file, or the\n" +
			"development key, if the server never sealed), so that callledger erase destroys\n" +
			"it like everything sealed since. Every event keeps its position, stream,\n" +
			"revision, ID and type, and opens to what was stored (checked before it is\n" +
			"written); an event of a call erased since loses its personal fields. Then the\n" +
			"ledger's files are scrubbed of the events in the clear. Safe to run again after\n" +
			"an interruption; events already sealed are left as they are. Start the server\n" +
			"afterwards with sealing on and the same --kek-file. docs/PRIVACY.md §7.",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("seal takes no arguments, got %q", args)
			}
			logger, err := lf.logger(stderr)
			if err != nil {
				return err
			}
			rep, err := server.SealLedger(ctx, *dataDir, kek.file, logger)
			if err != nil {
				return err
			}
			for _, line := range []struct {
				label string
				n     uint64
			}{
				{"events read", rep.Read}, {"sealed now", rep.Sealed}, {"redacted (calls erased since)", rep.Redacted},
				{"already sealed", rep.AlreadySealed}, {"without personal data", rep.Clear}, {"undecodable, left as they are", rep.Undecodable},
			} {
				fmt.Fprintf(stdout, "%-30s %d\n", line.label+":", line.n)
			}
			return nil
		},
	}
}
