// Package admin is the gRPC adapter of the operator's actions:
// AdminService. Its methods act on the server's machine; the server's
// authorization policy admits only principals with the projections:admin
// scope, and Erase only those with personal:erase
// (internal/server/policy.go).
//
// Choices the contract leaves open:
//   - A backup target that is relative, or not a directory, is
//     INVALID_ARGUMENT; one that holds anything is ALREADY_EXISTS.
//   - One backup runs at a time; another is FAILED_PRECONDITION.
//   - A server without a backup of its own (KurrentDB holds the ledger)
//     answers FAILED_PRECONDITION, pointing at KurrentDB's procedure.
//   - Erase records the authenticated principal as the requester; a
//     server without erasure (none configured) answers
//     FAILED_PRECONDITION. An erasure that failed after it was journalled
//     is UNAVAILABLE: replaying the journal (serve's start, callledger
//     erase --replay) or asking again finishes it. The number asked for is
//     never logged.
package admin

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
	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/internal/backup"
	"github.com/callledger/callledger/services/rpcstatus"
)

// BackupFunc writes a backup into an absolute directory (backup.Take on
// the server's ledger and read model).
type BackupFunc func(ctx context.Context, dir string) (backup.Result, error)

// Eraser carries out erasures: *erasure.Service.
type Eraser interface {
	Erase(ctx context.Context, req erasure.Request) (erasure.Result, error)
	ReplayJournal(ctx context.Context, entries []erasure.Entry) (erasure.ReplayResult, error)
}

// Config wires a Server.
type Config struct {
	// Backup takes a backup; nil when the ledger is not the server's to
	// back up (KurrentDB).
	Backup BackupFunc
	// Erasure erases personal data; nil when the server has none.
	Erasure Eraser
	// ErasureElsewhere, with Erasure nil, tells callers where erasures
	// are made instead (a node whose keys are another node's).
	ErasureElsewhere string
	// Principal names the authenticated caller (false: none), recorded
	// as the erasure's requester.
	Principal func(ctx context.Context) (string, bool)
	Logger    *slog.Logger
}

// Server implements callledgerv1.AdminServiceServer.
type Server struct {
	callledgerv1.UnimplementedAdminServiceServer
	cfg     Config
	log     *slog.Logger
	errs    rpcstatus.Mapper
	backups sync.Mutex
}

var _ callledgerv1.AdminServiceServer = (*Server)(nil)

// KurrentDBBackupHint is what Backup answers on KurrentDB.
const KurrentDBBackupHint = "the ledger is in KurrentDB: back it up with KurrentDB's own procedure (docs/deploy-kurrentdb.md, Backups)"

// New builds the server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("component", "admin")
	return &Server{cfg: cfg, log: log, errs: rpcstatus.New(log, "retry")}
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) { callledgerv1.RegisterAdminServiceServer(g, s) }

// Backup writes a backup of the ledger into the request's directory.
func (s *Server) Backup(ctx context.Context, req *callledgerv1.BackupRequest) (*callledgerv1.BackupResponse, error) {
	if s.cfg.Backup == nil {
		return nil, status.Error(codes.FailedPrecondition, KurrentDBBackupHint)
	}
	if req.GetTargetDir() == "" {
		return nil, status.Error(codes.InvalidArgument, "target_dir is required")
	}
	if !s.backups.TryLock() {
		return nil, status.Error(codes.FailedPrecondition, "a backup is already running")
	}
	defer s.backups.Unlock()
	s.log.InfoContext(ctx, "backup started", "target_dir", req.GetTargetDir())
	res, err := s.cfg.Backup(ctx, req.GetTargetDir())
	switch {
	case errors.Is(err, backup.ErrTargetInvalid):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, backup.ErrTargetNotEmpty):
		return nil, status.Error(codes.AlreadyExists, err.Error()+": a backup never writes over anything")
	case err != nil:
		return nil, s.errs.Map(ctx, "Backup", err)
	}
	s.log.InfoContext(ctx, "backup done", "target_dir", req.GetTargetDir(), "position", res.Position,
		"read_model", res.ReadModel, "took", res.Took)
	return &callledgerv1.BackupResponse{
		Position: uint64(res.Position), ReadModel: res.ReadModel,
		ReadModelCheckpoint: uint64(res.ReadModelApplied), Took: durationpb.New(res.Took),
	}, nil
}

// Erase erases the personal data of a call's tree or of a number's calls.
func (s *Server) Erase(ctx context.Context, req *callledgerv1.EraseRequest) (*callledgerv1.EraseResponse, error) {
	if s.cfg.Erasure == nil {
		if s.cfg.ErasureElsewhere != "" {
			return nil, status.Error(codes.FailedPrecondition, s.cfg.ErasureElsewhere)
		}
		return nil, status.Error(codes.FailedPrecondition, "erasure is not configured on this server")
	}
	given := 0
	for _, set := range []bool{req.GetNumber() != "", req.GetCallSid() != "", len(req.GetReplay()) > 0} {
		if set {
			given++
		}
	}
	if given != 1 {
		return nil, status.Error(codes.InvalidArgument, "exactly one of number, call_sid and replay is required")
	}
	if len(req.GetReplay()) > 0 {
		return s.replay(ctx, req.GetReplay())
	}
	by := "anonymous"
	if s.cfg.Principal != nil {
		if p, ok := s.cfg.Principal(ctx); ok && p != "" {
			by = p
		}
	}
	res, err := s.cfg.Erasure.Erase(ctx, erasure.Request{Number: req.GetNumber(), CallSid: req.GetCallSid(), By: by})
	switch {
	case errors.Is(err, erasure.ErrInvalid):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, erasure.ErrNotFound):
		return nil, status.Error(codes.NotFound, err.Error())
	case err != nil && res.ID != "":
		s.log.ErrorContext(ctx, "erasure incomplete", "erasure_id", res.ID, "by", by, "err", err)
		return nil, status.Errorf(codes.Unavailable, "erasure %s is journalled but not finished: ask again, or it finishes when the journal is replayed", res.ID)
	case err != nil:
		return nil, s.errs.Map(ctx, "Erase", err)
	}
	s.log.InfoContext(ctx, "erasure done", "erasure_id", res.ID, "by", by, "subjects", len(res.Subjects),
		"calls", len(res.CallSids), "keys_destroyed", res.Keys.Destroyed, "plaintext_events", res.PlaintextEvents)
	return &callledgerv1.EraseResponse{
		ErasureId: res.ID, Subjects: int32(len(res.Subjects)), Calls: int32(len(res.CallSids)), CallSids: res.CallSids,
		PlaintextEvents: res.PlaintextEvents, Position: uint64(res.Position),
	}, nil
}

// maxReplay bounds the journal entries of one request.
const maxReplay = 10000

// replay carries out the entries of an erasure journal again.
func (s *Server) replay(ctx context.Context, in []*callledgerv1.ErasureJournalEntry) (*callledgerv1.EraseResponse, error) {
	if len(in) > maxReplay {
		return nil, status.Errorf(codes.InvalidArgument, "%d journal entries: at most %d a request", len(in), maxReplay)
	}
	entries := make([]erasure.Entry, len(in))
	for i, e := range in {
		entries[i] = erasure.Entry{ID: e.GetId(), At: e.GetAt().AsTime(), By: e.GetBy(), Subjects: e.GetSubjects()}
		if e.GetAt() == nil {
			entries[i].At = time.Time{}
		}
	}
	res, err := s.cfg.Erasure.ReplayJournal(ctx, entries)
	switch {
	case errors.Is(err, erasure.ErrInvalid):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, s.errs.Map(ctx, "Erase", err)
	}
	s.log.InfoContext(ctx, "erasure journal replayed", "entries", res.Entries, "replayed", res.Replayed, "subjects", res.Subjects)
	return &callledgerv1.EraseResponse{Replayed: int32(res.Replayed), Subjects: int32(res.Subjects)}, nil
}
