package server

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/seal"
)

// Where the key store and the development KEK live in the data directory.
const (
	keyStoreDir = "keys"
	devKEKFile  = "dev-kek"
)

// KeyStorePath is the key store of a server with data directory dataDir:
// beside the ledger, and there also when the ledger is on KurrentDB, since
// keys are never kept in the log they protect (docs/PRIVACY.md §4).
func KeyStorePath(dataDir string) string { return filepath.Join(dataDir, keyStoreDir) }

// DevKEKPath is where a server without --kek-file keeps its generated
// key-encryption key.
func DevKEKPath(dataDir string) string { return filepath.Join(dataDir, devKEKFile) }

// Privacy configures the sealing of personal data (docs/PRIVACY.md).
type Privacy struct {
	// KEKFile is the key-encryption key (--kek-file): 32 random bytes in
	// base64 (openssl rand -base64 32), readable by its owner only. Empty:
	// a KEK generated in DataDir (DevKEKPath), with a loud warning, and
	// only while the webhook listener is loopback (development, tests).
	KEKFile string
	// Unsealed stores personal data in the clear, as before sealing, and
	// opens nothing (--seal=false): such data cannot be erased by
	// destroying keys. Webhook replicas on KurrentDB need it until a key
	// store shared between nodes exists.
	Unsealed bool
}

// OpenKeys opens the key store of dataDir (KeyStorePath) with the KEK of
// kekFile or, when it is empty, the development KEK of dataDir, which it
// creates on first use, warning on log. Offline commands open the key
// store of a stopped server through it, as the server does.
func OpenKeys(dataDir, kekFile string, log *slog.Logger) (*keystore.Embedded, error) {
	var kek keystore.KEK
	if kekFile != "" {
		k, err := keystore.LoadKEK(kekFile)
		if err != nil {
			return nil, fmt.Errorf("--kek-file: %w", err)
		}
		kek = k
	} else {
		k, created, err := keystore.DevelopmentKEK(DevKEKPath(dataDir))
		if err != nil {
			return nil, fmt.Errorf("development key-encryption key: %w", err)
		}
		kek = k
		log.Warn("DEVELOPMENT KEY-ENCRYPTION KEY: no --kek-file, so the key that protects every call's personal data "+
			"is kept in the data directory; whoever copies the directory (or a backup of it) can read that data. "+
			"For production: openssl rand -base64 32 > kek && chmod 600 kek, and --kek-file kek (kept off the data directory and its backups).",
			"kek_file", DevKEKPath(dataDir), "created", created)
	}
	keys, err := keystore.Open(KeyStorePath(dataDir), kek, keystore.Options{})
	if errors.Is(err, keystore.ErrWrongKEK) {
		return nil, fmt.Errorf("key store %s: its keys are wrapped by another key-encryption key than --kek-file's "+
			"(or the development one): start with the KEK it was made with, or the one callledger rekey rotated it to: %w", KeyStorePath(dataDir), err)
	}
	if err != nil {
		return nil, fmt.Errorf("open key store: %w", err)
	}
	return keys, nil
}

// openKeys opens the key store the write path seals with and the readers
// open with, unless sealing is off.
func (s *Server) openKeys() error {
	c := s.cfg.Privacy
	if c.Unsealed {
		s.log.Warn("personal data is stored in the clear (--seal=false): erasing a caller's data will not reach what is stored now, until callledger seal has sealed it")
		return nil
	}
	if s.cfg.Role == RoleWebhooks && s.cfg.StoreURL != "" {
		return errors.New("--role webhooks on KurrentDB seals personal data with keys the projection's node must open, " +
			"which needs a key store shared between the nodes, and none is configured (docs/PRIVACY.md §4): " +
			"run every node with --seal=false, or one node with --role all")
	}
	if c.KEKFile == "" && !isLoopback(s.cfg.HTTP.Addr) {
		return fmt.Errorf("--kek-file is required when --http-addr %s is not a loopback address: it protects every call's personal data "+
			"(make one with: openssl rand -base64 32 > kek && chmod 600 kek; keep it off the data directory and its backups)", s.cfg.HTTP.Addr)
	}
	keys, err := OpenKeys(s.cfg.DataDir, c.KEKFile, s.log)
	if err != nil {
		return err
	}
	s.onClose("key store", keys.Close)
	s.keys = keys
	s.personal = seal.NewEvents(keys)
	return nil
}
