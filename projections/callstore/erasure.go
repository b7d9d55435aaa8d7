package callstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstate"
)

// MaxCallLife is how long after its start a call that never ended is
// taken to have ended, for retention: Twilio ends every call within 24
// hours (a call's TimeLimit is at most 24 hours), so a call still without
// an end by then lost its final callback, and its personal data must age
// like any other's rather than be kept forever.
const MaxCallLife = 24 * time.Hour

// dueKey is rec's key in the retention index (r<due time><CallSid>), nil
// for a redacted call: when the call ended (by a report, or inferred from
// its parent), else MaxCallLife after its start. The time is Unix
// nanoseconds, big-endian, clamped at 0: an ascending scan yields the
// longest due first.
func dueKey(rec *statev1.CallRecord, view *callledgerv1.Call) []byte {
	if rec.GetRedacted() {
		return nil
	}
	due := rec.GetStartTime().AsTime().Add(MaxCallLife)
	if view.GetTerminal() && view.GetEndedAt() != nil {
		due = view.GetEndedAt().AsTime()
	}
	k := make([]byte, 0, 9+len(rec.GetCallSid()))
	k = append(k, prefixDue)
	k = binary.BigEndian.AppendUint64(k, uint64(max(due.UnixNano(), 0)))
	return append(k, rec.GetCallSid()...)
}

// Due returns up to limit calls, not redacted, that ended before t (or,
// never ended, began more than MaxCallLife before t): the calls retention
// erases, longest due first.
func (s *Store) Due(ctx context.Context, t time.Time, limit int) (_ []string, err error) {
	defer s.check(&err)
	done, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer done()
	upper := binary.BigEndian.AppendUint64([]byte{prefixDue}, uint64(max(t.UnixNano(), 0)))
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDue}, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out = append(out, string(it.Key()[9:]))
	}
	return out, it.Error()
}

// Scrub makes the personal data the read model held of the calls sids,
// before they were redacted, physically absent from its files
// (internal/pebblescrub): their records' earlier versions and those of
// their conferences, in the WAL, recycled WAL files and older tables. The
// read model must have applied their ErasureRecorded first. Apply may run
// meanwhile; scrubs run one at a time.
func (s *Store) Scrub(ctx context.Context, sids []string) (err error) {
	defer s.check(&err)
	s.scrubMu.Lock()
	defer s.scrubMu.Unlock()
	return s.scrubLocked(ctx, sids)
}

// scrubLocked is Scrub, with scrubMu held.
func (s *Store) scrubLocked(ctx context.Context, sids []string) error {
	done, err := s.reading()
	if err != nil {
		return err
	}
	defer done()
	var ranges []pebble.KeyRange
	confs := map[string]bool{}
	for _, sid := range sids {
		k := callKey(sid)
		ranges = append(ranges, pebble.KeyRange{Start: k, End: append(slices.Clip(k), 0)})
		rec, err := getRecord(s.db, sid)
		if err != nil {
			return err
		}
		for _, p := range rec.GetConferences() {
			if c := p.GetConferenceSid(); !confs[c] {
				confs[c] = true
				k := append([]byte{prefixConference}, c...)
				ranges = append(ranges, pebble.KeyRange{Start: k, End: append(slices.Clip(k), 0)})
			}
		}
	}
	if len(ranges) > wholeRangeOver {
		ranges = []pebble.KeyRange{{Start: []byte{prefixCall}, End: []byte{prefixConference + 1}}}
	}
	// Applied batches are not synced: sync the WAL, as the scrub asks.
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("scrub read model: %w", err)
	}
	if err := s.scrub.Scrub(ctx, s.db, ranges); err != nil {
		return fmt.Errorf("scrub read model: %w", err)
	}
	// The pending scrubs this one covered are done: the erasure service's
	// own scrub spares the next ScrubPending a second compaction.
	return s.forgetPending(sids)
}

// forgetPending deletes the pending scrubs whose calls are all among sids,
// which were just scrubbed; the caller holds the read lock (reading).
func (s *Store) forgetPending(sids []string) error {
	keys, err := s.pendingCoveredBy(sids)
	if err != nil || len(keys) == 0 {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		if err := b.Delete(k, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("read model: pending scrubs done: %w", err)
	}
	return nil
}

// pendingCoveredBy returns the keys of the pending scrubs whose calls are
// all among sids; the caller holds the read lock.
func (s *Store) pendingCoveredBy(sids []string) ([][]byte, error) {
	scrubbed := make(map[string]bool, len(sids))
	for _, sid := range sids {
		scrubbed[sid] = true
	}
	var keys [][]byte
	err := s.eachPending(func(key []byte, calls []string) {
		if !slices.ContainsFunc(calls, func(sid string) bool { return !scrubbed[sid] }) {
			keys = append(keys, bytes.Clone(key))
		}
	})
	return keys, err
}

// eachPending calls fn with the key and the calls of every pending scrub.
// The caller holds the read lock: taken twice, it would wait behind a
// Close that came in between, which waits for the first.
func (s *Store) eachPending(fn func(key []byte, calls []string)) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixScrub}, UpperBound: []byte{prefixScrub + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		fn(it.Key(), strings.Split(string(it.Value()), "\n"))
	}
	return it.Error()
}

// scrubKey is the key of the pending scrub of the erasure applied at pos.
func scrubKey(pos uint64) []byte { return binary.BigEndian.AppendUint64([]byte{prefixScrub}, pos) }

// ScrubPending scrubs (Scrub) the calls of every erasure the read model has
// applied and not yet scrubbed, and returns how many calls that was. Apply
// records each ErasureRecorded it folds, in the batch that redacts its
// calls, so that every node scrubs its own read model of what an erasure
// redacted, wherever the erasure was made, and a crash in between loses no
// scrub. Safe to call at any time, Apply running or not.
func (s *Store) ScrubPending(ctx context.Context) (calls int, err error) {
	defer s.check(&err)
	// Under scrubMu, so that a scrub the erasure service is running
	// finishes, and forgets what it covered, before the markers are read.
	s.scrubMu.Lock()
	defer s.scrubMu.Unlock()
	sids, err := s.pendingScrubs()
	if err != nil || len(sids) == 0 {
		return 0, err
	}
	// The scrub forgets the pending scrubs it covers.
	if err := s.scrubLocked(ctx, sids); err != nil {
		return 0, err
	}
	return len(sids), nil
}

// pendingScrubs returns the calls of the pending scrubs.
func (s *Store) pendingScrubs() ([]string, error) {
	done, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer done()
	var sids []string
	err = s.eachPending(func(_ []byte, calls []string) { sids = append(sids, calls...) })
	slices.Sort(sids)
	return slices.Compact(sids), err
}

// wholeRangeOver is how many key ranges Scrub compacts one by one; beyond
// it compacts the records of every call and conference at once.
const wholeRangeOver = 64

// Find returns the CallSids of the calls whose view match accepts, in
// CallSid order. It reads every record: for rare operator actions (an
// erasure by number on a ledger written before its numbers were indexed),
// not for queries.
func (s *Store) Find(ctx context.Context, match func(*callledgerv1.Call) bool) ([]string, error) {
	var out []string
	err := s.Records(ctx, func(rec *statev1.CallRecord) error {
		if match(callstate.View(rec)) {
			out = append(out, rec.GetCallSid())
		}
		return nil
	})
	return out, err
}
