package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/storecopy"
	"github.com/callledger/callledger/seal"
)

// CopyReport says what CopyLedger did.
type CopyReport struct {
	storecopy.Report
	// Seal counts what sealing did to the events copied (zero without it).
	Seal SealReport
	// ReadModel is where the read model of the data directory was moved
	// (it folded the source's positions); empty when it had none.
	ReadModel string
}

// CopyLedger copies the ledger src (the embedded store of a stopped
// server's dataDir, or KurrentDB) into the KurrentDB database toURL names,
// for a server that then runs with --data-dir dataDir --store toURL: every
// stream revision for revision (eventstore/storecopy), and with sealClear
// the events stored in the clear sealed on the way with keys in dataDir's
// key store, as callledger seal would (each checked to open to what was
// stored). Events sealed already are copied as they are: their keys are in
// that same key store. The read model of dataDir, whose checkpoint counts
// the source's positions, is moved aside so that the server builds a new
// one from the destination. An interrupted copy is finished by running it
// again. docs/deploy-kurrentdb.md, docs/PRIVACY.md §7.
func CopyLedger(ctx context.Context, src eventstore.Store, dataDir, toURL, kekFile string, sealClear bool, log *slog.Logger) (CopyReport, error) {
	var rep CopyReport
	if toURL == "" {
		return rep, errors.New("copy: --to names the KurrentDB database to copy into (esdb://…); " +
			"to move an embedded ledger to another machine, use callledger backup")
	}
	var p *sealPass
	if sealClear {
		keys, err := openKeysToSeal(dataDir, kekFile, log)
		if err != nil {
			return rep, fmt.Errorf("copy: %w", err)
		}
		defer keys.Close()
		// Not DeferSync: KurrentDB has no commit barrier, so Seal makes a
		// new key durable before the event sealed under it is appended.
		p = &sealPass{events: seal.NewEvents(keys), log: log}
	}
	dst, err := OpenStore(ctx, toURL, dataDir, StoreOptions{Logger: log})
	if err != nil {
		return rep, fmt.Errorf("copy: --to: %w", err)
	}
	defer dst.Close()
	opts := storecopy.Options{
		Progress: func(r storecopy.Report) {
			log.Info("copying the ledger", "events_read", r.Read, "events_written", r.Written, "events_present", r.Present)
		},
	}
	if p != nil {
		opts.Transform = func(ctx context.Context, rec *eventstore.RecordedEvent) (eventstore.EventData, error) {
			data, err := p.seal(ctx, rec)
			if err != nil {
				return eventstore.EventData{}, err
			}
			if data == nil {
				data = rec.Data
			}
			return eventstore.EventData{ID: rec.ID, Type: rec.Type, Data: data, Metadata: rec.Metadata}, nil
		}
	}
	rep.Report, err = storecopy.Copy(ctx, src, dst, opts)
	if p != nil {
		rep.Seal = p.report()
	}
	if err != nil {
		return rep, err
	}
	// The read model is the destination's from now on: one that is not
	// already (it counts the source's positions) moves aside.
	if got, err := readModelStore(dataDir); err != nil || got != StoreIdentity(toURL) {
		if rep.ReadModel, err = moveReadModelAside(dataDir, "before-copy"); err != nil {
			return rep, fmt.Errorf("copy: the ledger is copied, but: %w", err)
		}
	}
	if _, err := ClaimReadModel(dataDir, toURL, log); err != nil {
		return rep, fmt.Errorf("copy: the ledger is copied, but: %w", err)
	}
	return rep, nil
}
