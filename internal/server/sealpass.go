package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/seal"
)

// SealReport says what SealLedger did to the events of the ledger.
type SealReport struct {
	// Read is every event of the ledger.
	Read uint64
	// Sealed were stored in the clear and are sealed now.
	Sealed uint64
	// Redacted were stored in the clear and belong to calls erased
	// since: their personal fields are gone, as a sealed event's would be.
	Redacted uint64
	// AlreadySealed were sealed when stored (or by an earlier pass);
	// Clear carry no personal data; Undecodable are events the pass could
	// not read, left as they are (the fold skips them too).
	AlreadySealed, Clear, Undecodable uint64
}

// SealLedger seals, in place, the personal data of the events a server
// stored in the clear (before sealing existed, or with --seal=false) in
// the embedded ledger of dataDir, which no server may hold: each such
// event keeps its position, stream, revision, ID and type, and opening it
// gives back the event as it was stored (checked for every event before
// it is written). Its keys go into the key store of dataDir, made with
// kekFile when the server never sealed (without kekFile, the development
// KEK a development server left in dataDir, never a new one); an event
// of a call erased since loses its personal fields instead. The log is
// then scrubbed, so that no file of it holds the clear events any more.
// Interrupted, it is safe to run again. docs/PRIVACY.md §7.
func SealLedger(ctx context.Context, dataDir, kekFile string, log *slog.Logger) (SealReport, error) {
	dir := filepath.Join(dataDir, "ledger")
	if _, err := os.Stat(dir); err != nil {
		return SealReport{}, fmt.Errorf("seal: no embedded ledger in %s: %w", dataDir, err)
	}
	keys, err := openKeysToSeal(dataDir, kekFile, log)
	if err != nil {
		return SealReport{}, fmt.Errorf("seal: %w", err)
	}
	defer keys.Close()
	p := &sealPass{events: seal.NewEvents(keys, seal.DeferSync()), log: log}
	_, err = pebblestore.Rewrite(ctx, dir, pebblestore.RewriteOptions{
		Logger:       log,
		BeforeCommit: func() error { return keys.Sync(ctx) },
		Progress: func(r pebblestore.RewriteReport) {
			log.Info("sealing the ledger", "events_read", r.Read, "events_rewritten", r.Rewritten)
		},
	}, func(rec *eventstore.RecordedEvent) ([]byte, error) { return p.seal(ctx, rec) })
	if errors.Is(err, pebblestore.ErrLocked) {
		return p.report(), fmt.Errorf("seal: %w: a server (or another command) holds %s; stop it first", err, dataDir)
	}
	if err != nil {
		return p.report(), fmt.Errorf("seal: %w", err)
	}
	return p.report(), nil
}

// openKeysToSeal opens the key store of a stopped server's dataDir for
// sealing what it stored in the clear: with kekFile, making the store if
// the server never sealed, or else with the development KEK a development
// server left in dataDir — never a new one, which would seal a production
// ledger under a key the server, started with its --kek-file, refuses.
func openKeysToSeal(dataDir, kekFile string, log *slog.Logger) (*keystore.Embedded, error) {
	kekFile, err := OfflineKEKFile(dataDir, kekFile)
	if err != nil {
		return nil, err
	}
	keys, err := OpenKeys(dataDir, kekFile, log)
	if err != nil {
		return nil, fmt.Errorf("%w (a running server holds its key store: stop it first)", err)
	}
	return keys, nil
}

// sealPass seals events stored in the clear, one at a time; safe for
// concurrent use.
type sealPass struct {
	events *seal.Events
	log    *slog.Logger
	// The counts of SealReport.
	read, sealed, redacted, alreadySealed, clear, undecodable atomic.Uint64
}

func (p *sealPass) report() SealReport {
	return SealReport{
		Read: p.read.Load(), Sealed: p.sealed.Load(), Redacted: p.redacted.Load(),
		AlreadySealed: p.alreadySealed.Load(), Clear: p.clear.Load(), Undecodable: p.undecodable.Load(),
	}
}

// seal returns the data rec is to be stored with from now on, or nil to
// leave it as it is.
func (p *sealPass) seal(ctx context.Context, rec *eventstore.RecordedEvent) ([]byte, error) {
	p.read.Add(1)
	ev, err := eventcodec.Decode(*rec)
	if err != nil {
		// Its bytes are not shown: they may hold personal data.
		p.log.Warn("seal: an event that does not decode is left as it is", "stream", rec.Stream, "position", rec.Position)
		p.undecodable.Add(1)
		return nil, nil
	}
	if ev.GetSealed() != nil || ev.GetSealedRequest() != nil {
		p.alreadySealed.Add(1)
		return nil, nil
	}
	// Seal leaves ev as it was stored, and returns it when it names no
	// personal data.
	out, err := p.events.Seal(ctx, ev)
	if err != nil {
		return nil, err
	}
	if out == ev {
		p.clear.Add(1)
		return nil, nil
	}
	data, err := eventcodec.Encode(out)
	if err != nil {
		return nil, fmt.Errorf("encode the sealed event: %w", err)
	}
	if data.ID != rec.ID || data.Type != rec.Type {
		return nil, fmt.Errorf("the sealed event encodes as %s %s, not as the stored %s %s", data.Type, data.ID, rec.Type, rec.ID)
	}
	if out.GetSealed() == nil && out.GetSealedRequest() == nil {
		p.redacted.Add(1) // its subject was erased: nothing to open
		return data.Data, nil
	}
	// The ledger is forever: what is written must open to what was there.
	check, err := eventcodec.Decode(eventstore.RecordedEvent{Data: data.Data, Stream: rec.Stream, Revision: rec.Revision, Type: rec.Type})
	if err != nil {
		return nil, err
	}
	if _, err := p.events.Open(ctx, check); err != nil {
		return nil, fmt.Errorf("open the sealed event: %w", err)
	}
	if !proto.Equal(check, ev) {
		return nil, fmt.Errorf("event %s at position %d: the sealed event does not open to the stored one", rec.ID, rec.Position)
	}
	p.sealed.Add(1)
	return data.Data, nil
}
