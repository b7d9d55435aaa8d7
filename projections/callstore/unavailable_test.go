package callstore_test

import (
	"context"
	"errors"
	"iter"
	"slices"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/twilio"
)

// flakyKeys opens sealed events by setting From, after failing the first
// fail times as a key service out of reach does.
type flakyKeys struct{ fail int }

func (f *flakyKeys) Open(_ context.Context, ev *callledgerv1.Event, _ ...seal.Part) (seal.Opened, error) {
	if f.fail > 0 {
		f.fail--
		return seal.Opened{}, keystore.ErrUnavailable
	}
	ev.GetCallStatusReported().From = "+15555550155"
	return seal.Opened{}, nil
}

// TestUnavailableKeysAreRetried: a batch whose keys cannot be had now is
// not applied (the runner applies it again), rather than folded without
// its personal fields for good.
func TestUnavailableKeysAreRetried(t *testing.T) {
	keys := &flakyKeys{fail: 1}
	s := open(t, t.TempDir(), callstore.Options{Personal: keys})
	ev := &callledgerv1.Event{EventId: uuid.NewString(), CallSid: sid(1), Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK,
		ReceivedAt: timestamppb.New(t0), ReportedAt: timestamppb.New(t0), Derivation: twilio.Derivation,
		Sealed: &callledgerv1.Sealed{Subject: sid(1), KeyId: 1, Nonce: make([]byte, 12), Ciphertext: []byte("sealed")},
		Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
			Status: completed, AccountSid: "AC1", Direction: "inbound"}}}
	rec, err := eventcodec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	batch := eventstore.Batch{Checkpoint: 1, Events: []eventstore.RecordedEvent{
		{ID: rec.ID, Type: rec.Type, Stream: eventcodec.CallStream(sid(1)), Position: 1, Data: rec.Data}}}
	if err := s.Apply(context.Background(), batch); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Apply with the keys out of reach: %v, want ErrUnavailable", err)
	}
	if cp, err := s.Checkpoint(context.Background()); err != nil || cp != 0 {
		t.Fatalf("checkpoint %d after a failed batch, %v", cp, err)
	}
	if err := s.Apply(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	tree, err := s.Tree(context.Background(), sid(1))
	if err != nil {
		t.Fatal(err)
	}
	if tree.Call.GetFrom() != "+15555550155" {
		t.Errorf("the call applied again: from %q, want its number", tree.Call.GetFrom())
	}
}

// prefetching opens like flakyKeys and counts its prefetches; it fails
// them while down.
type prefetching struct {
	flakyKeys
	down       bool
	prefetches [][]*callledgerv1.Event
}

func (p *prefetching) Prefetch(_ context.Context, evs iter.Seq[*callledgerv1.Event]) error {
	if p.down {
		return keystore.ErrUnavailable
	}
	p.prefetches = append(p.prefetches, slices.Collect(evs))
	return nil
}

// TestBatchKeysPrefetched: the keys of a batch's sealed events are asked
// for once, before they are opened; a prefetch that cannot be answered now
// leaves the batch to be applied again.
func TestBatchKeysPrefetched(t *testing.T) {
	keys := &prefetching{down: true}
	s := open(t, t.TempDir(), callstore.Options{Personal: keys})
	var batch eventstore.Batch
	for i := range 3 {
		ev := &callledgerv1.Event{EventId: uuid.NewString(), CallSid: sid(i + 1), Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK,
			ReceivedAt: timestamppb.New(t0), ReportedAt: timestamppb.New(t0), Derivation: twilio.Derivation,
			Sealed: &callledgerv1.Sealed{Subject: sid(i + 1), KeyId: 1, Nonce: make([]byte, 12), Ciphertext: []byte("sealed")},
			Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
				Status: completed, AccountSid: "AC1", Direction: "inbound"}}}
		rec, err := eventcodec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		batch.Events = append(batch.Events, eventstore.RecordedEvent{ID: rec.ID, Type: rec.Type, Stream: eventcodec.CallStream(sid(i + 1)),
			Position: eventstore.Position(i + 1), Data: rec.Data})
	}
	batch.Checkpoint = 3
	if err := s.Apply(context.Background(), batch); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Apply with the prefetch out of reach: %v, want ErrUnavailable", err)
	}
	keys.down = false
	if err := s.Apply(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if len(keys.prefetches) != 1 || len(keys.prefetches[0]) != 3 {
		t.Fatalf("prefetches %v, want one of the 3 events", keys.prefetches)
	}
	for i := range 3 {
		tree, err := s.Tree(context.Background(), sid(i+1))
		if err != nil || tree.Call.GetFrom() != "+15555550155" {
			t.Errorf("call %d: %v, %v", i+1, tree.Call, err)
		}
	}
}
