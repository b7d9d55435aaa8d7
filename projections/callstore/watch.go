package callstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
)

// Change is a call as it became at a position.
type Change struct {
	Call     *callledgerv1.Call
	Position eventstore.Position
}

// Watcher follows the calls matching a filter: first a snapshot at
// Position, then every change after it — including the change that makes a
// call stop matching (a ringing call answered, under a ringing-only
// filter), so a client can drop it. Its buffer is bounded: a consumer that
// falls behind is ended with ErrSlowConsumer instead of growing memory
// without bound.
type Watcher struct {
	s      *Store
	filter Filter
	pos    eventstore.Position
	ch     chan Change

	mu   sync.Mutex
	snap *pebble.Snapshot // until read or ended
	// paging is set while a page of snap is read: end then leaves the
	// snapshot to the reader, which releases it once the page is read.
	paging bool
	err    error
	done   bool
}

// Watch starts following the calls that match f.
func (s *Store) Watch(ctx context.Context, f Filter) (_ *Watcher, err error) {
	defer s.check(&err)
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	done, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer done()
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
func (w *Watcher) Snapshot(ctx context.Context, fn func(*callledgerv1.Call) error) (err error) {
	defer w.s.check(&err)
	defer w.releaseSnapshot()
	var after []byte
	for {
		page, last, more, err := w.readPage(ctx, after)
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

// readPage reads one page of the snapshot, fenced from Close: fn runs
// between pages, outside the fence, so a slow consumer never holds up a
// shutdown.
func (w *Watcher) readPage(ctx context.Context, after []byte) ([]*callledgerv1.Call, []byte, bool, error) {
	done, err := w.s.reading()
	if err != nil {
		return nil, nil, false, err
	}
	defer done()
	w.mu.Lock()
	snap := w.snap
	w.paging = snap != nil
	w.mu.Unlock()
	if snap == nil {
		if err := w.Err(); err != nil {
			return nil, nil, false, err
		}
		return nil, nil, false, fmt.Errorf("watcher snapshot already read or closed")
	}
	defer w.pageRead()
	if w.s.opts.beforePage != nil {
		w.s.opts.beforePage()
	}
	if w.filter.ParentCallSid != "" {
		return listChildren(snap, w.filter, 1000, after)
	}
	return listIndex(ctx, snap, w.filter, 1000, after)
}

// pageRead ends the read of a page; it releases the snapshot if the
// watcher ended meanwhile (the publisher, holding only applyMu, cannot
// close it under the reader). It runs inside the read fence, so never
// after the database is closed.
func (w *Watcher) pageRead() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paging = false
	if w.done && w.snap != nil {
		w.snap.Close()
		w.snap = nil
	}
}

func (w *Watcher) releaseSnapshot() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.snap != nil {
		w.snap.Close()
		w.snap = nil
	}
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
}

// end closes the channel and releases the snapshot, once; the caller holds
// applyMu (and, from Store.Close, the database is still open). A snapshot
// with a page being read is left to the reader (pageRead); Store.Close
// never finds one, since it waits for reads in flight.
func (w *Watcher) end(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.snap != nil && !w.paging {
		w.snap.Close()
		w.snap = nil
	}
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
			if !w.filter.Match(c.call) && (c.old == nil || !w.filter.Match(c.old)) {
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

// changedCall is a call an Apply changed, and what it was before (nil for
// a new call): a watcher hears of a call that matched before or matches
// now.
type changedCall struct {
	call *callledgerv1.Call
	old  *callledgerv1.Call
}
