package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/erasure"
)

func eraseCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("erase", stderr)
	var client clientFlags
	client.register(fs)
	number := fs.String("number", "", "erase every call this number (or client:/sip: identity) took part in, each with its tree")
	call := fs.String("call", "", "erase this call's tree: its root and every leg under it (a CallSid)")
	replay := fs.String("replay", "", "carry out the erasures of this erasure journal again (e.g. one fetched from storage after restoring a backup)")
	return &ffcli.Command{
		Name:       "erase",
		ShortUsage: "callledger erase --number +1555… | --call CA… | --replay FILE [--addr HOST:PORT] [--token …] [--tls …]",
		ShortHelp:  "erase the personal data of a call or of a number, on a running server",
		LongHelp: "Asks the running server (AdminService.Erase, with the personal:erase scope) to\n" +
			"erase the personal data of a call's tree (--call) or of every call a number\n" +
			"took part in (--number): their data keys are destroyed and the read model\n" +
			"redacts them (numbers, names, recordings, transcriptions); statuses and times\n" +
			"stay. The erasure is written first to the server's erasure journal, which\n" +
			"serve replays at start so that a restored backup forgets again; --replay FILE\n" +
			"replays another copy of a journal. Irreversible. Events written before\n" +
			"sealing keep their data in the log until callledger seal has run on the\n" +
			"stopped server: the answer counts them (docs/PRIVACY.md §7).",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("erase takes no arguments, got %q", args)
			}
			req := &callledgerv1.EraseRequest{Number: strings.TrimSpace(*number), CallSid: strings.TrimSpace(*call)}
			given := 0
			for _, s := range []string{req.Number, req.CallSid, *replay} {
				if s != "" {
					given++
				}
			}
			if given != 1 {
				return errors.New("give exactly one of --number, --call and --replay")
			}
			if *replay != "" {
				entries, err := readJournal(*replay)
				if err != nil {
					return err
				}
				req.Replay = entries
			}
			conn, err := client.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(ctx, client.timeout)
			defer cancel()
			resp, err := callledgerv1.NewAdminServiceClient(conn).Erase(ctx, req)
			if err != nil {
				return fmt.Errorf("erase: %w", client.explain(err, req.CallSid))
			}
			if client.output == "json" {
				return jsonLine(stdout, resp)
			}
			switch {
			case *replay != "":
				fmt.Fprintf(stdout, "replayed %s: %d of %d entries found keys again; %d subjects destroyed again\n",
					*replay, resp.GetReplayed(), len(req.Replay), resp.GetSubjects())
			case resp.GetErasureId() == "":
				fmt.Fprintln(stdout, "nothing to erase: no call names that number")
			default:
				fmt.Fprintf(stdout, "erasure %s: %d subjects, %d calls erased (%s)\n", resp.GetErasureId(), resp.GetSubjects(),
					resp.GetCalls(), strings.Join(resp.GetCallSids(), " "))
				if n := resp.GetPlaintextEvents(); n > 0 {
					fmt.Fprintf(stdout, "warning: %d events of these calls were written before sealing and still hold their personal data in the log until callledger seal has run on the stopped server (docs/PRIVACY.md §7)\n", n)
				}
			}
			return nil
		},
	}
}

// readJournal reads an erasure journal file into the request's entries.
func readJournal(path string) ([]*callledgerv1.ErasureJournalEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--replay: %w", err)
	}
	defer f.Close()
	entries, err := erasure.ReadJournal(f)
	if err != nil {
		return nil, fmt.Errorf("--replay %s: %w", path, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("--replay %s: the journal holds no erasure", path)
	}
	out := make([]*callledgerv1.ErasureJournalEntry, len(entries))
	for i, e := range entries {
		out[i] = &callledgerv1.ErasureJournalEntry{Id: e.ID, At: timestamppb.New(e.At), By: e.By, Subjects: e.Subjects}
	}
	return out, nil
}
