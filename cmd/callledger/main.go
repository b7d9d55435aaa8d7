// Command callledger is the event-sourced call ledger for Twilio Voice: one
// binary that serves webhooks and queries (serve), inspects the ledger
// offline (events), rebuilds and exports the projection (rebuild, export),
// sends realistic signed traffic (simulate), and lists, watches and hangs
// up the calls of a running server (calls, stats).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// envPrefix gives every flag an environment fallback: --data-dir is also
// CALLLEDGER_DATA_DIR.
const envPrefix = "CALLLEDGER"

// envFallbacks are, per subcommand and flag, one more environment variable
// the flag falls back to when neither it nor its CALLLEDGER_ variable is
// set: Twilio's own names, which its console, tools and documentation use.
// Together with envPrefix they are every way a flag reads the environment.
var envFallbacks = map[string]map[string]string{
	"serve": {
		"auth-token":           "TWILIO_AUTH_TOKEN",
		"auth-token-secondary": "TWILIO_AUTH_TOKEN_SECONDARY",
		"twilio-account-sid":   "TWILIO_ACCOUNT_SID",
		"twilio-api-key":       "TWILIO_API_KEY",
		"twilio-api-secret":    "TWILIO_API_SECRET",
	},
	"simulate": {
		"token": "TWILIO_AUTH_TOKEN",
	},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if len(os.Args) > 1 {
		// Here, not in the commands: the collector is the process's, and
		// tests run the commands inside the test binary.
		switch os.Args[1] {
		case "serve":
			tuneGC(0)
		case "rebuild":
			tuneGC(rebuildMemoryLimit)
		}
	}
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "callledger:", err)
		os.Exit(1)
	}
}

// run is main without the process: tests drive the CLI through it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &ffcli.Command{
		Name:       "callledger",
		ShortUsage: "callledger <subcommand> [flags]",
		LongHelp: "An event-sourced call ledger for Twilio Voice. Every flag can also be set\n" +
			"through an environment variable: --data-dir is CALLLEDGER_DATA_DIR.",
		FlagSet:     flag.NewFlagSet("callledger", flag.ContinueOnError),
		Subcommands: subcommands(stdout, stderr),
		Exec:        func(context.Context, []string) error { return flag.ErrHelp },
	}
	root.FlagSet.SetOutput(stderr)
	if err := root.Parse(args); err != nil {
		return err
	}
	for _, sub := range root.Subcommands {
		if sub.FlagSet.Parsed() {
			if err := applyEnvFallbacks(sub.FlagSet, envFallbacks[sub.Name]); err != nil {
				return err
			}
		}
	}
	return root.Run(ctx)
}

// applyEnvFallbacks sets each flag of fallbacks (flag name → variable) that
// is still unset, neither on the command line nor through its CALLLEDGER_
// variable, from its variable when that is not empty.
func applyEnvFallbacks(fs *flag.FlagSet, fallbacks map[string]string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, env := range fallbacks {
		if set[name] {
			continue
		}
		if v := os.Getenv(env); v != "" {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("--%s from %s: %w", name, env, err)
			}
		}
	}
	return nil
}

// subcommands are every subcommand of callledger.
func subcommands(stdout, stderr io.Writer) []*ffcli.Command {
	return []*ffcli.Command{
		serveCommand(stdout, stderr),
		eventsCommand(stdout, stderr),
		simulateCommand(stdout, stderr),
		rebuildCommand(stdout, stderr),
		exportCommand(stdout, stderr),
		loadCommand(stdout, stderr),
		checkCommand(stdout, stderr),
		callsCommand(stdout, stderr),
		statsCommand(stdout, stderr),
		backupCommand(stdout, stderr),
		eraseCommand(stdout, stderr),
		sealCommand(stdout, stderr),
		copyCommand(stdout, stderr),
		rekeyCommand(stdout, stderr),
	}
}

// newFlagSet makes a subcommand's flag set that reports errors instead of
// exiting, so tests can run the CLI in-process.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// ffOptions are the parse options every subcommand shares.
func ffOptions() []ff.Option { return []ff.Option{ff.WithEnvVarPrefix(envPrefix)} }

// logFlags registers --log-format and --log-level on fs.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", l.level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", l.format)
	}
}

// parseInterspersed lets flags follow positional arguments
// ("events CA… --data-dir d"), which the standard flag package stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		if strings.HasPrefix(args[0], "-") {
			if err := fs.Parse(args); err != nil {
				return nil, err
			}
			args = fs.Args()
			continue
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	return positional, nil
}
