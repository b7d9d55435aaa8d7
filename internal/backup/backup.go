// Package backup takes an online backup of the embedded ledger: a
// directory that `callledger serve --data-dir` starts on. The read model is
// copied first and the ledger last, so the copy's read model never claims
// an event its ledger lacks, and every event acknowledged before the
// backup started is in it (Pebble checkpoints: consistent, taken while
// appends go on).
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/callledger/callledger/eventstore"
)

// Ledger is the embedded event store's checkpoint
// (pebblestore.Store.Checkpoint).
type Ledger interface {
	Checkpoint(ctx context.Context, dir string) (eventstore.Position, error)
}

// ReadModel copies the read model that answers queries into root/<name>
// (callversions.Manager.Backup).
type ReadModel interface {
	Backup(root string) (name string, applied eventstore.Position, err error)
}

// KeyStore copies the key store that seals the ledger's personal data
// (keystore.Embedded.Checkpoint) into a directory it creates.
type KeyStore interface {
	Checkpoint(ctx context.Context, dir string) error
}

// Errors of a target the backup refuses.
var (
	// ErrTargetInvalid: the target is not an absolute path, or not a
	// directory.
	ErrTargetInvalid = errors.New("invalid backup target")
	// ErrTargetNotEmpty: the target holds something already; a backup
	// never writes over anything.
	ErrTargetNotEmpty = errors.New("backup target is not empty")
)

// Result describes a finished backup.
type Result struct {
	// Position: every event up to it is in the backup.
	Position eventstore.Position
	// ReadModel is the read model directory copied, empty when none was
	// (serve then rebuilds one); ReadModelApplied is how far it had got.
	ReadModel        string
	ReadModelApplied eventstore.Position
	Took             time.Duration
}

// Layout of a backup, that of a data directory.
const (
	ledgerDir    = "ledger"
	readModelDir = "projections/callstate"
	keysDir      = "keys"
)

// Take writes a backup into dir, which must be absolute and absent or
// empty. rm may be nil (no read model copied); keys, the key store, is
// copied after the ledger, so that it holds the key of every event the
// copied ledger holds (a key is durable before its first event is
// appended); nil when the ledger is not sealed. A read model that cannot be
// copied (corrupt, say) is left out with a warning: serve rebuilds it from
// the ledger. A failed backup removes what it wrote.
func Take(ctx context.Context, ledger Ledger, rm ReadModel, keys KeyStore, dir string, log *slog.Logger) (res Result, err error) {
	began := time.Now()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !filepath.IsAbs(dir) {
		return res, fmt.Errorf("%w: %q is not an absolute path (the directory is on the server's machine)", ErrTargetInvalid, dir)
	}
	created, err := prepare(dir)
	if err != nil {
		return res, err
	}
	defer func() {
		if err == nil {
			return
		}
		if created {
			_ = os.RemoveAll(dir)
			return
		}
		_ = os.RemoveAll(filepath.Join(dir, ledgerDir))
		_ = os.RemoveAll(filepath.Join(dir, "projections"))
		_ = os.RemoveAll(filepath.Join(dir, keysDir))
	}()
	if rm != nil {
		root := filepath.Join(dir, readModelDir)
		if err := os.MkdirAll(root, 0o750); err != nil {
			return res, fmt.Errorf("backup: %w", err)
		}
		name, applied, rerr := rm.Backup(root)
		switch {
		case rerr == nil:
			res.ReadModel, res.ReadModelApplied = name, applied
		case ctx.Err() != nil:
			return res, ctx.Err()
		default:
			log.Warn("backup without the read model; serve rebuilds it from the ledger", "err", rerr)
			_ = os.RemoveAll(filepath.Join(dir, "projections"))
		}
	}
	if res.Position, err = ledger.Checkpoint(ctx, filepath.Join(dir, ledgerDir)); err != nil {
		return res, fmt.Errorf("backup the ledger: %w", err)
	}
	if keys != nil {
		if err := keys.Checkpoint(ctx, filepath.Join(dir, keysDir)); err != nil {
			return res, fmt.Errorf("backup the key store: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	res.Took = time.Since(began)
	return res, nil
}

// prepare makes sure dir is an empty directory, creating it (and its
// parents) when absent; created says whether it did.
func prepare(dir string) (created bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return false, fmt.Errorf("create backup target: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("backup target: %w", err)
	case !fi.IsDir():
		return false, fmt.Errorf("%w: %s is not a directory", ErrTargetInvalid, dir)
	}
	d, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("backup target: %w", err)
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); !errors.Is(err, io.EOF) {
		if err == nil {
			return false, fmt.Errorf("%w: %s", ErrTargetNotEmpty, dir)
		}
		return false, fmt.Errorf("backup target: %w", err)
	}
	return false, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
