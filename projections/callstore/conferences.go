package callstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
)

// Conferences live beside the calls:
//
//	f<ConferenceSid>                  → statev1.ConferenceRecord
//	g<^start_time><ConferenceSid>     → ""  every conference, newest start first
//	h<^start_time><ConferenceSid>     → ""  conferences not completed

// ErrConferenceNotFound: the read model knows no conference with that SID.
var ErrConferenceNotFound = errors.New("conference not found")

// confEntry is a conference the current batch touched, with its index
// keys before, so they can be replaced.
type confEntry struct {
	rec       *statev1.ConferenceRecord
	old       *callledgerv1.Conference // nil when new
	oldTime   []byte
	oldActive []byte
	dirty     bool
}

func (t *batchTx) GetConference(sid string) (*statev1.ConferenceRecord, error) {
	if e, ok := t.confs[sid]; ok {
		return e.rec, nil
	}
	rec, err := getConferenceRecord(t.s.db, sid)
	if err != nil || rec == nil {
		return nil, err
	}
	old := callstate.ConferenceView(rec)
	t.confs[sid] = &confEntry{rec: rec, old: old, oldTime: conferenceTimeKey(prefixConferenceTime, rec), oldActive: conferenceActiveKey(rec, old)}
	return rec, nil
}

func (t *batchTx) PutConference(rec *statev1.ConferenceRecord) error {
	e, ok := t.confs[rec.GetConferenceSid()]
	if !ok {
		e = &confEntry{}
		t.confs[rec.GetConferenceSid()] = e
	}
	e.rec = rec
	if !e.dirty {
		e.dirty = true
		t.confOrder = append(t.confOrder, rec.GetConferenceSid())
	}
	return nil
}

// writeConferences puts every changed conference and its index keys into
// the batch, and returns them.
func (t *batchTx) writeConferences() ([]changedConference, error) {
	changed := make([]changedConference, 0, len(t.confOrder))
	for _, sid := range t.confOrder {
		e := t.confs[sid]
		data, err := proto.Marshal(e.rec)
		if err != nil {
			return nil, fmt.Errorf("encode conference %s: %w", sid, err)
		}
		if err := t.b.Set(conferenceKey(sid), data, nil); err != nil {
			return nil, err
		}
		if err := t.reindex(e.oldTime, conferenceTimeKey(prefixConferenceTime, e.rec)); err != nil {
			return nil, err
		}
		view := callstate.ConferenceView(e.rec)
		if err := t.reindex(e.oldActive, conferenceActiveKey(e.rec, view)); err != nil {
			return nil, err
		}
		changed = append(changed, changedConference{conf: view, old: e.old})
	}
	return changed, nil
}

func conferenceKey(sid string) []byte { return append([]byte{prefixConference}, sid...) }

// conferenceTimeKey is the index key of rec under prefix: complemented
// start time, then the SID.
func conferenceTimeKey(prefix byte, rec *statev1.ConferenceRecord) []byte {
	k := make([]byte, 0, 9+len(rec.GetConferenceSid()))
	k = append(k, prefix)
	k = binary.BigEndian.AppendUint64(k, ^uint64(rec.GetStartTime().AsTime().UnixNano()))
	return append(k, rec.GetConferenceSid()...)
}

// conferenceActiveKey is rec's key in the active index, nil when view
// (rec's view) has ended.
func conferenceActiveKey(rec *statev1.ConferenceRecord, view *callledgerv1.Conference) []byte {
	if !callstate.ConferenceActive(view) {
		return nil
	}
	return conferenceTimeKey(prefixConferenceActive, rec)
}

func getConferenceRecord(g getter, sid string) (*statev1.ConferenceRecord, error) {
	v, closer, err := g.Get(conferenceKey(sid))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read conference %s: %w", sid, err)
	}
	defer closer.Close()
	rec := &statev1.ConferenceRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode conference %s: %w", sid, err)
	}
	return rec, nil
}

// ConferenceTree is a conference and the calls of its participants.
type ConferenceTree struct {
	Conference *callledgerv1.Conference
	// Calls are the participants' calls the read model knows, by CallSid.
	Calls []*callledgerv1.Call
	// Position is a log position the answer is at least as recent as.
	Position eventstore.Position
}

// Conference returns a conference and its participants' calls; an unknown
// conference is ErrConferenceNotFound. Like Tree, it reads records one by
// one, each at least as recent as the position.
func (s *Store) Conference(ctx context.Context, sid string) (ConferenceTree, error) {
	done, err := s.reading()
	if err != nil {
		return ConferenceTree{}, err
	}
	defer done()
	pos := eventstore.Position(s.applied.Load())
	rec, err := getConferenceRecord(s.db, sid)
	if err != nil {
		return ConferenceTree{}, err
	}
	if rec == nil {
		return ConferenceTree{Position: pos}, fmt.Errorf("%s: %w", sid, ErrConferenceNotFound)
	}
	out := ConferenceTree{Conference: callstate.ConferenceView(rec), Position: pos}
	for _, p := range rec.GetParticipants() {
		if err := ctx.Err(); err != nil {
			return ConferenceTree{}, err
		}
		c, err := getView(s.db, p.GetCallSid())
		if err != nil {
			return ConferenceTree{}, err
		}
		if c != nil {
			out.Calls = append(out.Calls, c)
		}
	}
	return out, nil
}

// ConferenceFilter selects conferences for ListConferences and
// WatchConferences.
type ConferenceFilter struct {
	ActiveOnly    bool
	StartedAfter  int64 // Unix nanoseconds, inclusive; 0: no bound
	StartedBefore int64 // Unix nanoseconds, exclusive; 0: no bound
}

// Match reports whether c passes f.
func (f ConferenceFilter) Match(c *callledgerv1.Conference) bool {
	if f.ActiveOnly && !callstate.ConferenceActive(c) {
		return false
	}
	start := c.GetStartTime().AsTime().UnixNano()
	if f.StartedAfter != 0 && start < f.StartedAfter {
		return false
	}
	return f.StartedBefore == 0 || start < f.StartedBefore
}

func (f ConferenceFilter) fingerprint() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "conference|%t|%d|%d", f.ActiveOnly, f.StartedAfter, f.StartedBefore)
	return h.Sum64()
}

// ConferencePage is one page of ListConferences.
type ConferencePage struct {
	Conferences []*callledgerv1.Conference
	Next        string
	Position    eventstore.Position
}

// ListConferences returns up to limit conferences matching f, newest start
// time first, after the position a page token marks.
func (s *Store) ListConferences(ctx context.Context, f ConferenceFilter, limit int, token string) (ConferencePage, error) {
	done, err := s.reading()
	if err != nil {
		return ConferencePage{}, err
	}
	defer done()
	var after []byte
	if token != "" {
		if after, err = decodeTokenFingerprint(f.fingerprint(), token); err != nil {
			return ConferencePage{}, err
		}
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	pos, err := readCheckpoint(snap)
	if err != nil {
		return ConferencePage{}, err
	}
	confs, last, more, err := listConferences(ctx, snap, f, limit, after)
	if err != nil {
		return ConferencePage{}, err
	}
	next := ""
	if more {
		next = encodeTokenFingerprint(f.fingerprint(), last)
	}
	return ConferencePage{Conferences: confs, Next: next, Position: pos}, nil
}

// listConferences scans the conference time index (or its active index).
func listConferences(ctx context.Context, snap *pebble.Snapshot, f ConferenceFilter, limit int, after []byte) ([]*callledgerv1.Conference, []byte, bool, error) {
	prefix := byte(prefixConferenceTime)
	if f.ActiveOnly {
		prefix = prefixConferenceActive
	}
	return scanTimeIndex(ctx, snap, prefix, f.StartedAfter, f.StartedBefore, limit, after, func(sid string) (*callledgerv1.Conference, bool, bool, error) {
		rec, err := getConferenceRecord(snap, sid)
		if rec == nil || err != nil {
			return nil, false, false, err
		}
		c := callstate.ConferenceView(rec)
		return c, true, f.Match(c), nil
	})
}

// ConferenceRecords calls fn with every stored conference record, in
// ConferenceSid order: for comparing read models.
func (s *Store) ConferenceRecords(ctx context.Context, fn func(*statev1.ConferenceRecord) error) error {
	done, err := s.reading()
	if err != nil {
		return err
	}
	defer done()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixConference}, UpperBound: []byte{prefixConference + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec := &statev1.ConferenceRecord{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			return fmt.Errorf("decode conference %s: %w", it.Key()[1:], err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return it.Error()
}

// EncodedConference is a conference record ready for Load.
type EncodedConference struct {
	data      []byte
	timeKey   []byte
	activeKey []byte
}

// EncodeConference prepares rec for Load.
func EncodeConference(rec *statev1.ConferenceRecord) (EncodedConference, error) {
	data, err := proto.Marshal(rec)
	if err != nil {
		return EncodedConference{}, fmt.Errorf("encode conference %s: %w", rec.GetConferenceSid(), err)
	}
	view := callstate.ConferenceView(rec)
	return EncodedConference{data: data, timeKey: conferenceTimeKey(prefixConferenceTime, rec), activeKey: conferenceActiveKey(rec, view)}, nil
}

// loadConferences writes conference records in one batch: there are few
// beside the calls.
func loadConferences(db *pebble.DB, confs []EncodedConference) error {
	b := db.NewBatch()
	defer b.Close()
	for _, c := range confs {
		sid := c.timeKey[9:]
		err := errors.Join(b.Set(append([]byte{prefixConference}, sid...), c.data, nil), b.Set(c.timeKey, nil, nil))
		if err == nil && c.activeKey != nil {
			err = b.Set(c.activeKey, nil, nil)
		}
		if err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit conferences: %w", err)
	}
	return nil
}
