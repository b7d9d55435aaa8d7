package callstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
)

// Change is a call as it became at a position.
type Change struct {
	Call     *callledgerv1.Call
	Position eventstore.Position
}

// Watcher follows the calls matching a filter: first a snapshot at
// Position, then every change after it. Its buffer is bounded: a consumer
// that falls behind is ended with ErrSlowConsumer instead of growing
// memory without bound.
type Watcher struct {
	s      *Store
	filter Filter
	pos    eventstore.Position
	snap   *pebble.Snapshot
	ch     chan Change

	mu   sync.Mutex
	err  error
	done bool
}

// Watch starts following the calls that match f.
func (s *Store) Watch(ctx context.Context, f Filter) (*Watcher, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	w := &Watcher{s: s, filter: f, ch: make(chan Change, s.opts.WatchBuffer), snap: s.db.NewSnapshot()}
	pos, err := readCheckpoint(w.snap)
	if err != nil {
		w.snap.Close()
		return nil, err
	}
	w.pos = pos
	s.watchers[w] = struct{}{}
	return w, nil
}

// Position is the position of the snapshot.
func (w *Watcher) Position() eventstore.Position { return w.pos }

// Snapshot calls fn with every matching call as of Position, newest start
// first, then releases the snapshot. Call it once, before reading changes.
func (w *Watcher) Snapshot(ctx context.Context, fn func(*callledgerv1.Call) error) error {
	snap := w.snap
	if snap == nil {
		return fmt.Errorf("snapshot already read")
	}
	w.snap = nil
	defer snap.Close()
	var after []byte
	for {
		page, last, more, err := w.page(ctx, snap, after)
		if err != nil {
			return err
		}
		for _, c := range page {
			if err := fn(c); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		after = last
	}
}

func (w *Watcher) page(ctx context.Context, snap *pebble.Snapshot, after []byte) ([]*callledgerv1.Call, []byte, bool, error) {
	if w.filter.ParentCallSid != "" {
		return listChildren(snap, w.filter, 1000, after)
	}
	return listIndex(ctx, snap, w.filter, 1000, after)
}

// Changes delivers the changes after Position. It is closed when the
// watcher ends; Err then says why.
func (w *Watcher) Changes() <-chan Change { return w.ch }

// Err is why the watcher ended: ErrSlowConsumer, ErrClosed, or nil after
// Close.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watcher.
func (w *Watcher) Close() {
	w.s.applyMu.Lock()
	defer w.s.applyMu.Unlock()
	w.end(nil)
	if w.snap != nil {
		w.snap.Close()
		w.snap = nil
	}
}

// end closes the channel once; the caller holds applyMu.
func (w *Watcher) end(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.done, w.err = true, err
	close(w.ch)
	delete(w.s.watchers, w)
}

// publish hands the calls an Apply changed to every watcher they match;
// the caller holds applyMu.
func (s *Store) publish(changed []changedCall, pos eventstore.Position) {
	for w := range s.watchers {
		for _, c := range changed {
			if !w.filter.Match(c.call) && !w.endedActive(c) {
				continue
			}
			select {
			case w.ch <- Change{Call: c.call, Position: pos}:
			default:
				w.end(ErrSlowConsumer)
			}
			if w.done {
				break
			}
		}
	}
}

// changedCall is a call an Apply changed, and whether it was active
// before.
type changedCall struct {
	call      *callledgerv1.Call
	wasActive bool
}

// endedActive: a call that just stopped being active no longer matches an
// active-only filter, but its watchers must still hear that it ended.
func (w *Watcher) endedActive(c changedCall) bool {
	if !w.filter.ActiveOnly || !c.wasActive || callstate.Active(c.call) {
		return false
	}
	f := w.filter
	f.ActiveOnly = false
	return f.Match(c.call)
}
