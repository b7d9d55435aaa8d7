package rebuild

import (
	"context"
	"runtime"
	"sync"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	"github.com/callledger/callledger/projections/callstore"
)

// memory is the callstate.Tx a rebuild folds into. Records the fold has
// not touched for a whole epoch (calls end within minutes, and the log is
// in arrival order) are frozen: encoded once, as the bulk write needs them
// anyway, and handed to a cold store, which either keeps them as bytes
// (Fold, whose caller wants every record) or writes them into the read
// model being built and drops them (Build), so that memory holds only the
// calls of the last epochs whatever the size of the ledger. A frozen
// record the fold needs again is read back and decoded (rare: a late
// callback).
type memory struct {
	hot   map[string]*hotRecord
	cold  cold
	confs map[string]*statev1.ConferenceRecord // few beside the calls: kept hot
	epoch uint64
	// workers encode frozen records in parallel.
	workers int
}

// cold holds the records memory froze.
type cold interface {
	// take returns the frozen record of sid, or nil; memory keeps it hot
	// from then on, and freezes it again later.
	take(sid string) (*statev1.CallRecord, error)
	// freeze takes recs; it may keep the slice.
	freeze(ctx context.Context, recs []callstore.Encoded) error
	// len is the number of distinct calls frozen so far.
	len() int
}

type hotRecord struct {
	rec   *statev1.CallRecord
	epoch uint64 // last epoch the fold touched it
}

func newMemory(c cold) *memory {
	return &memory{
		hot:     make(map[string]*hotRecord, 1<<16),
		cold:    c,
		confs:   map[string]*statev1.ConferenceRecord{},
		workers: runtime.GOMAXPROCS(0),
	}
}

func (m *memory) Get(sid string) (*statev1.CallRecord, error) {
	if h := m.hot[sid]; h != nil {
		h.epoch = m.epoch
		return h.rec, nil
	}
	rec, err := m.cold.take(sid)
	if err != nil || rec == nil {
		return nil, err
	}
	m.hot[sid] = &hotRecord{rec: rec, epoch: m.epoch}
	return rec, nil
}

func (m *memory) Put(rec *statev1.CallRecord) error {
	if h := m.hot[rec.GetCallSid()]; h != nil {
		h.rec, h.epoch = rec, m.epoch
		return nil
	}
	m.hot[rec.GetCallSid()] = &hotRecord{rec: rec, epoch: m.epoch}
	return nil
}

func (m *memory) GetConference(sid string) (*statev1.ConferenceRecord, error) {
	return m.confs[sid], nil
}

func (m *memory) PutConference(rec *statev1.ConferenceRecord) error {
	m.confs[rec.GetConferenceSid()] = rec
	return nil
}

// len is the number of calls, hot or frozen; an upper bound while a
// record read back is hot again.
func (m *memory) len() int { return len(m.hot) + m.cold.len() }

// advance starts a new epoch and freezes the records untouched during the
// previous one.
func (m *memory) advance(ctx context.Context) error {
	m.epoch++
	var old []*statev1.CallRecord
	for sid, h := range m.hot {
		if h.epoch+1 < m.epoch {
			old = append(old, h.rec)
			delete(m.hot, sid)
		}
	}
	return m.freeze(ctx, old)
}

// freeze encodes recs on every CPU and hands them to the cold store.
func (m *memory) freeze(ctx context.Context, recs []*statev1.CallRecord) error {
	enc := make([]callstore.Encoded, len(recs))
	errs := make([]error, m.workers)
	var wg sync.WaitGroup
	chunk := (len(recs) + m.workers - 1) / m.workers
	for w := range m.workers {
		lo, hi := min(w*chunk, len(recs)), min((w+1)*chunk, len(recs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				e, err := callstore.Encode(recs[i])
				if err != nil {
					errs[w] = err
					return
				}
				enc[i] = e
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return m.cold.freeze(ctx, enc)
}

// finish freezes every record still hot and returns the conferences,
// encoded.
func (m *memory) finish(ctx context.Context) ([]callstore.EncodedConference, error) {
	hot := make([]*statev1.CallRecord, 0, len(m.hot))
	for _, h := range m.hot {
		hot = append(hot, h.rec)
	}
	clear(m.hot)
	if err := m.freeze(ctx, hot); err != nil {
		return nil, err
	}
	confs := make([]callstore.EncodedConference, 0, len(m.confs))
	for _, c := range m.confs {
		e, err := callstore.EncodeConference(c)
		if err != nil {
			return nil, err
		}
		confs = append(confs, e)
	}
	clear(m.confs)
	return confs, nil
}

// inMemory keeps frozen records as their encoding: Fold's cold store.
type inMemory map[string]callstore.Encoded

func (c inMemory) take(sid string) (*statev1.CallRecord, error) {
	e, ok := c[sid]
	if !ok {
		return nil, nil
	}
	rec, err := e.Decode()
	if err != nil {
		return nil, err
	}
	delete(c, sid)
	return rec, nil
}

func (c inMemory) freeze(_ context.Context, recs []callstore.Encoded) error {
	for _, e := range recs {
		c[e.CallSid()] = e
	}
	return nil
}

func (c inMemory) len() int { return len(c) }

// records returns every record held, and forgets them.
func (c inMemory) records() []callstore.Encoded {
	out := make([]callstore.Encoded, 0, len(c))
	for _, e := range c {
		out = append(out, e)
	}
	clear(c)
	return out
}

// spilled writes frozen records into the read model being built: Build's
// cold store, whose memory does not grow with the ledger.
type spilled struct{ b *callstore.Builder }

func (c spilled) take(sid string) (*statev1.CallRecord, error) { return c.b.Get(sid) }

func (c spilled) freeze(ctx context.Context, recs []callstore.Encoded) error {
	return c.b.Write(ctx, recs)
}

func (c spilled) len() int { return c.b.Calls() }
