package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/peterbourgon/ff/v3/ffcli"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

func backupCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("backup", stderr)
	var client clientFlags
	client.register(fs)
	to := fs.String("to", "", "directory to write the backup to, on the server's machine: absent or empty (a relative path is resolved here, and only for a server on this machine)")
	return &ffcli.Command{
		Name:       "backup",
		ShortUsage: "callledger backup --to DIR [--addr HOST:PORT] [--token …] [--tls …]",
		ShortHelp:  "back up the embedded ledger of a running server, online",
		LongHelp: "Asks the running server (AdminService.Backup, with the projections:admin scope)\n" +
			"for a consistent, point-in-time copy of its embedded ledger and read model in\n" +
			"DIR, on the server's machine, while it keeps acknowledging webhooks: every\n" +
			"webhook acknowledged before the backup started is in it. DIR must be absent\n" +
			"or empty. Restore by starting a server on it: callledger serve --data-dir DIR.\n" +
			"KurrentDB keeps its own backups (docs/deploy-kurrentdb.md).",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("backup takes no arguments, got %q", args)
			}
			dir := *to
			switch {
			case dir == "":
				return errors.New("--to is required: the directory to write the backup to")
			case !filepath.IsAbs(dir) && !isLoopbackAddr(client.addr):
				return fmt.Errorf("--to %s: give an absolute path on the server's machine (%s is not this machine)", dir, client.addr)
			case !filepath.IsAbs(dir):
				abs, err := filepath.Abs(dir)
				if err != nil {
					return fmt.Errorf("--to: %w", err)
				}
				dir = abs
			}
			conn, err := client.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			resp, err := callledgerv1.NewAdminServiceClient(conn).Backup(ctx, &callledgerv1.BackupRequest{TargetDir: dir})
			if err != nil {
				return fmt.Errorf("backup to %s: %w", dir, client.explain(err, ""))
			}
			rm := "no read model (serve rebuilds it)"
			if resp.GetReadModel() != "" {
				rm = fmt.Sprintf("read model %s at position %d", resp.GetReadModel(), resp.GetReadModelCheckpoint())
			}
			fmt.Fprintf(stdout, "backup in %s: ledger up to position %d, %s, in %s\nrestore: callledger serve --data-dir %s\n",
				dir, resp.GetPosition(), rm, resp.GetTook().AsDuration().Round(1e6), dir)
			return nil
		},
	}
}
