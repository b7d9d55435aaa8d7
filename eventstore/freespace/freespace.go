// Package freespace keeps the embedded ledger from filling its disk: a
// [Guard] reads the free space of the data directory's filesystem every
// second, and [Guarded] refuses appends with an error wrapping
// [eventstore.ErrUnavailable] while it is below a watermark, before they
// reach the store. Refusing early keeps a full disk from ever failing a
// commit (which stops the store until it recovers from its WAL), leaves
// room for what must still be written (Pebble's flushes and compactions,
// the read model, the log), and turns "disk full" into answers Twilio
// retries (503) and a readiness probe that fails, until space is back.
// Queries go on: reads need no room.
//
// Pebble preallocates each new WAL file to about 1.1 times the memtable
// size (the log's and the read model's memtables are 32 MiB, so about
// 35 MiB each), flushes need room for a table of that size, and the index
// flushes 16 MiB memtables: a watermark below [Headroom] cannot keep a
// flush from failing.
package freespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/callledger/callledger/eventstore"
)

// Space is what the filesystem says of its room.
type Space struct {
	// Free is the bytes an unprivileged process may still write (statfs
	// f_bavail): what the ledger can use.
	Free uint64
	// Total is the filesystem's size.
	Total uint64
}

// StatFunc reads the space of the filesystem that holds dir. [Stat] is
// the operating system's; tests inject their own.
type StatFunc func(dir string) (Space, error)

// ErrUnsupported reports a platform whose free space this package cannot
// read.
var ErrUnsupported = errors.New("free space cannot be read on this platform")

// ErrLowSpace is what refused appends wrap (with
// eventstore.ErrUnavailable): the filesystem has less free space than the
// watermark.
var ErrLowSpace = errors.New("free space below the watermark")

// Defaults and bounds of the watermark.
const (
	// DefaultCap caps the default watermark (1 GiB).
	DefaultCap = 1 << 30
	// DefaultPercent is the default watermark's share of the filesystem.
	DefaultPercent = 5
	// Headroom is what Pebble may need at once (a WAL file of the log and
	// of the read model, preallocated, and a flush of each of the three
	// databases); the default watermark never goes below it.
	Headroom = 128 << 20
	// DefaultInterval is how often a Guard reads the free space.
	DefaultInterval = time.Second
)

// DefaultMin is the watermark of a filesystem of total bytes when none is
// configured: the smaller of DefaultCap and DefaultPercent of it, but at
// least Headroom.
func DefaultMin(total uint64) uint64 {
	return max(min(DefaultCap, total/(100/DefaultPercent)), Headroom)
}

// Options configure a Guard.
type Options struct {
	// Dir is a directory of the filesystem to watch; required.
	Dir string
	// Min is the watermark in bytes; zero means DefaultMin of the
	// filesystem.
	Min uint64
	// Interval is how often the free space is read (default
	// DefaultInterval).
	Interval time.Duration
	// Stat reads the free space (default Stat).
	Stat StatFunc
	// Logger is told when appends stop and resume; default discard.
	Logger *slog.Logger
}

// State is a Guard's last reading.
type State struct {
	Free, Total, Min uint64
	// Low is true while appends are refused.
	Low bool
}

// Guard watches the free space of one filesystem. It is safe for
// concurrent use.
type Guard struct {
	opts Options
	min  uint64
	// resume is the free space at which a Guard that is low lets appends
	// through again: a little above min, so that appends filling the disk
	// back up do not flip it at every reading.
	resume uint64
	low    atomic.Bool

	mu    sync.Mutex
	state State
	// statFailed is set while reading the free space fails, so that the
	// failure is logged once.
	statFailed bool
}

// New reads the free space once and returns the Guard; it fails when the
// free space cannot be read. Call Run to keep the reading current.
func New(opts Options) (*Guard, error) {
	if opts.Dir == "" {
		return nil, errors.New("freespace: Dir is required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Stat == nil {
		opts.Stat = Stat
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	sp, err := opts.Stat(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("read the free space of %s: %w", opts.Dir, err)
	}
	g := &Guard{opts: opts, min: opts.Min}
	if g.min == 0 {
		g.min = DefaultMin(sp.Total)
	}
	g.resume = g.min + g.min/20
	g.state = State{Min: g.min}
	g.update(sp)
	return g, nil
}

// Run reads the free space every interval until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	t := time.NewTicker(g.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			g.Check()
		case <-ctx.Done():
			return
		}
	}
}

// Check reads the free space now. A failed reading keeps the last state.
func (g *Guard) Check() {
	sp, err := g.opts.Stat(g.opts.Dir)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		if !g.statFailed {
			g.opts.Logger.Error("cannot read the free space of the data directory; keeping the last reading",
				"dir", g.opts.Dir, "err", err)
			g.statFailed = true
		}
		return
	}
	g.statFailed = false
	g.updateLocked(sp)
}

func (g *Guard) update(sp Space) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.updateLocked(sp)
}

func (g *Guard) updateLocked(sp Space) {
	wasLow := g.state.Low
	low := sp.Free < g.min || (wasLow && sp.Free < g.resume)
	g.state = State{Free: sp.Free, Total: sp.Total, Min: g.min, Low: low}
	g.low.Store(low)
	switch {
	case low && !wasLow:
		g.opts.Logger.Error("disk almost full: refusing appends (webhooks get 503) until space is freed",
			"dir", g.opts.Dir, "free", humanize.IBytes(sp.Free), "min_free_space", humanize.IBytes(g.min))
	case !low && wasLow:
		g.opts.Logger.Info("free space back above the watermark: taking appends again",
			"dir", g.opts.Dir, "free", humanize.IBytes(sp.Free), "min_free_space", humanize.IBytes(g.min))
	}
}

// State returns the last reading.
func (g *Guard) State() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

// Err returns nil while appends may go on, otherwise an error wrapping
// ErrLowSpace and eventstore.ErrUnavailable that says how much is free.
// It costs one atomic load when there is room.
func (g *Guard) Err() error {
	if !g.low.Load() {
		return nil
	}
	st := g.State()
	return fmt.Errorf("%w: %s free, watermark %s (--min-free-space): %w",
		ErrLowSpace, humanize.IBytes(st.Free), humanize.IBytes(st.Min), eventstore.ErrUnavailable)
}

// ParseSize reads a size as --min-free-space takes it: a number of bytes
// with an optional unit, decimal (kB, MB, GB, TB) or binary (KiB, MiB,
// GiB, TiB); "0" is zero.
func ParseSize(s string) (uint64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("size %q: want bytes with an optional unit such as 512MiB or 2GB", s)
	}
	return n, nil
}

// FormatSize renders a size in binary units, as log lines show it.
func FormatSize(n uint64) string { return humanize.IBytes(n) }
