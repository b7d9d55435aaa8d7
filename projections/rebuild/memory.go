package rebuild

import (
	"runtime"
	"sync"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	"github.com/callledger/callledger/projections/callstore"
)

// memory is the callstate.Tx a rebuild folds into. Records the fold has
// not touched for a whole epoch (calls end within minutes, and the log is
// in arrival order) are frozen: encoded once, as the bulk write needs them
// anyway, and kept as bytes. A frozen record costs a fraction of the
// decoded message's memory, and nothing to the garbage collector, which
// otherwise re-marks millions of small messages on every cycle. A frozen
// record the fold needs again is decoded back (rare: a late callback).
type memory struct {
	hot   map[string]*hotRecord
	cold  map[string]callstore.Encoded
	confs map[string]*statev1.ConferenceRecord // few beside the calls: kept hot
	epoch uint64
	// workers encode frozen records in parallel.
	workers int
}

type hotRecord struct {
	rec   *statev1.CallRecord
	epoch uint64 // last epoch the fold touched it
}

func newMemory() *memory {
	return &memory{
		hot:     make(map[string]*hotRecord, 1<<16),
		cold:    make(map[string]callstore.Encoded, 1<<16),
		confs:   map[string]*statev1.ConferenceRecord{},
		workers: runtime.GOMAXPROCS(0),
	}
}

func (m *memory) Get(sid string) (*statev1.CallRecord, error) {
	if h := m.hot[sid]; h != nil {
		h.epoch = m.epoch
		return h.rec, nil
	}
	e, ok := m.cold[sid]
	if !ok {
		return nil, nil
	}
	rec, err := e.Decode()
	if err != nil {
		return nil, err
	}
	delete(m.cold, sid)
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

func (m *memory) len() int { return len(m.hot) + len(m.cold) }

// advance starts a new epoch and freezes the records untouched during the
// previous one.
func (m *memory) advance() error {
	m.epoch++
	var old []*statev1.CallRecord
	for sid, h := range m.hot {
		if h.epoch+1 < m.epoch {
			old = append(old, h.rec)
			delete(m.hot, sid)
		}
	}
	return m.freeze(old)
}

// freeze encodes recs on every CPU and keeps them cold.
func (m *memory) freeze(recs []*statev1.CallRecord) error {
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
	for i, r := range recs {
		m.cold[r.GetCallSid()] = enc[i]
	}
	return nil
}

// finish freezes every record and returns them all, with the conferences.
func (m *memory) finish() ([]callstore.Encoded, []callstore.EncodedConference, error) {
	hot := make([]*statev1.CallRecord, 0, len(m.hot))
	for _, h := range m.hot {
		hot = append(hot, h.rec)
	}
	clear(m.hot)
	if err := m.freeze(hot); err != nil {
		return nil, nil, err
	}
	out := make([]callstore.Encoded, 0, len(m.cold))
	for _, e := range m.cold {
		out = append(out, e)
	}
	clear(m.cold)
	confs := make([]callstore.EncodedConference, 0, len(m.confs))
	for _, c := range m.confs {
		e, err := callstore.EncodeConference(c)
		if err != nil {
			return nil, nil, err
		}
		confs = append(confs, e)
	}
	clear(m.confs)
	return out, confs, nil
}
