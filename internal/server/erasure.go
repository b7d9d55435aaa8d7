package server

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/metrics"
	"github.com/callledger/callledger/projections/callversions"
)

// Erasure configures erasures of personal data and retention (RoleAll
// only; docs/PRIVACY.md).
type Erasure struct {
	// Journal is the erasure journal (--erasure-journal); default
	// <data-dir>/erasures.jsonl. Keep it off the backup's restore path:
	// serve replays it on start, so that a restored backup forgets again.
	Journal string
	// Retention erases the personal data of calls that ended longer ago
	// than this (--retention); 0: off. A call that never ended is taken
	// to have ended callstore.MaxCallLife after it began.
	Retention time.Duration
	// RetentionInterval is how often retention looks for calls due (no
	// flag; default a minute).
	RetentionInterval time.Duration
	// RetentionBatch is how many calls retention erases at a time (no
	// flag; default DefaultRetentionBatch).
	RetentionBatch int
}

// DefaultRetentionBatch keeps a retention batch within the key store's
// per-subject compactions (it compacts its whole key space for larger
// batches), so that a batch's Destroy stays short beside the write path.
const DefaultRetentionBatch = 64

// JournalPath is the erasure journal's default path in dataDir.
func JournalPath(dataDir string) string { return filepath.Join(dataDir, "erasures.jsonl") }

// keyStoreForErasure is the key store erasures destroy keys in: the one
// the write path seals with or, with sealing off (--seal=false), the same
// store opened for erasures alone, whose tombstones keep erased calls'
// late events from being sealed under new keys once sealing is turned on.
func (s *Server) keyStoreForErasure() (*keystore.Embedded, error) {
	if s.keys != nil {
		return s.keys, nil
	}
	keys, err := OpenKeys(s.cfg.DataDir, s.cfg.Privacy.KEKFile, s.log)
	if err != nil {
		return nil, err
	}
	s.onClose("key store", keys.Close)
	s.keys = keys
	return keys, nil
}

// erasures builds the erasure use case over the read model, replays the
// erasure journal (the scrub of what it erased again runs in the
// background, once the read model has applied it) and, with --retention,
// schedules retention.
func (s *Server) erasures(ctx context.Context, calls *callversions.Manager) (*erasure.Service, error) {
	m, err := metrics.NewErasure(s.tel.reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s.tel.erasure = m
	keys, err := s.keyStoreForErasure()
	if err != nil {
		return nil, err
	}
	path := s.cfg.Erasure.Journal
	if path == "" {
		path = JournalPath(s.cfg.DataDir)
	}
	journal, entries, err := erasure.OpenJournal(path)
	if err != nil {
		return nil, fmt.Errorf("--erasure-journal: %w", err)
	}
	s.onClose("erasure journal", journal.Close)
	svc, err := erasure.New(erasure.Config{Log: s.store, Keys: keys, ReadModel: calls, Journal: journal, Logger: s.log})
	if err != nil {
		return nil, err
	}
	replayed, err := svc.Replay(ctx, entries)
	if err != nil {
		m.Failed(metrics.ErasureOperator)
		return nil, fmt.Errorf("replay the erasure journal %s: %w", path, err)
	}
	s.log.Info("erasure journal replayed", "journal", path, "entries", replayed.Entries,
		"replayed", replayed.Replayed, "subjects_destroyed_again", replayed.Subjects)
	if len(replayed.Pending) > 0 {
		s.background = append(s.background, func(ctx context.Context) {
			for _, p := range replayed.Pending {
				if err := svc.Scrub(ctx, p); err != nil {
					s.log.Error("scrub of a replayed erasure", "erasure_id", p.ID, "err", err)
				}
			}
		})
	}
	if r := s.cfg.Erasure.Retention; r > 0 {
		job := &retention{
			svc: svc, calls: calls, after: r, log: s.log, metrics: m,
			interval: s.cfg.Erasure.RetentionInterval, batch: s.cfg.Erasure.RetentionBatch, now: s.cfg.Seams.RetentionClock,
		}
		s.background = append(s.background, job.run)
		s.log.Info("retention on", "retention", r, "batch", job.batchSize())
	}
	return svc, nil
}

// countedEraser counts the calls AdminService.Erase erases.
type countedEraser struct {
	svc     *erasure.Service
	metrics *metrics.Erasure
}

func (c countedEraser) ReplayJournal(ctx context.Context, entries []erasure.Entry) (erasure.ReplayResult, error) {
	res, err := c.svc.ReplayJournal(ctx, entries)
	if err != nil {
		c.metrics.Failed(metrics.ErasureOperator)
	}
	return res, err
}

func (c countedEraser) Erase(ctx context.Context, req erasure.Request) (erasure.Result, error) {
	res, err := c.svc.Erase(ctx, req)
	if err != nil {
		c.metrics.Failed(metrics.ErasureOperator)
	}
	if res.Keys.Destroyed+res.Keys.Unknown+res.Keys.AlreadyDestroyed > 0 {
		c.metrics.Erased(metrics.ErasureOperator, len(res.CallSids))
	}
	return res, err
}

// DefaultScrubInterval is Seams.ScrubInterval's default: what an erasure
// redacted leaves the read model's files seconds after the read model
// applied it.
const DefaultScrubInterval = 5 * time.Second

// scrubber scrubs the read model of the calls that the erasures it
// applied redacted (callstore.Store.ScrubPending), on every node: a query
// replica follows erasures made on the key store's node, and there the
// erasure service has scrubbed already, so the pass finds little to do.
type scrubber struct {
	calls interface {
		ScrubPending(context.Context) (int, error)
	}
	every time.Duration
	log   *slog.Logger
}

func (s scrubber) run(ctx context.Context) {
	t := time.NewTicker(cmp.Or(s.every, DefaultScrubInterval))
	defer t.Stop()
	for {
		n, err := s.calls.ScrubPending(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("read model: the scrub of erased calls failed; it is tried again", "err", err)
		case n > 0:
			s.log.Info("read model scrubbed of erased calls", "calls", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
