package server

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/metrics"
)

// RetentionRequester is the requester retention's erasures record.
const RetentionRequester = "retention"

// dueCalls lists the calls retention may erase: callversions.Manager.
type dueCalls interface {
	Due(ctx context.Context, t time.Time, limit int) ([]string, error)
}

// retention erases, every interval, the personal data of the calls due
// (ended longer ago than after, per the read model's retention index), a
// batch at a time through the erasure use case, so that each batch is
// journalled, recorded and scrubbed like an operator's erasure.
type retention struct {
	svc      *erasure.Service
	calls    dueCalls
	after    time.Duration
	interval time.Duration
	batch    int
	now      func() time.Time
	log      *slog.Logger
	metrics  *metrics.Erasure
}

func (r *retention) batchSize() int { return cmp.Or(r.batch, DefaultRetentionBatch) }

func (r *retention) run(ctx context.Context) {
	interval := cmp.Or(r.interval, time.Minute)
	for {
		if _, err := r.sweep(ctx); err != nil && ctx.Err() == nil {
			r.metrics.Failed(metrics.ErasureRetention)
			r.log.Error("retention: erasure failed; retrying at the next pass", "err", err)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sweep erases every call due now, batch by batch, and returns how many
// it erased. Each erasure waits until the read model has redacted its
// calls (they then leave the retention index), so the next batch is new.
func (r *retention) sweep(ctx context.Context) (int, error) {
	now := time.Now
	if r.now != nil {
		now = r.now
	}
	cutoff := now().Add(-r.after)
	total := 0
	var last []string
	for ctx.Err() == nil {
		sids, err := r.calls.Due(ctx, cutoff, r.batchSize())
		if err != nil || len(sids) == 0 {
			return total, err
		}
		if slices.Equal(sids, last) {
			// The read model did not redact the last batch: do not loop.
			r.log.Warn("retention: the calls of the last batch are still due; retrying at the next pass", "calls", len(sids))
			return total, nil
		}
		last = sids
		res, err := r.svc.Erase(ctx, erasure.Request{CallSids: sids, By: RetentionRequester})
		if err != nil {
			return total, err
		}
		total += len(res.CallSids)
		r.metrics.Erased(metrics.ErasureRetention, len(res.CallSids))
		r.log.Info("retention: erased a batch", "erasure_id", res.ID, "calls", len(res.CallSids),
			"keys_destroyed", res.Keys.Destroyed, "plaintext_events", res.PlaintextEvents, "ended_before", cutoff)
	}
	return total, ctx.Err()
}
