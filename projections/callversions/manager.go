package callversions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/privatefs"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/rebuild"
)

// Log is the part of the event store the read models are built from:
// rebuilds read it in bulk, runners follow it.
type Log interface {
	rebuild.Log
	projections.Source
}

// Config configures a Manager.
type Config struct {
	// Root is the directory of every version (data-dir/projections/callstate).
	Root string
	Log  Log
	// Version is the projection version the code builds (default
	// callstore.Version). Tests inject a bump here.
	Version uint64
	Logger  *slog.Logger
	// Rebuild tunes the rebuilds the Manager runs.
	Rebuild rebuild.Options
	// Store tunes every read model the Manager opens (block cache, event
	// observer); its Logger and Version are the Manager's.
	Store callstore.Options
	// BeforeSwitch, when set, is called once a new read model has caught
	// up and just before it takes over; tests query across the switch
	// with it. It must not block forever.
	BeforeSwitch func()
}

// served is one open read model and the runner that feeds it.
type served struct {
	name    string
	store   *callstore.Store
	runner  *projections.Runner
	stop    context.CancelFunc
	stopped chan struct{}
}

func (s *served) close() error {
	s.stop()
	<-s.stopped
	return s.store.Close()
}

// Manager serves queries from the current read model and replaces it,
// without downtime, by a newer version or a rebuild.
type Manager struct {
	cfg      Config
	cat      Catalog
	log      *slog.Logger
	cur      atomic.Pointer[served]
	building sync.Mutex // one build at a time
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgStop   context.CancelFunc
	closed   atomic.Bool
	rebuilds atomic.Bool
	// upgraded is closed when the read model is at cfg.Version.
	upgraded chan struct{}
	upgrade  sync.Once
	// damaged is signalled when a read model is found corrupt (see heal);
	// corruptions counts those findings.
	damaged     chan struct{}
	corruptions atomic.Uint64
	// healRetry is the first wait before another rebuild after one
	// failed (default 1 s, doubling to a minute).
	healRetry time.Duration
}

// Phases a Manager's rebuild reports after rebuild.PhaseDone.
const (
	// PhaseCatchUp: the new read model is written and follows the log
	// until it is as current as the serving one.
	PhaseCatchUp rebuild.Phase = "catch-up"
	// PhaseSwitched: the new read model answers queries.
	PhaseSwitched rebuild.Phase = "switched"
)

// ErrBusy reports a rebuild requested while another one runs.
var ErrBusy = errors.New("a rebuild is already running")

// Open opens the current read model and starts following the log. When
// the current one is of an older version, it keeps serving from it and
// builds the new version beside it in the background (see Upgraded).
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Version == 0 {
		cfg.Version = callstore.Version
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rebuild.Logger == nil {
		cfg.Rebuild.Logger = cfg.Logger
	}
	m := &Manager{
		cfg: cfg, cat: Catalog{Root: cfg.Root}, log: cfg.Logger.With("projection", "callstate"),
		upgraded: make(chan struct{}), damaged: make(chan struct{}, 1), healRetry: time.Second,
	}
	m.bgCtx, m.bgStop = context.WithCancel(context.WithoutCancel(ctx))
	if err := privatefs.MkdirAll(cfg.Root); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.Root, err)
	}
	if err := m.cat.RemoveTemporary(); err != nil {
		return nil, err
	}
	cur, found, err := m.cat.current(cfg.Version)
	if err != nil {
		return nil, err
	}
	if !found {
		cur = entry{name: fmt.Sprintf("v%d", cfg.Version), version: cfg.Version}
	}
	s, err := m.serve(cur.name, cur.version)
	if err != nil && !errors.Is(err, callstore.ErrVersion) {
		// Unreadable (corrupt tables, a damaged manifest): the read model
		// is disposable. Serve an empty one that answers UNAVAILABLE and
		// rebuild from the ledger, rather than keep the server (and its
		// webhooks) from starting.
		m.log.Error("cannot open the read model; removing it and rebuilding it from the ledger", "read_model", cur.name, "err", err)
		if rerr := os.RemoveAll(m.cat.Path(cur.name)); rerr != nil {
			return nil, fmt.Errorf("%w; removing it: %w", err, rerr)
		}
		lost := cur.name
		cur = entry{name: fmt.Sprintf("v%d", cfg.Version), version: cfg.Version}
		if s, err = m.serve(cur.name, cur.version); err == nil {
			s.store.MarkCorrupt(fmt.Errorf("an empty read model in place of %s, which could not be opened", lost))
		}
	}
	if err != nil {
		return nil, err
	}
	m.cur.Store(s)
	m.bg.Go(m.heal)
	if cur.version == cfg.Version {
		m.markUpgraded()
		if err := m.cat.RemoveOlder(cur.name); err != nil {
			m.log.Warn("could not remove older read models", "err", err)
		}
		return m, nil
	}
	m.log.Info("projection version changed: serving the old version while the new one builds beside it",
		"serving", cur.name, "building_version", cfg.Version)
	m.bg.Go(func() {
		if err := m.Rebuild(m.bgCtx, nil); err != nil && m.bgCtx.Err() == nil {
			m.log.Error("building the new projection version failed; still serving the old one", "err", err)
		}
	})
	return m, nil
}

func (m *Manager) markUpgraded() { m.upgrade.Do(func() { close(m.upgraded) }) }

// Upgraded is closed once the read model answering queries is of the
// code's version and older ones are removed.
func (m *Manager) Upgraded() <-chan struct{} { return m.upgraded }

// serve opens the read model name and starts its runner.
func (m *Manager) serve(name string, version uint64) (*served, error) {
	opts := m.cfg.Store
	opts.Logger, opts.Version = m.log, version
	opts.OnCorrupt = m.corrupted
	st, err := callstore.Open(m.cat.Path(name), opts)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(m.bgCtx)
	s := &served{
		name:    name,
		store:   st,
		runner:  projections.NewRunner(m.cfg.Log, st, eventstore.Filter{StreamPrefixes: eventcodec.ProjectedStreamPrefixes()}, m.log.With("read_model", name)),
		stop:    stop,
		stopped: make(chan struct{}),
	}
	go func() {
		defer close(s.stopped)
		_ = s.runner.Run(ctx)
	}()
	return s, nil
}

// Rebuild builds the code's version of the read model from the whole log
// beside the current one, lets it catch up with the log, switches queries
// over to it, and removes the old one. progress, when set, receives the
// rebuild's progress. Queries are answered from the old read model until
// the switch.
func (m *Manager) Rebuild(ctx context.Context, progress func(rebuild.Progress)) error {
	if !m.building.TryLock() {
		return ErrBusy
	}
	defer m.building.Unlock()
	if m.closed.Load() {
		return callstore.ErrClosed
	}
	m.rebuilds.Store(true)
	defer m.rebuilds.Store(false)
	if progress == nil {
		progress = func(rebuild.Progress) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.bgCtx, cancel)()
	opts := m.cfg.Rebuild
	var last rebuild.Progress
	opts.Progress = func(p rebuild.Progress) { last = p; progress(p) }
	name, st, err := m.cat.Build(ctx, m.cfg.Log, m.cfg.Version, opts)
	if err != nil {
		return err
	}
	m.log.Info("projection rebuilt; catching up with the log", "read_model", name, "events", st.Events, "calls", st.Calls,
		"checkpoint", st.Checkpoint, "fold", st.Fold, "write", st.Write)
	last.Phase = PhaseCatchUp
	progress(last)
	next, err := m.serve(name, m.cfg.Version)
	if err != nil {
		return err
	}
	if err := m.catchUp(ctx, next); err != nil {
		_ = next.close()
		_ = os.RemoveAll(m.cat.Path(name))
		return err
	}
	if m.cfg.BeforeSwitch != nil {
		m.cfg.BeforeSwitch()
	}
	old := m.cur.Swap(next)
	defer m.markUpgraded()
	m.log.Info("projection switched", "from", old.name, "to", name)
	if err := old.close(); err != nil {
		m.log.Warn("closing the old read model", "read_model", old.name, "err", err)
	}
	if err := m.cat.RemoveOlder(name); err != nil {
		m.log.Warn("removing the old read model", "err", err)
	}
	last.Phase = PhaseSwitched
	progress(last)
	return nil
}

// Rebuilding reports whether a rebuild runs.
func (m *Manager) Rebuilding() bool { return m.rebuilds.Load() }

// CodeVersion is the version the Manager builds.
func (m *Manager) CodeVersion() uint64 { return m.cfg.Version }

// catchUp waits until next is at least as current as the read model it
// replaces, so that the switch never moves a reader back in time.
func (m *Manager) catchUp(ctx context.Context, next *served) error {
	for {
		old := m.cur.Load()
		target, err := old.store.Checkpoint(ctx)
		if err != nil {
			return err
		}
		if err := next.store.WaitFor(ctx, target); err != nil {
			return fmt.Errorf("catch up with %d: %w", target, err)
		}
		again, err := old.store.Checkpoint(ctx)
		if err != nil {
			return err
		}
		if now, _ := next.store.Checkpoint(ctx); now >= again {
			return nil
		}
	}
}

// Current returns the read model answering queries now. It may be closed
// by a switch at any moment: callers that keep it retry on ErrClosed.
func (m *Manager) Current() *callstore.Store { return m.cur.Load().store }

// CurrentName returns the directory name of the read model answering
// queries (v<version>[-<generation>]).
func (m *Manager) CurrentName() string { return m.cur.Load().name }

// CaughtUp reports whether the read model answering queries has reached
// the head of the log since it started and is sound (a corrupt one answers
// nothing until its replacement, rebuilt from the ledger, takes over).
func (m *Manager) CaughtUp() bool {
	cur := m.cur.Load()
	return cur.runner.CaughtUp() && cur.store.Corrupt() == nil
}

// Version is the version of the read model answering queries.
func (m *Manager) Version() uint64 { return m.cur.Load().store.Version() }

// Close stops building and following the log and closes the read model.
func (m *Manager) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.bgStop()
	m.bg.Wait()
	m.building.Lock() // a Rebuild from a caller ends with bgCtx too
	defer m.building.Unlock()
	return m.cur.Load().close()
}

// retry runs fn against the current read model, again on the new one when
// a switch closed the old one under it.
func retry[T any](m *Manager, fn func(*callstore.Store) (T, error)) (T, error) {
	for {
		s := m.cur.Load()
		v, err := fn(s.store)
		if errors.Is(err, callstore.ErrClosed) && m.cur.Load() != s {
			continue
		}
		return v, err
	}
}
