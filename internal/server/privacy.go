package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/secretfile"
	"github.com/callledger/callledger/internal/tlsfiles"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/keystore/keyservice"
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

// OfflineKEKFile is the key-encryption key file a command run on a stopped
// server opens dataDir's key store with: kekFile (--kek-file), or else the
// development KEK a development server left in dataDir — never a new one,
// which a server started with its --kek-file would refuse.
func OfflineKEKFile(dataDir, kekFile string) (string, error) {
	if kekFile != "" {
		return kekFile, nil
	}
	if _, err := os.Stat(DevKEKPath(dataDir)); err != nil {
		return "", fmt.Errorf("give --kek-file, the key-encryption key the server runs with (%s has no development key to use instead)", dataDir)
	}
	return DevKEKPath(dataDir), nil
}

// Privacy configures the sealing of personal data (docs/PRIVACY.md).
type Privacy struct {
	// KEKFile is the key-encryption key (--kek-file): 32 random bytes in
	// base64 (openssl rand -base64 32), readable by its owner only. Empty:
	// a KEK generated in DataDir (DevKEKPath), with a loud warning, and
	// only while the webhook listener is loopback (development, tests).
	KEKFile string
	// Unsealed stores personal data in the clear, as before sealing, and
	// opens nothing (--seal=false): such data cannot be erased by
	// destroying keys.
	Unsealed bool
	// KeyService is where a node on KurrentDB that holds no key store
	// (webhook and query replicas) gets its keys: the node that holds it
	// (--role all on the same --store) shares it over its gRPC listener.
	// Empty: the node's own key store, in DataDir.
	KeyService KeyService
}

// KeyService locates the key service of the node that holds the key store
// (docs/PRIVACY.md §4).
type KeyService struct {
	// Addr is that node's gRPC address (--key-service-addr).
	Addr string
	// TokenFile holds the API token of a principal with the scope
	// keys:use (--key-service-token-file), readable by its owner only;
	// empty with a client certificate that names such a principal.
	TokenFile string
	// TLSCA verifies the node's certificate (--key-service-tls-ca; empty:
	// the system's CAs); TLSCert and TLSKey are a client certificate
	// (--key-service-tls-cert, --key-service-tls-key). TLS is on with any
	// of them, and required beyond loopback: the answers are data keys.
	TLSCA, TLSCert, TLSKey string
}

// keysElsewhere reports whether the node's keys are another node's (a
// key service): it has no key store of its own to erase with.
func (s *Server) keysElsewhere() bool {
	return !s.cfg.Privacy.Unsealed && s.cfg.Privacy.KeyService.Addr != ""
}

// usesTLS reports whether the key service is reached over TLS.
func (k KeyService) usesTLS() bool { return k.TLSCA != "" || k.TLSCert != "" || k.TLSKey != "" }

// keyServiceClient is the key store of a node whose keys are another's:
// the key service at k.Addr, the connection closed with the server.
func (s *Server) keyServiceClient(k KeyService) (keystore.Store, error) {
	if !k.usesTLS() && !isLoopback(k.Addr) {
		return nil, fmt.Errorf("--key-service-addr %s is not a loopback address: reach it over TLS (--key-service-tls-ca, and --key-service-tls-cert/--key-service-tls-key for a client certificate), "+
			"since its answers are data keys", k.Addr)
	}
	creds := insecure.NewCredentials()
	if k.usesTLS() {
		cfg, err := tlsfiles.ClientConfig(tlsfiles.ClientFiles{CA: k.TLSCA, Cert: k.TLSCert, Key: k.TLSKey, Flag: "--key-service-tls"})
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if k.TokenFile != "" {
		tok, err := secretfile.Token("--key-service-token-file", k.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: tok, AllowPlaintext: !k.usesTLS()}))
	}
	conn, err := grpc.NewClient(k.Addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("--key-service-addr %s: %w", k.Addr, err)
	}
	s.onClose("key service connection", conn.Close)
	return keyservice.NewClient(conn, keyservice.ClientOptions{})
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
	if c.KeyService.Addr != "" {
		// Keys from the node that holds the key store, which erasures
		// destroy; the projection of a query replica opens with them too.
		if s.cfg.StoreURL == "" {
			return errors.New("--key-service-addr is for nodes that share a KurrentDB (--store): with the embedded store, the node's own key store is the one")
		}
		if s.cfg.Erasure.Retention > 0 {
			return errors.New("--retention erases with the key store: set it on the node that holds it, not on one with --key-service-addr")
		}
		keys, err := s.keyServiceClient(c.KeyService)
		if err != nil {
			return err
		}
		// No DeferSync: the key service's answers are durable already.
		s.personal = seal.NewEvents(keys)
		s.log.Info("sealing and opening personal data with keys of the key service", "addr", c.KeyService.Addr)
		return nil
	}
	if s.cfg.Role == RoleWebhooks && s.cfg.StoreURL != "" {
		return errors.New("--role webhooks on KurrentDB seals personal data with keys the projection's node must open: " +
			"set --key-service-addr to the gRPC address of the --role all node, whose key service shares its key store " +
			"(docs/PRIVACY.md §4), or run every node with --seal=false")
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
