package server

import (
	"context"
	"fmt"
	"os"

	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/eventstore/instrument"
	"github.com/callledger/callledger/internal/backup"
	"github.com/callledger/callledger/internal/privatefs"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/services/admin"
)

// admin builds AdminService: backups of the embedded ledger and of the
// read model calls answers from, and erasures. On KurrentDB Backup answers
// FAILED_PRECONDITION (KurrentDB has its own backups).
func (s *Server) admin(calls *callversions.Manager, erasures *erasure.Service) *admin.Server {
	cfg := admin.Config{Logger: s.log, Principal: principal}
	if erasures != nil {
		cfg.Erasure = countedEraser{svc: erasures, metrics: s.tel.erasure}
	} else {
		cfg.ErasureElsewhere = "this node reads its keys from the key service of " + s.cfg.Privacy.KeyService.Addr +
			": erase on that node, which holds the key store; this node's read model follows the erasure"
	}
	if ledger, ok := instrument.Unwrap(s.store).(backup.Ledger); ok && s.cfg.StoreURL == "" {
		cfg.Backup = func(ctx context.Context, dir string) (backup.Result, error) {
			var keys backup.KeyStore
			if s.keys != nil {
				keys = s.keys
			}
			res, err := backup.Take(ctx, ledger, calls, keys, dir, s.log)
			if err != nil || s.keys == nil || s.cfg.Privacy.KEKFile != "" {
				return res, err
			}
			// The development KEK lives in the data directory: the backup,
			// a data directory, gets it too. A KEK file is kept off backups.
			kek, err := os.ReadFile(DevKEKPath(s.cfg.DataDir))
			if err != nil {
				return res, fmt.Errorf("backup the development key-encryption key: %w", err)
			}
			if err := privatefs.WriteFile(DevKEKPath(dir), kek); err != nil {
				return res, fmt.Errorf("backup the development key-encryption key: %w", err)
			}
			return res, nil
		}
	}
	return admin.New(cfg)
}
