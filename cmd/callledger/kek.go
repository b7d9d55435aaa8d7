package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/projections/rebuild"
	"github.com/callledger/callledger/seal"
)

// kekFlag is --kek-file, which serve and the commands that read personal
// data from a stopped server's data directory take alike.
type kekFlag struct{ file string }

func (k *kekFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&k.file, "kek-file", "", "key-encryption key that protects the keys of every call's personal data: a file of 32 random bytes in base64 "+
		"(openssl rand -base64 32 > kek && chmod 600 kek), readable by its owner only, kept off the data directory and its backups; "+
		"empty: a development key generated in <data-dir>/dev-kek (loopback --http-addr only)")
}

// openOffline opens the key store of a stopped server's dataDir for
// reading sealed events: with --kek-file, or the development KEK the
// server made, never a new one.
func (k *kekFlag) openOffline(dataDir string, log *slog.Logger) (*keystore.Embedded, error) {
	if _, err := os.Stat(server.KeyStorePath(dataDir)); err != nil {
		return nil, fmt.Errorf("the events are sealed, and %s holds no key store (--data-dir names the server's data directory): %w", dataDir, err)
	}
	file, err := server.OfflineKEKFile(dataDir, k.file)
	if err != nil {
		return nil, fmt.Errorf("the events are sealed: %w", err)
	}
	keys, err := server.OpenKeys(dataDir, file, log)
	if err != nil {
		return nil, fmt.Errorf("the events are sealed (a running server holds its key store: stop it first): %w", err)
	}
	return keys, nil
}

// lazyOpener opens sealed events with the key store of a stopped server,
// which it opens at the first sealed event: a log without any reads as
// before, without a KEK. Safe for concurrent use (a rebuild's decoders).
type lazyOpener struct {
	kek     *kekFlag
	dataDir string
	log     *slog.Logger

	mu     sync.Mutex
	keys   *keystore.Embedded
	events *seal.Events
	err    error
}

// Open opens ev's sealed parts (all of them when none is named).
func (l *lazyOpener) Open(ctx context.Context, ev *callledgerv1.Event, parts ...seal.Part) (seal.Opened, error) {
	if ev.GetSealed() == nil && ev.GetSealedRequest() == nil {
		return seal.Opened{}, nil
	}
	l.mu.Lock()
	if l.events == nil && l.err == nil {
		l.keys, l.err = l.kek.openOffline(l.dataDir, l.log)
		if l.err == nil {
			l.events = seal.NewEvents(l.keys)
		}
	}
	events, err := l.events, l.err
	l.mu.Unlock()
	if err != nil {
		return seal.Opened{}, err
	}
	return events.Open(ctx, ev, parts...)
}

// Close closes the key store if it was opened.
func (l *lazyOpener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		return nil
	}
	return l.keys.Close()
}

// openForFold opens the key store of a stopped server's dataDir when it
// has one, for the commands that fold the whole ledger (rebuild, export
// --from-ledger), and has opts open sealed events with it: a ledger written
// with sealing must be folded with its numbers, so a key store that does
// not open is an error. A directory without one (a ledger stored in the
// clear, or a node whose keys are another node's) folds until the first
// sealed event, where the context returned ends with errSealedWithoutKeys:
// a read model without its personal fields is no rebuild. The caller folds
// with that context, reports failures through foldFailure, and closes the
// store with the function returned.
func (k *kekFlag) openForFold(ctx context.Context, opts *rebuild.Options, dataDir string, log *slog.Logger) (context.Context, func(), error) {
	if _, err := os.Stat(server.KeyStorePath(dataDir)); errors.Is(err, fs.ErrNotExist) {
		fctx, cancel := context.WithCancelCause(ctx)
		opts.Personal = keyless{dataDir: dataDir, stop: cancel}
		return fctx, func() { cancel(nil) }, nil
	}
	keys, err := k.openOffline(dataDir, log)
	if err != nil {
		return nil, nil, err
	}
	opts.Personal = seal.NewEvents(keys)
	return ctx, func() { keys.Close() }, nil
}

// errSealedWithoutKeys ends a fold that met a sealed event with no key
// store to open it.
var errSealedWithoutKeys = errors.New("the ledger's events are sealed, and the data directory holds no key store to open them")

// keyless is the opener of a data directory without a key store: it stops
// the fold at the first sealed event.
type keyless struct {
	dataDir string
	stop    context.CancelCauseFunc
}

func (k keyless) Open(_ context.Context, ev *callledgerv1.Event, _ ...seal.Part) (seal.Opened, error) {
	if ev.GetSealed() == nil && ev.GetSealedRequest() == nil {
		return seal.Opened{}, nil
	}
	k.stop(fmt.Errorf("%w (%s): run this on the node that holds the key store (the one with --kek-file), "+
		"or let serve rebuild the read model of a node whose keys come from a key service when it starts; nothing was changed",
		errSealedWithoutKeys, k.dataDir))
	// The fold stops at the cancellation: no error to log per event until
	// then.
	return seal.Opened{}, nil
}

// foldFailure is err of a fold run with openForFold's context, or the
// reason that context ended.
func foldFailure(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errSealedWithoutKeys) {
		return cause
	}
	return err
}
