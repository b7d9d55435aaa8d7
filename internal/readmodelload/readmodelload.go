// Package readmodelload writes a call-state read model of many calls
// straight through the fold, as the projection runner would build it,
// where a server on the same data directory finds it: a large read model
// in seconds, for the GetCall benchmarks, where appending the events to the
// ledger and letting the server project them takes minutes. The ledger
// stays empty; only queries answered from the read model (GetCall,
// ListCalls) see the calls.
package readmodelload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/projections/callstore"
)

// SID is the CallSid of the i-th call (from 0) that Load writes.
func SID(i int) string { return fmt.Sprintf("CA%032x", i+1) }

// Dir is where Load writes the read model of a server whose data
// directory is dataDir: the current version of the call-state read model,
// which the server opens as it is.
func Dir(dataDir string) string {
	return filepath.Join(server.ProjectionRoot(dataDir), fmt.Sprintf("v%d", callstore.Version))
}

// Load writes into dataDir the read model of n calls: for every two calls
// one completed call (SID(2k)) with one answered child (SID(2k+1)), so
// that GetCall of any of them answers both legs. Each call is one status
// callback at its own position, from 1 to n, the read model's checkpoint.
// A data directory that has a read model of this version already is
// refused: the calls would land on top of it.
func Load(ctx context.Context, dataDir string, n int) (err error) {
	if n <= 0 {
		return fmt.Errorf("read model of %d calls: want at least one", n)
	}
	if _, err := os.Stat(Dir(dataDir)); !errors.Is(err, fs.ErrNotExist) {
		if err != nil {
			return fmt.Errorf("read model %s: %w", Dir(dataDir), err)
		}
		return fmt.Errorf("read model %s exists already: load into an empty data directory", Dir(dataDir))
	}
	s, err := callstore.Open(Dir(dataDir), callstore.Options{})
	if err != nil {
		return fmt.Errorf("open the read model: %w", err)
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close the read model: %w", cerr)
		}
	}()
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	batch := make([]eventstore.RecordedEvent, 0, 4096)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.Apply(ctx, eventstore.Batch{Events: batch, Checkpoint: batch[len(batch)-1].Position}); err != nil {
			return fmt.Errorf("apply calls up to position %d: %w", batch[len(batch)-1].Position, err)
		}
		batch = batch[:0]
		return nil
	}
	for i := range n {
		sid, parent := SID(i), ""
		if i%2 == 1 {
			parent = SID(i - 1)
		}
		d := int64(30 + i%600)
		at := base.Add(time.Duration(i) * time.Second)
		rec, err := eventcodec.Encode(&callledgerv1.Event{
			EventId: uuid.NewString(), CallSid: sid, Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK,
			ReceivedAt: timestamppb.New(at), ReportedAt: timestamppb.New(at),
			Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
				Status: callledgerv1.CallStatus_CALL_STATUS_COMPLETED, StatusRaw: "completed", ParentCallSid: parent,
				AccountSid: "AC00000000000000000000000000000001", Direction: "outbound-api", From: "+14155550100", To: "+14155550101",
				CallDurationSeconds: &d,
			}},
		})
		if err != nil {
			return fmt.Errorf("encode call %s: %w", sid, err)
		}
		batch = append(batch, eventstore.RecordedEvent{
			ID: rec.ID, Type: rec.Type, Stream: eventcodec.CallStream(sid), Position: eventstore.Position(i + 1), Data: rec.Data,
		})
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
