// Package rebuild rebuilds the call-state projection from the whole log,
// fast: it streams the log in large batches, decodes events on every CPU
// (without their verbatim requests), folds them in memory, and writes the
// read model in bulk into a directory of its own. The fold is
// order-insensitive, so batches are folded in whatever order the decoders
// finish them, and the result equals what the live projection builds
// event by event.
package rebuild

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
)

// Log is the part of the event store a rebuild reads.
type Log interface {
	ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error)
	Head(ctx context.Context) (eventstore.Position, error)
}

// visitor is a Log that can lend its events instead of copying them out
// (pebblestore): a rebuild decodes each event once and keeps only the
// facts, so the copy of every verbatim request that ReadAll makes is
// wasted. The event is valid only during fn.
type visitor interface {
	VisitAll(ctx context.Context, from, to eventstore.Position, fn func(*eventstore.RecordedEvent) error) error
}

// Phase names a step of a rebuild, for progress reports.
type Phase string

// The phases of a rebuild, in order.
const (
	PhaseFold  Phase = "fold"  // reading, decoding and folding the log
	PhaseWrite Phase = "write" // writing the read model
	PhaseDone  Phase = "done"
)

// Progress is a snapshot of a running rebuild.
type Progress struct {
	Phase Phase
	// Events is how many events have been read; Position is the last one.
	Events   uint64
	Position eventstore.Position
	// Target is the head of the log when the rebuild started: it ends there.
	Target  eventstore.Position
	Calls   int
	Elapsed time.Duration
}

// Rate is the events read per second so far.
func (p Progress) Rate() float64 {
	if s := p.Elapsed.Seconds(); s > 0 {
		return float64(p.Events) / s
	}
	return 0
}

// ETA is how long the fold still needs at its pace so far, 0 when unknown
// or outside the fold. It counts in positions, not events: positions need
// not be contiguous (KurrentDB's are not), and the rebuild runs from
// position 0 to Target.
func (p Progress) ETA() time.Duration {
	if p.Phase != PhaseFold || p.Position == 0 || p.Target <= p.Position {
		return 0
	}
	return time.Duration(float64(p.Elapsed) * float64(p.Target-p.Position) / float64(p.Position))
}

// Options tune a rebuild; the zero value is fine.
type Options struct {
	// BatchSize is the number of events per read (default 16384).
	BatchSize int
	// Decoders is the number of goroutines that read and decode the log
	// (default GOMAXPROCS).
	Decoders int
	// EpochEvents is how many events the fold takes between freezes of
	// the records it has not touched since the previous freeze (default
	// 65536; see memory).
	EpochEvents uint64
	// Progress, when set, is called about every ProgressEvery and at the
	// end of each phase, from one goroutine.
	Progress      func(Progress)
	ProgressEvery time.Duration
	Logger        *slog.Logger
	// Version is the projection version written (default callstore.Version).
	Version uint64
	// Personal opens the sealed personal fields of the events folded, as
	// the live projection does (callstore.Options.Personal).
	Personal callstore.Opener
}

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = 16384
	}
	if o.Decoders <= 0 {
		o.Decoders = runtime.GOMAXPROCS(0)
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 250 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.EpochEvents == 0 {
		o.EpochEvents = 1 << 16
	}
	if o.Progress == nil {
		o.Progress = func(Progress) {}
	}
	return o
}

// Result is a projection folded in memory.
type Result struct {
	// Records holds one encoded record per call, in no particular order.
	Records []callstore.Encoded
	// Conferences holds one encoded record per conference.
	Conferences []callstore.EncodedConference
	// Checkpoint is the position the records are current at.
	Checkpoint eventstore.Position
	// Events is the number of events read (of every stream).
	Events  uint64
	Elapsed time.Duration
}

// Calls calls fn with every record, decoded, in CallSid order.
func (r *Result) Calls(fn func(*statev1.CallRecord) error) error {
	order := make([]int, len(r.Records))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return r.Records[order[a]].CallSid() < r.Records[order[b]].CallSid() })
	for _, i := range order {
		rec, err := r.Records[i].Decode()
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// Stats describe a finished Build.
type Stats struct {
	Events     uint64
	Calls      int
	Checkpoint eventstore.Position
	Fold       time.Duration
	Write      time.Duration
}

// Build rebuilds the projection into dir, which must be empty or absent,
// from the start of the log up to its head when Build starts. The caller
// then opens dir with callstore.Open and lets a runner follow the log from
// the checkpoint. Records the fold is done with are written into dir as
// it goes and dropped from memory, so that a rebuild's memory does not
// grow with the ledger.
func Build(ctx context.Context, log Log, dir string, opts Options) (Stats, error) {
	opts = opts.withDefaults()
	b, err := callstore.NewBuilder(dir, callstore.Options{Logger: opts.Logger, Version: opts.Version})
	if err != nil {
		return Stats{}, fmt.Errorf("rebuild: %w", err)
	}
	mem := newMemory(spilled{b})
	f, err := foldLog(ctx, log, opts, mem)
	if err != nil {
		b.Abort()
		return Stats{}, err
	}
	start := time.Now()
	last := Progress{Phase: PhaseWrite, Events: f.Events, Position: f.Target, Target: f.Target, Calls: mem.len(), Elapsed: f.Elapsed}
	opts.Progress(last)
	confs, err := mem.finish(ctx)
	if err != nil {
		b.Abort()
		return Stats{}, fmt.Errorf("rebuild: %w", err)
	}
	if err := b.Finish(f.Target, confs); err != nil {
		return Stats{}, fmt.Errorf("rebuild: %w", err)
	}
	st := Stats{Events: f.Events, Calls: b.Calls(), Checkpoint: f.Target, Fold: f.Elapsed, Write: time.Since(start)}
	last.Phase, last.Elapsed, last.Calls = PhaseDone, st.Fold+st.Write, st.Calls
	opts.Progress(last)
	opts.Logger.Info("projection rebuilt", "events", st.Events, "calls", st.Calls, "checkpoint", st.Checkpoint, "fold", st.Fold, "write", st.Write, "records_read_back", b.Reads())
	return st, nil
}

// decoded is one batch of call events ready to fold.
type decoded struct {
	events []*callledgerv1.Event
	pos    []uint64
	last   eventstore.Position
	n      int // events read, call events or not
}

// Fold reads the log from the start up to its head when Fold starts and
// folds it in memory, keeping every record (as its encoding).
func Fold(ctx context.Context, log Log, opts Options) (*Result, error) {
	opts = opts.withDefaults()
	cold := inMemory{}
	mem := newMemory(cold)
	f, err := foldLog(ctx, log, opts, mem)
	if err != nil {
		return nil, err
	}
	confs, err := mem.finish(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	res := &Result{Records: cold.records(), Conferences: confs, Checkpoint: f.Target, Events: f.Events, Elapsed: time.Since(f.start)}
	opts.Logger.Info("projection folded", "events", res.Events, "calls", len(res.Records), "checkpoint", res.Checkpoint, "elapsed", res.Elapsed)
	return res, nil
}

// folded is where foldLog got.
type folded struct {
	Progress
	start time.Time
}

// foldLog reads the log from the start up to its head when it starts and
// folds it into mem, whose hot records it leaves for the caller to finish.
func foldLog(ctx context.Context, log Log, opts Options, mem *memory) (folded, error) {
	start := time.Now()
	// Every call leg's key is met once, in no order of the key store's:
	// read them all in one scan rather than a point read each.
	if p, ok := opts.Personal.(interface {
		Preload(ctx context.Context) (func(), error)
	}); ok {
		release, err := p.Preload(ctx)
		if err != nil {
			return folded{}, fmt.Errorf("rebuild: preload keys: %w", err)
		}
		defer release()
	}
	target, err := log.Head(ctx)
	if err != nil {
		return folded{}, fmt.Errorf("rebuild: read head: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// Workers read and decode chunks of the log in parallel: chunk c is
	// the positions (c·span, (c+1)·span], where span is how far the first
	// BatchSize events reach (BatchSize itself when positions are
	// contiguous). The fold does not care in which order batches arrive.
	vis, lends := log.(visitor)
	span := eventstore.Position(opts.BatchSize)
	if !lends {
		if span, err = probeSpan(ctx, log, opts.BatchSize); err != nil {
			return folded{}, err
		}
	}
	out := make(chan decoded, opts.Decoders)
	var (
		chunk atomic.Uint64
		wg    sync.WaitGroup
		size  = uint64(span)
		count = (uint64(target) + size - 1) / size
	)
	for range opts.Decoders {
		wg.Go(func() {
			for c := chunk.Add(1) - 1; c < count; c = chunk.Add(1) - 1 {
				lo := eventstore.Position(c * size)
				hi := min(lo+eventstore.Position(size), target)
				dec := callstore.Decoder{Log: opts.Logger, Personal: opts.Personal}
				read := func() error { return readChunk(ctx, log, lo, hi, opts.BatchSize, dec, out) }
				if lends {
					read = func() error { return visitChunk(ctx, vis, lo, hi, dec, out) }
				}
				if err := read(); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(out) }()

	var (
		p         = Progress{Phase: PhaseFold, Target: target}
		next      = time.Now().Add(opts.ProgressEvery)
		nextEpoch = opts.EpochEvents
		draining  bool
	)
	// fail stops the workers with err as the context's cause, which Fold
	// returns below, and drains what they already sent.
	fail := func(err error) {
		cancel(err)
		draining = true
	}
	for d := range out {
		if draining {
			continue
		}
		for i, ev := range d.events {
			if err := callstate.Apply(mem, ev, d.pos[i]); err != nil {
				fail(fmt.Errorf("rebuild: fold %s event %s at %d: %w", ev.GetCallSid(), ev.GetEventId(), d.pos[i], err))
				break
			}
		}
		p.Events += uint64(d.n)
		p.Position = max(p.Position, d.last)
		if p.Events >= nextEpoch && !draining {
			nextEpoch = p.Events + opts.EpochEvents
			if err := mem.advance(ctx); err != nil {
				fail(fmt.Errorf("rebuild: %w", err))
			}
		}
		if now := time.Now(); now.After(next) {
			p.Calls, p.Elapsed = mem.len(), time.Since(start)
			opts.Progress(p)
			next = now.Add(opts.ProgressEvery)
		}
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return folded{}, err
	}
	if err := ctx.Err(); err != nil {
		return folded{}, fmt.Errorf("rebuild: %w", err)
	}
	p.Position, p.Calls, p.Elapsed = target, mem.len(), time.Since(start)
	opts.Progress(p)
	return folded{Progress: p, start: start}, nil
}

// probeSpan returns the positions that BatchSize events cover at the start
// of the log.
func probeSpan(ctx context.Context, log Log, size int) (eventstore.Position, error) {
	evs, err := log.ReadAll(ctx, eventstore.Start, size)
	if err != nil {
		return 0, fmt.Errorf("rebuild: read the start of the log: %w", err)
	}
	if len(evs) < size {
		return eventstore.Position(size), nil
	}
	return max(evs[len(evs)-1].Position, eventstore.Position(size)), nil
}

// readChunk decodes the events in (lo, hi] and sends them. Positions
// need not be contiguous (KurrentDB's are not): a read may return events
// past hi, which belong to the next chunk, or fewer than the chunk holds.
func readChunk(ctx context.Context, log Log, lo, hi eventstore.Position, size int, dec callstore.Decoder, out chan<- decoded) error {
	for from := lo; from < hi; {
		evs, err := log.ReadAll(ctx, from, size)
		if err != nil {
			return fmt.Errorf("rebuild: read after %d: %w", from, err)
		}
		if len(evs) == 0 {
			return fmt.Errorf("rebuild: log ends at %d before its head %d", from, hi)
		}
		full := len(evs) == size
		end := sort.Search(len(evs), func(i int) bool { return evs[i].Position > hi })
		if end > 0 {
			d, err := decode(ctx, evs[:end], dec)
			if err != nil {
				return fmt.Errorf("rebuild: %w", err)
			}
			select {
			case out <- d:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if end < len(evs) || !full {
			return nil
		}
		from = evs[end-1].Position
	}
	return nil
}

// visitChunk decodes the events in (lo, hi] as the store lends them, and
// sends them as one batch.
func visitChunk(ctx context.Context, vis visitor, lo, hi eventstore.Position, dec callstore.Decoder, out chan<- decoded) error {
	n := int(hi - lo)
	d := decoded{events: make([]*callledgerv1.Event, 0, n), pos: make([]uint64, 0, n), last: hi}
	err := vis.VisitAll(ctx, lo, hi, func(rec *eventstore.RecordedEvent) error {
		d.n++
		return d.add(rec, dec)
	})
	if err != nil {
		return fmt.Errorf("rebuild: read after %d: %w", lo, err)
	}
	if d.n == 0 {
		return nil
	}
	select {
	case out <- d:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// decode decodes the call events of batch, skipping (and logging) what
// the fold cannot read, as the live projection does, and opens their
// sealed facts with one prefetch of their keys (callstore.Decoder.FoldBatch).
func decode(ctx context.Context, batch []eventstore.RecordedEvent, dec callstore.Decoder) (decoded, error) {
	folded, err := dec.FoldBatch(ctx, batch, 0, make([]callstore.Folded, 0, len(batch)))
	if err != nil {
		return decoded{}, err
	}
	d := decoded{
		events: make([]*callledgerv1.Event, 0, len(folded)),
		pos:    make([]uint64, 0, len(folded)),
		last:   batch[len(batch)-1].Position,
		n:      len(batch),
	}
	for _, f := range folded {
		d.events = append(d.events, f.Event)
		d.pos = append(d.pos, f.Position)
	}
	return d, nil
}

// add decodes rec if it is a call event, skipping (and logging) what the
// fold cannot read, as the live projection does; a key store that cannot
// answer now fails the rebuild (callstore.Decoder.Fold). It keeps nothing
// of rec.
func (d *decoded) add(rec *eventstore.RecordedEvent, dec callstore.Decoder) error {
	ev, ok, err := dec.Fold(rec)
	if err != nil || !ok {
		return err
	}
	d.events = append(d.events, ev)
	d.pos = append(d.pos, uint64(rec.Position))
	return nil
}
