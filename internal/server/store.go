package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/pebblestore"
)

// storeOpenTimeout bounds the first contact with KurrentDB, so that a wrong
// address fails the start with a message instead of hanging.
const storeOpenTimeout = 30 * time.Second

// StoreOptions tune OpenStore.
type StoreOptions struct {
	// Logger receives the store's messages; default discard.
	Logger *slog.Logger
	// OnGroupCommit, when set, is told of every group commit of the
	// embedded store (KurrentDB has none): the appends that shared one
	// fsync, the events written, and the time to write and sync them. It
	// runs on the committer's goroutine and must be quick.
	OnGroupCommit func(appends, events int, took time.Duration)
	// CacheBytes is the embedded store's block cache; zero: its default
	// (pebblestore.Options.CacheSize).
	CacheBytes int64
	// BeforeSync is the embedded store's commit barrier
	// (pebblestore.Options.BeforeSync); KurrentDB has none, so writers to
	// it make their keys durable themselves.
	BeforeSync func() error
}

// OpenStore opens the event log that storeURL names: the embedded Pebble
// store in <dataDir>/ledger when it is empty, KurrentDB for an esdb:// or
// esdb+discover:// connection string. The server and every command that
// reads or writes the ledger go through it, so that they all accept the
// same --store.
//
// A KurrentDB connection string is checked before use, and the server must
// answer once: a typo fails the start with a message that says what is
// wrong, rather than a server that answers 503 forever.
func OpenStore(ctx context.Context, storeURL, dataDir string, opts StoreOptions) (eventstore.Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if storeURL == "" {
		dir := filepath.Join(dataDir, "ledger")
		po := pebblestore.Options{Logger: logger, CacheSize: opts.CacheBytes, BeforeSync: opts.BeforeSync}
		if f := opts.OnGroupCommit; f != nil {
			po.OnCommit = func(ci pebblestore.CommitInfo) { f(ci.Appends, ci.Events, ci.Duration) }
		}
		s, err := pebblestore.OpenContext(ctx, dir, po)
		if errors.Is(err, pebblestore.ErrCorrupt) || pebble.IsCorruptionError(err) {
			// The ledger is the source of truth: never start over it.
			return nil, fmt.Errorf("the ledger in %s is damaged; the server will not start on it. "+
				"Run `callledger check --data-dir %s` to see what is wrong, and restore a backup (`callledger backup`) if need be: %w",
				dir, dataDir, err)
		}
		if err != nil {
			return nil, fmt.Errorf("open embedded event store %s: %w", dir, err)
		}
		return s, nil
	}
	if err := checkStoreURL(storeURL, logger); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, storeOpenTimeout)
	defer cancel()
	s, err := kurrentdb.Open(ctx, storeURL, kurrentdb.Options{Logger: logger})
	switch {
	case errors.Is(err, eventstore.ErrInvalidArgument):
		return nil, fmt.Errorf("--store %s: %w", redactStoreURL(storeURL), err)
	case err != nil:
		hint := ""
		if q := storeQuery(storeURL); !strings.EqualFold(q.Get("tls"), "false") {
			hint = " (TLS is on unless the connection string says tls=false; a server started with --insecure needs tls=false)"
		}
		return nil, fmt.Errorf("--store %s: KurrentDB did not answer%s: %w", redactStoreURL(storeURL), hint, err)
	}
	return s, nil
}

// checkStoreURL refuses what the KurrentDB client would misread or reject
// with a vaguer message, and warns about settings that are silently
// ignored.
func checkStoreURL(storeURL string, logger *slog.Logger) error {
	shown := redactStoreURL(storeURL)
	scheme, rest, ok := strings.Cut(storeURL, "://")
	if !ok {
		return fmt.Errorf("--store %s: want empty (the embedded store) or a KurrentDB connection string such as esdb://localhost:2113?tls=false", shown)
	}
	switch strings.ToLower(scheme) {
	case "esdb", "esdb+discover":
	case "kurrentdb", "kurrent", "kurrentdb+discover", "kurrent+discover":
		return fmt.Errorf("--store %s: the KurrentDB client callledger uses accepts esdb:// and esdb+discover:// only; "+
			"write the same address as esdb://…", shown)
	default:
		return fmt.Errorf("--store %s: unknown scheme %q: want esdb:// (one node, or several gossip seeds "+
			"separated by commas) or esdb+discover:// (a cluster found through DNS)", shown, scheme)
	}
	authority, _, _ := strings.Cut(rest, "?")
	authority, _, _ = strings.Cut(authority, "/")
	if _, hosts, found := strings.Cut(authority, "@"); found {
		authority = hosts
	}
	if authority == "" {
		return fmt.Errorf("--store %s: no host", shown)
	}
	q := storeQuery(storeURL)
	if strings.Contains(rest, "@") && strings.EqualFold(q.Get("tls"), "false") {
		logger.Warn("--store has credentials and tls=false: the KurrentDB client sends credentials only over TLS, " +
			"so these are ignored (an insecure server does not check them)")
	}
	return nil
}

// storeQuery returns the query parameters of a connection string, with
// keys in lower case (the client reads them case-insensitively).
func storeQuery(storeURL string) url.Values {
	_, query, _ := strings.Cut(storeURL, "?")
	parsed, _ := url.ParseQuery(query)
	out := url.Values{}
	for k, v := range parsed {
		out[strings.ToLower(k)] = v
	}
	return out
}

// redactStoreURL hides the password of a connection string, for messages
// and logs.
func redactStoreURL(storeURL string) string {
	scheme, rest, ok := strings.Cut(storeURL, "://")
	if !ok {
		return storeURL
	}
	at := strings.LastIndex(strings.SplitN(rest, "?", 2)[0], "@")
	if at < 0 {
		return storeURL
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return storeURL
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// storeKind names the backend in the start-up log line.
func storeKind(storeURL string) string {
	if storeURL == "" {
		return "embedded"
	}
	return "kurrentdb"
}

// ProjectionRoot is the directory of every version of the call-state read
// model in dataDir; each version (and each rebuild) has a directory of its
// own in it.
func ProjectionRoot(dataDir string) string {
	return filepath.Join(dataDir, "projections", "callstate")
}

// pinger is a store with a cheaper liveness check than Head.
type pinger interface {
	Ping(ctx context.Context) error
}

// storeReady is the readiness check of a store: it must answer a read now.
// While KurrentDB is unreachable it fails, and /readyz with it, so that a
// load balancer sends Twilio's retries to a replica that can write; it
// passes again as soon as the store answers, without a restart.
func storeReady(store eventstore.Store) func(context.Context) error {
	if p, ok := store.(pinger); ok {
		return p.Ping
	}
	return func(ctx context.Context) error {
		_, err := store.Head(ctx)
		return err
	}
}
