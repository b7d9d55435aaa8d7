package server

import (
	"context"

	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/eventstore/instrument"
	"github.com/callledger/callledger/internal/backup"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/services/admin"
)

// admin builds AdminService: backups of the embedded ledger and of the
// read model calls answers from, and erasures. On KurrentDB Backup answers
// FAILED_PRECONDITION (KurrentDB has its own backups).
func (s *Server) admin(calls *callversions.Manager, erasures *erasure.Service) *admin.Server {
	cfg := admin.Config{Logger: s.log, Principal: principal, Erasure: countedEraser{svc: erasures, metrics: s.tel.erasure}}
	if ledger, ok := instrument.Unwrap(s.store).(backup.Ledger); ok && s.cfg.StoreURL == "" {
		cfg.Backup = func(ctx context.Context, dir string) (backup.Result, error) {
			return backup.Take(ctx, ledger, calls, dir, s.log)
		}
	}
	return admin.New(cfg)
}
