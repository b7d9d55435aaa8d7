package rebuild

import (
	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
)

// memory is the callstate.Tx a rebuild folds into: a map sized for large
// logs, whose records are handed to the bulk writer at the end.
type memory struct {
	recs map[string]*statev1.CallRecord
}

func newMemory() *memory {
	return &memory{recs: make(map[string]*statev1.CallRecord, 1<<16)}
}

func (m *memory) Get(sid string) (*statev1.CallRecord, error) { return m.recs[sid], nil }

func (m *memory) Put(rec *statev1.CallRecord) error {
	m.recs[rec.GetCallSid()] = rec
	return nil
}

func (m *memory) len() int { return len(m.recs) }

func (m *memory) records() []*statev1.CallRecord {
	out := make([]*statev1.CallRecord, 0, len(m.recs))
	for _, r := range m.recs {
		out = append(out, r)
	}
	return out
}
