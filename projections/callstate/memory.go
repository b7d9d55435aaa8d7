package callstate

import (
	"maps"
	"slices"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
)

// Memory is a Tx over in-memory maps. Rebuilds fold the whole log into
// one and write it out in bulk; tests fold into one to compare orders.
type Memory struct {
	recs  map[string]*statev1.CallRecord
	confs map[string]*statev1.ConferenceRecord
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{recs: map[string]*statev1.CallRecord{}, confs: map[string]*statev1.ConferenceRecord{}}
}

// Get returns the record of sid, or nil.
func (m *Memory) Get(sid string) (*statev1.CallRecord, error) { return m.recs[sid], nil }

// Put stores rec.
func (m *Memory) Put(rec *statev1.CallRecord) error {
	m.recs[rec.GetCallSid()] = rec
	return nil
}

// GetConference returns the record of conference sid, or nil.
func (m *Memory) GetConference(sid string) (*statev1.ConferenceRecord, error) {
	return m.confs[sid], nil
}

// PutConference stores rec.
func (m *Memory) PutConference(rec *statev1.ConferenceRecord) error {
	m.confs[rec.GetConferenceSid()] = rec
	return nil
}

// Len is the number of calls.
func (m *Memory) Len() int { return len(m.recs) }

// Sids returns the CallSids held, sorted.
func (m *Memory) Sids() []string { return slices.Sorted(maps.Keys(m.recs)) }

// ConferenceSids returns the ConferenceSids held, sorted.
func (m *Memory) ConferenceSids() []string { return slices.Sorted(maps.Keys(m.confs)) }
