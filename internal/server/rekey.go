package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/callledger/callledger/keystore"
)

// RekeyKeys rotates the key-encryption key of the key store of a stopped
// server's dataDir (callledger rekey): from kekFile's, or the development
// KEK when kekFile is empty, to newKEKFile's. docs/PRIVACY.md §5.
func RekeyKeys(ctx context.Context, dataDir, kekFile, newKEKFile string, log *slog.Logger) (keystore.RekeyResult, error) {
	var res keystore.RekeyResult
	if newKEKFile == "" {
		return res, errors.New("give --new-kek-file, the key-encryption key to rotate to (openssl rand -base64 32 > kek.new && chmod 600 kek.new)")
	}
	if _, err := os.Stat(KeyStorePath(dataDir)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("%s holds no key store (--data-dir names the server's data directory; a server that never sealed has none)", dataDir)
		}
		return res, fmt.Errorf("key store: %w", err)
	}
	oldFile, err := OfflineKEKFile(dataDir, kekFile)
	if err != nil {
		return res, err
	}
	old, err := keystore.LoadKEK(oldFile)
	if err != nil {
		return res, fmt.Errorf("--kek-file: %w", err)
	}
	next, err := keystore.LoadKEK(newKEKFile)
	if err != nil {
		return res, fmt.Errorf("--new-kek-file: %w", err)
	}
	log.Info("rotating the key-encryption key", "key_store", KeyStorePath(dataDir), "from", old.ID(), "to", next.ID())
	res, err = keystore.Rekey(ctx, KeyStorePath(dataDir), old, next, keystore.RekeyOptions{
		Options:  keystore.Options{Logger: log},
		Progress: func(n int) { log.Info("rekey: data keys wrapped under the new key-encryption key", "rewrapped", n) },
	})
	if err != nil {
		return res, fmt.Errorf("rekey (a running server holds its key store: stop it first): %w", err)
	}
	return res, nil
}
