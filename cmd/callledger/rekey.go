package main

import (
	"context"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/internal/server"
)

func rekeyCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("rekey", stderr)
	dataDir := fs.String("data-dir", "./data", dataDirFlagUsage)
	var kek kekFlag
	kek.register(fs)
	newKEK := fs.String("new-kek-file", "", "the key-encryption key to rotate to: a new file of 32 random bytes in base64 "+
		"(openssl rand -base64 32 > kek.new && chmod 600 kek.new), readable by its owner only")
	var lf logFlags
	lf.register(fs)
	return &ffcli.Command{
		Name:       "rekey",
		ShortUsage: "callledger rekey [--data-dir DIR] [--kek-file FILE] --new-kek-file FILE",
		ShortHelp:  "rotate the key-encryption key of the key store, offline",
		LongHelp: "On a stopped server: wraps every data key of the key store in the data directory\n" +
			"again under --new-kek-file's key-encryption key, instead of --kek-file's (or the\n" +
			"development key's), then scrubs the store's files so that none holds a key wrapped\n" +
			"under the old one. Sealed events and the party index are untouched: they open and\n" +
			"find their calls as before. Start the server afterwards with --kek-file set to the\n" +
			"new file. Until a rotation has finished the key store opens under neither key;\n" +
			"after an interruption, run the same command again. Backups taken before still\n" +
			"need the old key: destroy it when they are retired. docs/PRIVACY.md §5.",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("rekey takes no arguments, got %q", args)
			}
			logger, err := lf.logger(stderr)
			if err != nil {
				return err
			}
			res, err := server.RekeyKeys(ctx, *dataDir, kek.file, *newKEK, logger)
			if err != nil {
				return err
			}
			if res.Finished {
				fmt.Fprintln(stdout, "the key store was rotated to the new key-encryption key already; its files were scrubbed again")
			}
			fmt.Fprintf(stdout, "%-30s %d\n%-30s %d\n", "data keys rewrapped:", res.Rewrapped, "already rewrapped:", res.Already)
			fmt.Fprintln(stdout, "start the server with --kek-file set to the new key; keep the old one only while backups taken before now may be restored")
			return nil
		},
	}
}
