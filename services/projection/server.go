// Package projection is the gRPC adapter of the projection machinery:
// ProjectionService. It reports how far the call-state projection is
// behind the log and runs rebuilds beside the serving read model,
// streaming their progress.
//
// Choices the contract leaves open:
//   - lag_events is head - checkpoint; lag is the age (by its stored
//     creation time) of the first event after the checkpoint, so an idle
//     log shows no lag however old its last event is.
//   - A second RebuildProjection while one runs is FAILED_PRECONDITION.
//   - Progress messages are sent at most every Config.ProgressEvery; a
//     slow client sees fewer of them, never a stalled rebuild.
package projection

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/projections/rebuild"
	"github.com/callledger/callledger/services/rpcstatus"
)

// Projection is the versioned read model the service reports on and
// rebuilds. *callversions.Manager implements it.
type Projection interface {
	Version() uint64
	CodeVersion() uint64
	CurrentName() string
	Checkpoint(ctx context.Context) (eventstore.Position, error)
	CaughtUp() bool
	Rebuilding() bool
	Rebuild(ctx context.Context, progress func(rebuild.Progress)) error
}

// Log is the part of the event store the status reads.
type Log interface {
	Head(ctx context.Context) (eventstore.Position, error)
	ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error)
}

// Config wires a Server.
type Config struct {
	Projection Projection
	Log        Log
	Logger     *slog.Logger
	// ProgressEvery spaces RebuildProjection's progress messages (default
	// 500 ms).
	ProgressEvery time.Duration
	// Now is the clock of the lag (default time.Now).
	Now func() time.Time
}

// Server implements callledgerv1.ProjectionServiceServer.
type Server struct {
	callledgerv1.UnimplementedProjectionServiceServer
	cfg  Config
	errs rpcstatus.Mapper
}

var _ callledgerv1.ProjectionServiceServer = (*Server)(nil)

// New validates cfg and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Projection == nil || cfg.Log == nil {
		return nil, errors.New("projection: Projection and Log are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, errs: rpcstatus.New(cfg.Logger.With("component", "projection"), "retry")}, nil
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	callledgerv1.RegisterProjectionServiceServer(g, s)
}

// GetProjectionStatus reports the version and the lag.
func (s *Server) GetProjectionStatus(ctx context.Context, _ *callledgerv1.GetProjectionStatusRequest) (*callledgerv1.GetProjectionStatusResponse, error) {
	p := s.cfg.Projection
	resp := &callledgerv1.GetProjectionStatusResponse{
		Version:     p.Version(),
		CodeVersion: p.CodeVersion(),
		ReadModel:   p.CurrentName(),
		CaughtUp:    p.CaughtUp(),
		Rebuilding:  p.Rebuilding(),
		Lag:         durationpb.New(0),
	}
	lag, err := projections.MeasureLag(ctx, s.cfg.Log, p, s.cfg.Now())
	if err != nil {
		return nil, s.fail(ctx, "GetProjectionStatus", err)
	}
	resp.Checkpoint, resp.Head, resp.LagEvents = uint64(lag.Checkpoint), uint64(lag.Head), lag.Positions
	resp.Lag = durationpb.New(lag.Age)
	return resp, nil
}

// RebuildProjection rebuilds beside the serving read model and streams
// the progress until the switch.
func (s *Server) RebuildProjection(_ *callledgerv1.RebuildProjectionRequest, stream grpc.ServerStreamingServer[callledgerv1.RebuildProjectionResponse]) error {
	ctx := stream.Context()
	var (
		mu     sync.Mutex
		latest rebuild.Progress
		fresh  = make(chan struct{}, 1)
		done   = make(chan error, 1)
	)
	go func() {
		done <- s.cfg.Projection.Rebuild(ctx, func(p rebuild.Progress) {
			mu.Lock()
			latest = p
			mu.Unlock()
			select {
			case fresh <- struct{}{}:
			default:
			}
		})
	}()
	send := func() error {
		mu.Lock()
		p := latest
		mu.Unlock()
		if p.Phase == "" {
			return nil
		}
		return stream.Send(progressMessage(p))
	}
	tick := time.NewTicker(s.cfg.ProgressEvery)
	defer tick.Stop()
	var lastPhase rebuild.Phase
	for {
		select {
		case err := <-done:
			if err != nil {
				return s.fail(ctx, "RebuildProjection", err)
			}
			return send() // the last progress: switched
		case <-fresh:
			// A new phase is sent at once; progress within a phase waits
			// for the tick.
			mu.Lock()
			phase := latest.Phase
			mu.Unlock()
			if phase != lastPhase {
				lastPhase = phase
				if err := send(); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := send(); err != nil {
				return err
			}
		}
	}
}

func progressMessage(p rebuild.Progress) *callledgerv1.RebuildProjectionResponse {
	m := &callledgerv1.RebuildProjectionResponse{
		Phase:           phaseOf(p.Phase),
		Events:          p.Events,
		Position:        uint64(p.Position),
		Target:          uint64(p.Target),
		Calls:           uint64(p.Calls),
		Elapsed:         durationpb.New(p.Elapsed),
		EventsPerSecond: p.Rate(),
		Eta:             durationpb.New(p.ETA()),
	}
	return m
}

func phaseOf(p rebuild.Phase) callledgerv1.RebuildPhase {
	switch p {
	case rebuild.PhaseFold:
		return callledgerv1.RebuildPhase_REBUILD_PHASE_FOLD
	case rebuild.PhaseWrite, rebuild.PhaseDone:
		return callledgerv1.RebuildPhase_REBUILD_PHASE_WRITE
	case callversions.PhaseCatchUp:
		return callledgerv1.RebuildPhase_REBUILD_PHASE_CATCH_UP
	case callversions.PhaseSwitched:
		return callledgerv1.RebuildPhase_REBUILD_PHASE_SWITCHED
	default:
		return callledgerv1.RebuildPhase_REBUILD_PHASE_UNSPECIFIED
	}
}

// fail maps an error onto a status: a rebuild already running gets a
// message written here, the rest are answered as in every service (see
// rpcstatus).
func (s *Server) fail(ctx context.Context, method string, err error) error {
	if errors.Is(err, callversions.ErrBusy) {
		return status.Error(codes.FailedPrecondition, "a rebuild is already running")
	}
	return s.errs.Map(ctx, method, err)
}
