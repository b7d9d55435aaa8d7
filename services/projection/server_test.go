package projection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/services/projection"
)

// failBound bounds every wait: reaching it is a failure.
const failBound = 20 * time.Second

// env is ProjectionService over loopback gRPC on a real log and a real
// versioned read model, with n calls in the log.
type env struct {
	log    *pebblestore.Store
	calls  *callversions.Manager
	client callledgerv1.ProjectionServiceClient
	head   eventstore.Position
}

func newEnv(t *testing.T, n int, beforeSwitch func()) *env {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	log, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	e := &env{log: log}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		sid := fmt.Sprintf("CA%032x", i+1)
		rec, err := eventcodec.Encode(&callledgerv1.Event{
			EventId: uuid.NewString(), CallSid: sid, Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK,
			ReceivedAt: timestamppb.New(at), ReportedAt: timestamppb.New(at),
			Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{
				Status: callledgerv1.CallStatus_CALL_STATUS_RINGING, StatusRaw: "ringing",
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		res, err := log.Append(context.Background(), eventcodec.CallStream(sid), eventstore.Any(), rec)
		if err != nil {
			t.Fatal(err)
		}
		e.head = res.Position
	}
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	e.calls, err = callversions.Open(ctx, callversions.Config{Root: filepath.Join(t.TempDir(), "callstate"), Log: log, Logger: quiet, BeforeSwitch: beforeSwitch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.calls.Close() })
	if err := e.calls.WaitFor(ctx, e.head); err != nil {
		t.Fatal(err)
	}
	srv, err := projection.New(projection.Config{Projection: e.calls, Log: log, Logger: quiet, ProgressEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.client = callledgerv1.NewProjectionServiceClient(grpctest.Serve(t, srv.Register))
	return e
}

// TestStatusOfACurrentProjection: a projection that has applied the whole
// log reports the code's version, its checkpoint at the head, and no lag.
func TestStatusOfACurrentProjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 20, nil)
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	st, err := e.client.GetProjectionStatus(ctx, &callledgerv1.GetProjectionStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetVersion() != callstore.Version || st.GetCodeVersion() != callstore.Version || st.GetRebuilding() {
		t.Errorf("version %d, code version %d, rebuilding %v; want %d, %d, false", st.GetVersion(), st.GetCodeVersion(), st.GetRebuilding(), callstore.Version, callstore.Version)
	}
	if st.GetCheckpoint() != uint64(e.head) || st.GetHead() != uint64(e.head) || st.GetLagEvents() != 0 || st.GetLag().AsDuration() != 0 {
		t.Errorf("checkpoint %d, head %d, lag %d events / %v; want both at %d and no lag",
			st.GetCheckpoint(), st.GetHead(), st.GetLagEvents(), st.GetLag().AsDuration(), e.head)
	}
}

// TestRebuildStreamsItsPhasesAndSwitches: a rebuild reports its phases in
// order, ends switched at the head, and the status then names the new read
// model; a second rebuild asked for while the first waits to switch is
// FAILED_PRECONDITION.
func TestRebuildStreamsItsPhasesAndSwitches(t *testing.T) {
	t.Parallel()
	atSwitch, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, 50, func() {
		close(atSwitch)
		<-release
	})
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	before, err := e.client.GetProjectionStatus(ctx, &callledgerv1.GetProjectionStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.client.RebuildProjection(ctx, &callledgerv1.RebuildProjectionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-atSwitch:
	case <-ctx.Done():
		t.Fatal("the rebuild never reached its switch")
	}
	if _, err := drain(e.client.RebuildProjection(ctx, &callledgerv1.RebuildProjectionRequest{})); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("a second rebuild during the first: %v, want FAILED_PRECONDITION", err)
	}
	close(release)
	phases, err := drain(stream, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last callledgerv1.RebuildPhase
	for _, m := range phases {
		if m.GetPhase() < last {
			t.Errorf("phase %v after %v", m.GetPhase(), last)
		}
		last = m.GetPhase()
	}
	if len(phases) == 0 || last != callledgerv1.RebuildPhase_REBUILD_PHASE_SWITCHED {
		t.Fatalf("phases %v, want them to end with SWITCHED", phases)
	}
	if end := phases[len(phases)-1]; end.GetTarget() != uint64(e.head) {
		t.Errorf("switched at %d, head %d", end.GetTarget(), e.head)
	}
	after, err := e.client.GetProjectionStatus(ctx, &callledgerv1.GetProjectionStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if after.GetReadModel() == before.GetReadModel() || after.GetRebuilding() || after.GetCheckpoint() != uint64(e.head) {
		t.Errorf("after the rebuild: read model %q (was %q), rebuilding %v, checkpoint %d; want a new one, done, at %d",
			after.GetReadModel(), before.GetReadModel(), after.GetRebuilding(), after.GetCheckpoint(), e.head)
	}
}

// drain reads a RebuildProjection stream to its end.
func drain(stream grpc.ServerStreamingClient[callledgerv1.RebuildProjectionResponse], err error) ([]*callledgerv1.RebuildProjectionResponse, error) {
	if err != nil {
		return nil, err
	}
	var out []*callledgerv1.RebuildProjectionResponse
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}
