package pebblestore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/pebblelog"
	"github.com/callledger/callledger/internal/pebblescrub"
	"github.com/callledger/callledger/internal/privatefs"
)

// RewriteFunc returns the new data of ev, or nil to leave ev as it is.
// The new data must mean what the old did (the ledger is forever): sealing
// the personal fields that opening gives back, for instance. It may keep
// nothing of ev past its return.
type RewriteFunc func(ev *eventstore.RecordedEvent) ([]byte, error)

// RewriteOptions tunes Rewrite; the zero value is ready to use.
type RewriteOptions struct {
	// FS is the filesystem of the store. Default: the operating system's,
	// with the files it creates readable by their owner only, as the
	// store's own (Options.FS).
	FS vfs.FS
	// Logger receives Pebble's messages. Default: discarded.
	Logger *slog.Logger
	// BeforeCommit runs before each batch of rewritten events is
	// committed: what their new data depends on (the keys that seal it)
	// must be durable before they are. An error stops the rewrite with
	// the batch unwritten.
	BeforeCommit func() error
	// Progress, when set, is told what has been done after each batch.
	Progress func(RewriteReport)
	// BatchEvents bounds the events rewritten per committed batch
	// (default 4,096).
	BatchEvents int
}

// RewriteReport says what Rewrite did.
type RewriteReport struct {
	// Read is the number of events read, Rewritten of those whose data
	// was replaced.
	Read, Rewritten uint64
	// Scrubbed: the log's files no longer hold the replaced records.
	Scrubbed bool
}

// rewriteScan bounds the events one iterator reads before it is closed
// and the next opened past them: a long-lived iterator would pin every
// table and memtable the rewrite makes obsolete.
const rewriteScan = 64 << 10

// Rewrite replaces, offline, the data of the events of the log in dir for
// which fn returns new data; everything else of an event (position,
// stream, revision, ID, type, metadata, creation time) stays, so the index
// is untouched. The store must be closed: a store another process holds
// is ErrLocked. Each batch is committed with a sync, so an interrupted
// Rewrite leaves every event either as it was or rewritten, and running
// it again (with an fn that leaves rewritten events alone) finishes the
// job. When every event has been read, the log is scrubbed
// (internal/pebblescrub): the replaced records are in none of its files,
// tables or WAL, any more.
func Rewrite(ctx context.Context, dir string, opts RewriteOptions, fn RewriteFunc) (rep RewriteReport, err error) {
	if opts.FS == nil {
		opts.FS = privatefs.Pebble(vfs.Default)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BatchEvents <= 0 {
		opts.BatchEvents = 4096
	}
	desc, err := pebble.Peek(dir, opts.FS)
	if err != nil {
		return rep, fmt.Errorf("rewrite %s: %w", dir, err)
	}
	if !desc.Exists {
		return rep, fmt.Errorf("rewrite %s: no event store there", dir)
	}
	lock, err := lockDir(opts.FS, dir)
	if err != nil {
		return rep, fmt.Errorf("rewrite %s: %w", dir, err)
	}
	defer lock.Close()
	po := baseLogOptions()
	po.FS, po.Lock = opts.FS, lock
	po.Logger = pebblelog.New(opts.Logger.With("component", "pebble", "db", "log"), 0)
	scrub := pebblescrub.New(dir, po)
	var db *pebble.DB
	if err := pebblelog.Catch(func() (err error) { db, err = pebble.Open(dir, po); return err }); err != nil {
		return rep, fmt.Errorf("rewrite %s: %w", dir, err)
	}
	defer func() {
		if cerr := pebblelog.Catch(db.Close); cerr != nil && err == nil {
			err = fmt.Errorf("rewrite %s: close: %w", dir, cerr)
		}
	}()
	if _, err := prepare(db); err != nil {
		return rep, fmt.Errorf("rewrite %s: %w", dir, err)
	}
	w := rewriter{db: db, opts: opts, fn: fn, rep: &rep}
	next := uint64(1)
	for {
		var done bool
		if next, done, err = w.scan(ctx, next); err != nil {
			return rep, fmt.Errorf("rewrite %s: %w", dir, err)
		}
		if done {
			break
		}
	}
	if err := w.commit(); err != nil {
		return rep, fmt.Errorf("rewrite %s: %w", dir, err)
	}
	if err := scrub.Scrub(ctx, db, []pebble.KeyRange{{Start: []byte{prefixEvent}, End: []byte{prefixEvent + 1}}}); err != nil {
		return rep, fmt.Errorf("rewrite %s: %w", dir, err)
	}
	rep.Scrubbed = true
	return rep, nil
}

type rewriter struct {
	db    *pebble.DB
	opts  RewriteOptions
	fn    RewriteFunc
	rep   *RewriteReport
	batch *pebble.Batch
	dec   decodeState
}

// scan reads up to rewriteScan events from position from on, rewriting
// what fn changes, and returns where the next scan starts; done once it
// has read the last event.
func (w *rewriter) scan(ctx context.Context, from uint64) (next uint64, done bool, err error) {
	it, err := w.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: eventKey(nil, from),
		UpperBound: []byte{prefixEvent + 1},
	})
	if err != nil {
		return from, false, err
	}
	defer closeIter(it, &err)
	next, read := from, 0
	for valid := it.First(); valid; valid = it.Next() {
		if read == rewriteScan {
			return next, false, nil
		}
		pos, err := eventKeyPos(it.Key())
		if err != nil {
			return next, false, err
		}
		if pos != next {
			return next, false, fmt.Errorf("event at position %d missing (next is %d): %w", next, pos, ErrCorrupt)
		}
		if pos&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return next, false, err
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return next, false, err
		}
		var r record
		if err := decodeRecord(v, &r); err != nil {
			return next, false, fmt.Errorf("event at position %d: %w", pos, err)
		}
		ev := w.dec.aliased(&r, pos)
		data, err := w.fn(&ev)
		if err != nil {
			return next, false, fmt.Errorf("event at position %d: %w", pos, err)
		}
		next, read = pos+1, read+1
		w.rep.Read++
		if data == nil {
			continue
		}
		if w.batch == nil {
			w.batch = w.db.NewBatch()
		}
		val := appendRecord(make([]byte, 0, encodedLen(ev.Stream, ev.Type, r.metadata, data, r.revision, r.created)),
			r.id, r.revision, r.created, ev.Stream, ev.Type, r.metadata, data)
		if err := w.batch.Set(eventKey(nil, pos), val, nil); err != nil {
			return next, false, err
		}
		w.rep.Rewritten++
		if int(w.batch.Count()) >= w.opts.BatchEvents {
			if err := w.commit(); err != nil {
				return next, false, err
			}
		}
	}
	return next, true, nil
}

// commit writes the pending batch, synced, once BeforeCommit has made
// what it depends on durable.
func (w *rewriter) commit() error {
	if w.batch == nil {
		return nil
	}
	b := w.batch
	w.batch = nil
	defer b.Close()
	if w.opts.BeforeCommit != nil {
		if err := w.opts.BeforeCommit(); err != nil {
			return fmt.Errorf("before commit: %w", err)
		}
	}
	if err := pebblelog.Catch(func() error { return b.Commit(pebble.Sync) }); err != nil {
		return fmt.Errorf("commit rewritten events: %w", err)
	}
	if w.opts.Progress != nil {
		w.opts.Progress(*w.rep)
	}
	return nil
}
