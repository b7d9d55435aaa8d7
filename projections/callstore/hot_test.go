package callstore_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
)

// TestHotRecordsFoldAsTheDatabase folds the same batches into read models
// whose hot records hold everything, turn over at almost every write, or
// are reopened between batches (nothing hot): every record must be the
// same, whichever source the fold read it from.
func TestHotRecordsFoldAsTheDatabase(t *testing.T) {
	var l log
	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []callledgerv1.CallStatus{
		callledgerv1.CallStatus_CALL_STATUS_QUEUED, callledgerv1.CallStatus_CALL_STATUS_RINGING,
		callledgerv1.CallStatus_CALL_STATUS_IN_PROGRESS, callledgerv1.CallStatus_CALL_STATUS_COMPLETED,
	}
	var evs []eventstore.RecordedEvent
	for i := range 120 {
		parent := ""
		if i%3 == 1 {
			parent = sid(i - 1)
		}
		for _, st := range statuses {
			evs = append(evs, l.status(t, sid(i), parent, st, t0.Add(time.Duration(rng.IntN(600))*time.Second)))
		}
	}
	// Interleave the calls as delivery does, then cut into batches.
	rng.Shuffle(len(evs), func(i, j int) {
		if j > i-40 { // keep it local: later events of a call arrive seconds later
			evs[i], evs[j] = evs[j], evs[i]
		}
	})
	for i := range evs {
		evs[i].Position = eventstore.Position(i + 1)
	}
	var batches [][]eventstore.RecordedEvent
	for rest := evs; len(rest) > 0; {
		n := min(1+rng.IntN(7), len(rest))
		batches = append(batches, rest[:n])
		rest = rest[n:]
	}

	all := open(t, t.TempDir(), callstore.Options{})
	tiny := open(t, t.TempDir(), callstore.WithHotBytes(callstore.Options{}, 1))
	coldDir := t.TempDir()
	for _, b := range batches {
		apply(t, all, b...)
		apply(t, tiny, b...)
		cold, err := callstore.Open(coldDir, callstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		apply(t, cold, b...)
		if err := cold.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cold := open(t, coldDir, callstore.Options{})
	want := records(t, cold)
	if len(want) != 120 {
		t.Fatalf("%d records, want 120", len(want))
	}
	for name, s := range map[string]*callstore.Store{"all hot": all, "turning over": tiny} {
		got := records(t, s)
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d", name, len(got), len(want))
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Fatalf("%s: record %d differs:\n got %v\nwant %v", name, i, got[i], want[i])
			}
		}
	}
}

func records(t *testing.T, s *callstore.Store) []*statev1.CallRecord {
	t.Helper()
	var out []*statev1.CallRecord
	if err := s.Records(context.Background(), func(r *statev1.CallRecord) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}
