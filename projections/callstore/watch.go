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

// ConferenceChange is a conference as it became at a position.
type ConferenceChange struct {
	Conference *callledgerv1.Conference
	Position   eventstore.Position
}

// watchBase is what a Watcher and a ConferenceWatcher share: the snapshot
// their initial state is read from, fenced from Close, and how they end.
type watchBase struct {
	s   *Store
	pos eventstore.Position

	mu   sync.Mutex
	snap *pebble.Snapshot // until read or ended
	// paging is set while a page of snap is read: end then leaves the
	// snapshot to the reader, which releases it once the page is read.
	paging bool
	err    error
	done   bool
}

// start takes the snapshot and its position; the caller holds applyMu and
// is inside the read fence.
func (w *watchBase) start(s *Store) error {
	w.s, w.snap = s, s.db.NewSnapshot()
	pos, err := readCheckpoint(w.snap)
	if err != nil {
		w.snap.Close()
		return err
	}
	w.pos = pos
	return nil
}

// Position is the position of the snapshot.
func (w *watchBase) Position() eventstore.Position { return w.pos }

// Err is why the watcher ended: ErrSlowConsumer, ErrClosed, or nil after
// Close.
func (w *watchBase) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// beginPage enters the read of one page of the snapshot, fenced from
// Close: the consumer's callback runs between pages, outside the fence, so
// a slow consumer never holds up a shutdown. The caller calls the returned
// func when the page is read.
func (w *watchBase) beginPage() (*pebble.Snapshot, func(), error) {
	done, err := w.s.reading()
	if err != nil {
		return nil, nil, err
	}
	w.mu.Lock()
	snap := w.snap
	w.paging = snap != nil
	w.mu.Unlock()
	if snap == nil {
		done()
		if err := w.Err(); err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("watcher snapshot already read or closed")
	}
	if w.s.opts.beforePage != nil {
		w.s.opts.beforePage()
	}
	return snap, func() { w.pageRead(); done() }, nil
}

// pageRead ends the read of a page; it releases the snapshot if the
// watcher ended meanwhile (the publisher, holding only applyMu, cannot
// close it under the reader). It runs inside the read fence, so never
// after the database is closed.
func (w *watchBase) pageRead() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paging = false
	if w.done && w.snap != nil {
		w.snap.Close()
		w.snap = nil
	}
}

func (w *watchBase) releaseSnapshot() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.snap != nil {
		w.snap.Close()
		w.snap = nil
	}
}

// finish releases the snapshot and, once, records err and runs closeCh
// (which closes the channel and unregisters the watcher); the caller holds
// applyMu (and, from Store.Close, the database is still open). A snapshot
// with a page being read is left to the reader (pageRead); Store.Close
// never finds one, since it waits for reads in flight.
func (w *watchBase) finish(err error, closeCh func()) {
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
	closeCh()
}

// Watcher follows the calls matching a filter: first a snapshot at
// Position, then every change after it — including the change that makes a
// call stop matching (a ringing call answered, under a ringing-only
// filter), so a client can drop it. Its buffer is bounded: a consumer that
// falls behind is ended with ErrSlowConsumer instead of growing memory
// without bound.
type Watcher struct {
	watchBase
	filter Filter
	ch     chan Change
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
	w := &Watcher{filter: f, ch: make(chan Change, s.opts.WatchBuffer)}
	if err := w.start(s); err != nil {
		return nil, err
	}
	s.watchers[w] = struct{}{}
	return w, nil
}

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

func (w *Watcher) readPage(ctx context.Context, after []byte) ([]*callledgerv1.Call, []byte, bool, error) {
	snap, done, err := w.beginPage()
	if err != nil {
		return nil, nil, false, err
	}
	defer done()
	if w.filter.ParentCallSid != "" {
		return listChildren(snap, w.filter, 1000, after)
	}
	return listIndex(ctx, snap, w.filter, 1000, after)
}

// Changes delivers the changes after Position. It is closed when the
// watcher ends; Err then says why.
func (w *Watcher) Changes() <-chan Change { return w.ch }

// Close stops the watcher.
func (w *Watcher) Close() {
	w.s.applyMu.Lock()
	defer w.s.applyMu.Unlock()
	w.end(nil)
}

func (w *Watcher) end(err error) {
	w.finish(err, func() {
		close(w.ch)
		delete(w.s.watchers, w)
	})
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

// ConferenceWatcher follows the conferences matching a filter as Watcher
// follows calls.
type ConferenceWatcher struct {
	watchBase
	filter ConferenceFilter
	ch     chan ConferenceChange
}

// WatchConferences starts following the conferences that match f.
func (s *Store) WatchConferences(ctx context.Context, f ConferenceFilter) (*ConferenceWatcher, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	done, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer done()
	w := &ConferenceWatcher{filter: f, ch: make(chan ConferenceChange, s.opts.WatchBuffer)}
	if err := w.start(s); err != nil {
		return nil, err
	}
	s.confWatchers[w] = struct{}{}
	return w, nil
}

// Snapshot calls fn with every matching conference as of Position, newest
// start first, then releases the snapshot. Call it once, before reading
// changes.
func (w *ConferenceWatcher) Snapshot(ctx context.Context, fn func(*callledgerv1.Conference) error) error {
	defer w.releaseSnapshot()
	var after []byte
	for {
		snap, done, err := w.beginPage()
		if err != nil {
			return err
		}
		page, last, more, err := listConferences(ctx, snap, w.filter, 1000, after)
		done()
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

// Changes delivers the changes after Position. It is closed when the
// watcher ends; Err then says why.
func (w *ConferenceWatcher) Changes() <-chan ConferenceChange { return w.ch }

// Close stops the watcher.
func (w *ConferenceWatcher) Close() {
	w.s.applyMu.Lock()
	defer w.s.applyMu.Unlock()
	w.end(nil)
}

func (w *ConferenceWatcher) end(err error) {
	w.finish(err, func() {
		close(w.ch)
		delete(w.s.confWatchers, w)
	})
}

// changedConference is a conference an Apply changed, and what it was
// before (nil for a new one).
type changedConference struct {
	conf *callledgerv1.Conference
	old  *callledgerv1.Conference
}

// publishConferences hands the conferences an Apply changed to every
// conference watcher they match; the caller holds applyMu.
func (s *Store) publishConferences(changed []changedConference, pos eventstore.Position) {
	for w := range s.confWatchers {
		for _, c := range changed {
			if !w.filter.Match(c.conf) && (c.old == nil || !w.filter.Match(c.old)) {
				continue
			}
			select {
			case w.ch <- ConferenceChange{Conference: c.conf, Position: pos}:
			default:
				w.end(ErrSlowConsumer)
			}
			if w.done {
				break
			}
		}
	}
}
