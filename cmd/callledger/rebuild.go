package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/schollz/progressbar/v3"

	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/projections/rebuild"
)

func rebuildCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("rebuild", stderr)
	var sf storeFlags
	sf.register(fs)
	var kek kekFlag
	kek.register(fs)
	batch := fs.Int("batch-size", 16384, "events per read of the log")
	var lf logFlags
	lf.register(fs)
	return &ffcli.Command{
		Name:       "rebuild",
		ShortUsage: "callledger rebuild [--data-dir DIR | --store esdb://...]",
		ShortHelp:  "rebuild the call-state projection from the whole ledger, offline",
		LongHelp: "Reads the whole ledger of a stopped server, folds it in memory and writes a\n" +
			"new read model beside the current one, which it replaces only once complete.\n" +
			"A running server rebuilds online instead (ProjectionService.RebuildProjection).\n" +
			"Shows a progress bar on a terminal, log lines otherwise. Runs with GOGC=400 and\n" +
			"a soft memory limit of 512 MiB (a quarter of RAM if less) unless GOGC or\n" +
			"GOMEMLIMIT is set: its memory does not grow with the ledger.",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("rebuild takes no arguments, got %q", args)
			}
			logger, err := lf.logger(stderr)
			if err != nil {
				return err
			}
			return rebuildOffline(ctx, sf, kek, *batch, stdout, stderr, logger)
		},
	}
}

func rebuildOffline(ctx context.Context, sf storeFlags, kek kekFlag, batch int, stdout, stderr io.Writer, logger *slog.Logger) error {
	warnWithoutCgo(logger)
	store, err := sf.openOffline(ctx, logger, ", or rebuild online with ProjectionService.RebuildProjection")
	if err != nil {
		return err
	}
	defer store.Close()
	opts := rebuild.Options{BatchSize: batch, Logger: logger}
	fctx, closeKeys, err := kek.openForFold(ctx, &opts, sf.dataDir, logger)
	if err != nil {
		return err
	}
	defer closeKeys()
	if _, err := server.ClaimReadModel(sf.dataDir, sf.store, logger); err != nil {
		return err
	}
	cat := callversions.Catalog{Root: server.ProjectionRoot(sf.dataDir)}
	if err := cat.RemoveTemporary(); err != nil {
		return err
	}
	progress := newProgress(stderr, logger)
	opts.Progress = progress.update
	name, st, err := cat.Build(fctx, store, callstore.Version, opts)
	progress.finish()
	if err != nil {
		return foldFailure(fctx, err)
	}
	if err := cat.RemoveOlder(name); err != nil {
		return err
	}
	total := st.Fold + st.Write
	fmt.Fprintf(stdout, "rebuilt %s: %d events, %d calls, checkpoint %d in %s (fold %s, write %s): %.0f events/s\n",
		name, st.Events, st.Calls, st.Checkpoint, total.Round(time.Millisecond), st.Fold.Round(time.Millisecond),
		st.Write.Round(time.Millisecond), float64(st.Events)/total.Seconds())
	return nil
}

// progress shows a rebuild's progress: a bar with events/s and ETA on a
// terminal, a log line every few seconds otherwise.
type progress struct {
	bar    *progressbar.ProgressBar
	w      io.Writer
	log    *slog.Logger
	phase  rebuild.Phase
	next   time.Time
	logged rebuild.Progress
}

func newProgress(w io.Writer, logger *slog.Logger) *progress {
	p := &progress{w: w, log: logger}
	if f, ok := w.(*os.File); !ok || !isatty.IsTerminal(f.Fd()) {
		p.w = nil
	}
	return p
}

func (p *progress) update(r rebuild.Progress) {
	if p.w != nil {
		p.updateBar(r)
		return
	}
	if r.Phase != p.phase || time.Now().After(p.next) {
		p.phase, p.next, p.logged = r.Phase, time.Now().Add(2*time.Second), r
		args := []any{"phase", r.Phase, "events", r.Events, "target", r.Target, "calls", r.Calls, "elapsed", r.Elapsed.Round(time.Millisecond)}
		if rate := r.Rate(); rate > 0 {
			args = append(args, "events_per_s", int64(rate))
		}
		if eta := r.ETA(); eta > 0 {
			args = append(args, "eta", eta.Round(time.Second))
		}
		p.log.Info("rebuild progress", args...)
	}
}

func (p *progress) updateBar(r rebuild.Progress) {
	if p.bar == nil || r.Phase != p.phase {
		if p.bar != nil {
			_ = p.bar.Finish()
			fmt.Fprintln(p.w)
		}
		p.phase = r.Phase
		if r.Phase == rebuild.PhaseDone {
			p.bar = nil
			return
		}
		p.bar = progressbar.NewOptions64(int64(r.Target),
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(string(r.Phase)),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
		)
	}
	_ = p.bar.Set64(int64(r.Position))
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
