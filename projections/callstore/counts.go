package callstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
)

// keyCounts holds the call counts by status and the active count, written
// in the same batch as the records they count, so they are exact at every
// checkpoint and survive restarts without a scan. A store written before
// the counts existed gets them from one scan at Open.
var keyCounts = []byte("mcounts")

// Counts are the read model's calls by status, at one checkpoint.
type Counts struct {
	// ByStatus counts every record by status, placeholders included
	// (a placeholder parent has CALL_STATUS_UNSPECIFIED).
	ByStatus map[callledgerv1.CallStatus]int64
	// Active counts calls with a status that is not terminal.
	Active int64
	// Total is the number of call records.
	Total int64
	// Position is the checkpoint the counts are exact at.
	Position eventstore.Position
}

// counts is the in-memory copy of keyCounts; Apply, under applyMu, is its
// only writer.
type counts struct {
	byStatus map[callledgerv1.CallStatus]int64
	active   int64
}

func (c *counts) clone() counts {
	out := counts{byStatus: make(map[callledgerv1.CallStatus]int64, len(c.byStatus)), active: c.active}
	for k, v := range c.byStatus {
		out.byStatus[k] = v
	}
	return out
}

// add counts call n times (n is +1 or −1).
func (c *counts) add(call *callledgerv1.Call, n int64) {
	c.addStatus(call.GetStatus(), callstate.Active(call), n)
}

// addStatus counts a call of status, active or not, n times.
func (c *counts) addStatus(status callledgerv1.CallStatus, active bool, n int64) {
	c.byStatus[status] += n
	if c.byStatus[status] == 0 {
		delete(c.byStatus, status)
	}
	if active {
		c.active += n
	}
}

func (c *counts) encode() []byte {
	b := binary.AppendVarint(nil, c.active)
	for s, n := range c.byStatus {
		b = binary.AppendVarint(b, int64(s))
		b = binary.AppendVarint(b, n)
	}
	return b
}

func decodeCounts(b []byte) (counts, error) {
	c := counts{byStatus: map[callledgerv1.CallStatus]int64{}}
	next := func() (int64, error) {
		v, n := binary.Varint(b)
		if n <= 0 {
			return 0, errors.New("truncated call counts")
		}
		b = b[n:]
		return v, nil
	}
	var err error
	if c.active, err = next(); err != nil {
		return counts{}, err
	}
	for len(b) > 0 {
		s, err := next()
		if err != nil {
			return counts{}, err
		}
		n, err := next()
		if err != nil {
			return counts{}, err
		}
		c.byStatus[callledgerv1.CallStatus(s)] = n
	}
	return c, nil
}

// loadCounts reads the persisted counts, or computes them with one scan of
// the records when the store predates them, and persists the result.
func (s *Store) loadCounts() error {
	v, closer, err := s.db.Get(keyCounts)
	if err == nil {
		defer closer.Close()
		c, err := decodeCounts(v)
		if err != nil {
			return fmt.Errorf("read call counts: %w", err)
		}
		s.counts = c
		return nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("read call counts: %w", err)
	}
	c := counts{byStatus: map[callledgerv1.CallStatus]int64{}}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCall}, UpperBound: []byte{prefixCall + 1}})
	if err != nil {
		return fmt.Errorf("count calls: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		rec := &statev1.CallRecord{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			it.Close()
			return fmt.Errorf("count calls: decode %s: %w", it.Key()[1:], err)
		}
		c.add(callstate.View(rec), 1)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("count calls: %w", err)
	}
	if err := s.db.Set(keyCounts, c.encode(), pebble.Sync); err != nil {
		return fmt.Errorf("write call counts: %w", err)
	}
	s.counts = c
	return nil
}

// Counts returns the calls by status and the active calls at the current
// checkpoint; it reads memory only.
func (s *Store) Counts() Counts {
	s.countsMu.RLock()
	defer s.countsMu.RUnlock()
	out := Counts{ByStatus: make(map[callledgerv1.CallStatus]int64, len(s.counts.byStatus)), Active: s.counts.active, Position: s.countsAt}
	for k, v := range s.counts.byStatus {
		out.ByStatus[k] = v
		out.Total += v
	}
	return out
}

// StatusName is the lower-case Twilio spelling of a status ("in-progress"),
// "unspecified" for none.
func StatusName(s callledgerv1.CallStatus) string {
	name, ok := strings.CutPrefix(s.String(), "CALL_STATUS_")
	if !ok {
		return strings.ToLower(s.String())
	}
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}
