package server

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/callledger/callledger/internal/privatefs"
)

// readModelSourceFile, in <data-dir>/projections, names the event store
// the read models there fold: their checkpoints are that store's positions,
// which mean nothing in another.
const readModelSourceFile = "store"

// StoreIdentity is how a data directory's read model names the event
// store it folds: "embedded", or the scheme and the sorted hosts of a
// KurrentDB connection string (never its credentials or options).
func StoreIdentity(storeURL string) string {
	if storeURL == "" {
		return "embedded"
	}
	scheme, rest, _ := strings.Cut(storeURL, "://")
	authority, _, _ := strings.Cut(rest, "?")
	authority, _, _ = strings.Cut(authority, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		authority = authority[i+1:]
	}
	hosts := strings.Split(strings.ToLower(authority), ",")
	slices.Sort(hosts)
	return "kurrentdb " + strings.ToLower(scheme) + "://" + strings.Join(hosts, ",")
}

// ClaimReadModel makes the read model of dataDir the one of the store
// storeURL names: a read model that folded another store (the data
// directory pointed at a new --store without callledger copy, or a copy
// of another) is moved aside, so that a new one is built from this store
// instead of resuming at positions of the other; it returns where it went.
// A read model that does not say which store it folds (written before
// this check existed) is taken for this store's.
func ClaimReadModel(dataDir, storeURL string, log *slog.Logger) (movedTo string, err error) {
	root := filepath.Join(dataDir, "projections")
	path := filepath.Join(root, readModelSourceFile)
	want := StoreIdentity(storeURL)
	got, err := readModelStore(dataDir)
	switch {
	case err != nil:
		return "", err
	case got == want:
		return "", nil
	case got != "":
		if movedTo, err = moveReadModelAside(dataDir, "other-store"); err != nil {
			return "", err
		}
		log.Warn("the read model folded another event store; it is moved aside and a new one is built from this store",
			"read_model_store", got, "store", want, "moved_to", movedTo)
	}
	if err := os.MkdirAll(root, privatefs.DirMode); err != nil {
		return movedTo, fmt.Errorf("read model: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(want+"\n"), 0o600); err != nil {
		return movedTo, fmt.Errorf("read model: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return movedTo, fmt.Errorf("read model: %w", err)
	}
	return movedTo, nil
}

// readModelStore is the store the read model of dataDir says it folds;
// "" when it says none.
func readModelStore(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "projections", readModelSourceFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read model: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// moveReadModelAside renames the projections of dataDir, whose checkpoints
// count another store's positions, out of the server's way, to
// projections.<why>-<time>, and returns their new path; "" when there are
// none.
func moveReadModelAside(dataDir, why string) (string, error) {
	dir := filepath.Join(dataDir, "projections")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	to := filepath.Join(dataDir, "projections."+why+"-"+time.Now().UTC().Format("20060102T150405.000Z"))
	if err := os.Rename(dir, to); err != nil {
		return "", fmt.Errorf("move the read model of another event store out of the way: %w", err)
	}
	return to, nil
}
