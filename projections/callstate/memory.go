package callstate

import (
	"maps"
	"slices"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
)

// Memory is a Tx over an in-memory map. Rebuilds fold the whole log into
// one and write it out in bulk; tests fold into one to compare orders.
type Memory struct {
	recs map[string]*statev1.CallRecord
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{recs: map[string]*statev1.CallRecord{}} }

// Get returns the record of sid, or nil.
func (m *Memory) Get(sid string) (*statev1.CallRecord, error) { return m.recs[sid], nil }

// Put stores rec.
func (m *Memory) Put(rec *statev1.CallRecord) error {
	m.recs[rec.GetCallSid()] = rec
	return nil
}

// Len is the number of calls.
func (m *Memory) Len() int { return len(m.recs) }

// Sids returns the CallSids held, sorted.
func (m *Memory) Sids() []string { return slices.Sorted(maps.Keys(m.recs)) }
