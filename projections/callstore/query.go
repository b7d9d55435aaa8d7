package callstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
)

// MaxTreeLegs bounds the legs GetCall returns for one tree.
const MaxTreeLegs = 1000

// Tree returns the call sid and every leg of its tree (root first, then by
// CallSid), and a position the answer is at least as recent as; an unknown
// call is callstate.ErrNotFound. Legs are read one by one, not from one
// snapshot: each is at least as recent as the position, which is what
// read-your-writes needs, and GetCall, the hottest query, saves a snapshot
// and a read per call.
func (s *Store) Tree(ctx context.Context, sid string) (_ callstate.Tree, err error) {
	defer s.check(&err)
	done, err := s.reading()
	if err != nil {
		return callstate.Tree{}, err
	}
	defer done()
	pos := eventstore.Position(s.applied.Load())
	call, err := getView(s.db, sid)
	if err != nil {
		return callstate.Tree{}, err
	}
	if call == nil {
		return callstate.Tree{Position: pos}, fmt.Errorf("%s: %w", sid, callstate.ErrNotFound)
	}
	legs := []*callledgerv1.Call{call}
	if root := call.GetRootCallSid(); root != sid || len(call.GetChildCallSids()) > 0 {
		legs, err = tree(s.db, root, call)
		if err != nil {
			return callstate.Tree{}, err
		}
	}
	return callstate.Tree{Call: call, Legs: legs, Position: pos}, nil
}

// tree collects the legs below root, breadth first; known is one leg
// already read.
func tree(g getter, root string, known *callledgerv1.Call) ([]*callledgerv1.Call, error) {
	var out []*callledgerv1.Call
	seen := map[string]bool{}
	queue := []string{root}
	for len(queue) > 0 && len(out) < MaxTreeLegs {
		sid := queue[0]
		queue = queue[1:]
		if seen[sid] {
			continue
		}
		seen[sid] = true
		c := known
		if sid != known.GetCallSid() {
			var err error
			if c, err = getView(g, sid); err != nil {
				return nil, err
			}
			if c == nil {
				continue
			}
		}
		out = append(out, c)
		queue = append(queue, c.GetChildCallSids()...)
	}
	slices.SortStableFunc(out[min(1, len(out)):], func(a, b *callledgerv1.Call) int {
		return strings.Compare(a.GetCallSid(), b.GetCallSid())
	})
	return out, nil
}

// Filter selects calls for List and Watch.
type Filter struct {
	ActiveOnly    bool
	Statuses      []callledgerv1.CallStatus
	StartedAfter  int64 // Unix nanoseconds, inclusive; 0: no bound
	StartedBefore int64 // Unix nanoseconds, exclusive; 0: no bound
	ParentCallSid string
}

// Match reports whether c passes f.
func (f Filter) Match(c *callledgerv1.Call) bool {
	if f.ActiveOnly && !callstate.Active(c) {
		return false
	}
	if len(f.Statuses) > 0 && !slices.Contains(f.Statuses, c.GetStatus()) {
		return false
	}
	start := c.GetStartTime().AsTime().UnixNano()
	if f.StartedAfter != 0 && start < f.StartedAfter {
		return false
	}
	if f.StartedBefore != 0 && start >= f.StartedBefore {
		return false
	}
	if f.ParentCallSid != "" && c.GetParentCallSid() != f.ParentCallSid {
		return false
	}
	return true
}

// fingerprint ties a page token to the filter it was issued for.
func (f Filter) fingerprint() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%t|%v|%d|%d|%s", f.ActiveOnly, f.Statuses, f.StartedAfter, f.StartedBefore, f.ParentCallSid)
	return h.Sum64()
}

const tokenVersion = 1

func encodeToken(f Filter, lastKey []byte) string {
	return encodeTokenFingerprint(f.fingerprint(), lastKey)
}

func decodeToken(f Filter, token string) ([]byte, error) {
	return decodeTokenFingerprint(f.fingerprint(), token)
}

// encodeTokenFingerprint is a page token after lastKey for the filter of
// fingerprint fp.
func encodeTokenFingerprint(fp uint64, lastKey []byte) string {
	b := []byte{tokenVersion}
	b = binary.BigEndian.AppendUint64(b, fp)
	b = append(b, lastKey...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeTokenFingerprint(fp uint64, token string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 10 || b[0] != tokenVersion {
		return nil, ErrBadPageToken
	}
	if binary.BigEndian.Uint64(b[1:9]) != fp {
		return nil, fmt.Errorf("%w: issued for another filter", ErrBadPageToken)
	}
	return b[9:], nil
}

// Page is one page of List.
type Page struct {
	// Calls are the page's calls, newest start time first.
	Calls []*callledgerv1.Call
	// Next is the token of the next page, empty after the last.
	Next string
	// Position is the log position the page was read at.
	Position eventstore.Position
}

// List returns up to limit calls matching f, newest start time first (then
// by CallSid), after the position a page token marks; and the token of
// the next page, empty after the last.
func (s *Store) List(ctx context.Context, f Filter, limit int, token string) (_ Page, err error) {
	defer s.check(&err)
	done, err := s.reading()
	if err != nil {
		return Page{}, err
	}
	defer done()
	var after []byte
	if token != "" {
		var err error
		if after, err = decodeToken(f, token); err != nil {
			return Page{}, err
		}
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	pos, err := readCheckpoint(snap)
	if err != nil {
		return Page{}, err
	}
	var calls []*callledgerv1.Call
	var lastKey []byte
	more := false
	if f.ParentCallSid != "" {
		calls, lastKey, more, err = listChildren(snap, f, limit, after)
	} else {
		calls, lastKey, more, err = listIndex(ctx, snap, f, limit, after)
	}
	if err != nil {
		return Page{}, err
	}
	next := ""
	if more {
		next = encodeToken(f, lastKey)
	}
	return Page{Calls: calls, Next: next, Position: pos}, nil
}

// listIndex scans the time index (or the active index) in order.
func listIndex(ctx context.Context, snap *pebble.Snapshot, f Filter, limit int, after []byte) ([]*callledgerv1.Call, []byte, bool, error) {
	prefix := byte(prefixTime)
	if f.ActiveOnly {
		prefix = prefixActive
	}
	return scanTimeIndex(ctx, snap, prefix, f.StartedAfter, f.StartedBefore, limit, after, func(sid string) (*callledgerv1.Call, bool, bool, error) {
		c, err := getView(snap, sid)
		return c, c != nil, c != nil && f.Match(c), err
	})
}

// scanTimeIndex pages through a time index, calls' or conferences' (each
// key: prefix, complemented start time, ID), from the key after, keeping
// up to limit of the entries that view finds and that match. It returns
// them, the key of the last entry found (where the next page starts), and
// whether there are more. An entry whose record is gone is skipped.
func scanTimeIndex[T any](ctx context.Context, snap *pebble.Snapshot, prefix byte, startedAfter, startedBefore int64, limit int, after []byte,
	view func(id string) (v T, found, match bool, err error)) ([]T, []byte, bool, error) {
	// Newest first: the complemented start time turns startedBefore into
	// the lower bound and startedAfter into the upper one.
	lower := []byte{prefix}
	if startedBefore != 0 {
		lower = binary.BigEndian.AppendUint64(lower, ^uint64(startedBefore-1))
	}
	upper := []byte{prefix + 1}
	if startedAfter != 0 {
		upper = binary.BigEndian.AppendUint64([]byte{prefix}, ^uint64(startedAfter)+1)
	}
	if after != nil {
		if len(after) == 0 || after[0] != prefix {
			return nil, nil, false, ErrBadPageToken
		}
		if k := append(slices.Clip(after), 0); bytes.Compare(k, lower) > 0 {
			lower = k
		}
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, false, err
	}
	defer it.Close()
	var out []T
	var last []byte
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, nil, false, err
		}
		key := it.Key()
		if len(key) < 9 {
			continue
		}
		if len(out) == limit {
			return out, last, true, nil
		}
		v, found, match, err := view(string(key[9:]))
		if err != nil {
			return nil, nil, false, err
		}
		if !found {
			continue
		}
		last = slices.Clone(key)
		if match {
			out = append(out, v)
		}
	}
	return out, last, false, it.Error()
}

// listChildren lists the children of f.ParentCallSid from the parent's
// record, in the same order as the index.
func listChildren(snap *pebble.Snapshot, f Filter, limit int, after []byte) ([]*callledgerv1.Call, []byte, bool, error) {
	parent, err := getRecord(snap, f.ParentCallSid)
	if err != nil || parent == nil {
		return nil, nil, false, err
	}
	type item struct {
		key  []byte
		call *callledgerv1.Call
	}
	var items []item
	for _, sid := range parent.GetChildCallSids() {
		rec, err := getRecord(snap, sid)
		if err != nil {
			return nil, nil, false, err
		}
		if rec == nil {
			continue
		}
		k := timeKey(prefixTime, rec)
		if after != nil && bytes.Compare(k, after) <= 0 {
			continue
		}
		items = append(items, item{k, callstate.View(rec)})
	}
	slices.SortFunc(items, func(a, b item) int { return bytes.Compare(a.key, b.key) })
	var out []*callledgerv1.Call
	var last []byte
	for i, it := range items {
		if len(out) == limit {
			return out, items[i-1].key, true, nil
		}
		last = it.key
		if f.Match(it.call) {
			out = append(out, it.call)
		}
	}
	return out, last, false, nil
}

// Get returns one call without its tree; an unknown call is
// callstate.ErrNotFound.
func (s *Store) Get(ctx context.Context, sid string) (_ *callledgerv1.Call, err error) {
	defer s.check(&err)
	done, err := s.reading()
	if err != nil {
		return nil, err
	}
	defer done()
	c, err := getView(s.db, sid)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("%s: %w", sid, callstate.ErrNotFound)
	}
	return c, nil
}

// Records calls fn with every stored record, in CallSid order: for
// comparing read models (rebuild = live) and for export.
func (s *Store) Records(ctx context.Context, fn func(*statev1.CallRecord) error) (err error) {
	defer s.check(&err)
	done, err := s.reading()
	if err != nil {
		return err
	}
	defer done()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCall}, UpperBound: []byte{prefixCall + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec := &statev1.CallRecord{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			return fmt.Errorf("decode %s: %w", it.Key()[1:], err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return it.Error()
}
