package callversions

import (
	"context"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
)

// The query methods answer from the current read model; a query that a
// switch cuts off is asked again of the new one, so clients never see
// the switch. A watcher, though, belongs to one read model: a switch ends
// it with callstore.ErrClosed and the client watches again.

// Tree is callstore.Store.Tree on the current read model.
func (m *Manager) Tree(ctx context.Context, sid string) (callstate.Tree, error) {
	return retry(m, func(s *callstore.Store) (callstate.Tree, error) { return s.Tree(ctx, sid) })
}

// List is callstore.Store.List on the current read model.
func (m *Manager) List(ctx context.Context, f callstore.Filter, limit int, token string) (callstore.Page, error) {
	return retry(m, func(s *callstore.Store) (callstore.Page, error) { return s.List(ctx, f, limit, token) })
}

// Get is callstore.Store.Get on the current read model.
func (m *Manager) Get(ctx context.Context, sid string) (*callledgerv1.Call, error) {
	return retry(m, func(s *callstore.Store) (*callledgerv1.Call, error) { return s.Get(ctx, sid) })
}

// Watch is callstore.Store.Watch on the current read model.
func (m *Manager) Watch(ctx context.Context, f callstore.Filter) (*callstore.Watcher, error) {
	return retry(m, func(s *callstore.Store) (*callstore.Watcher, error) { return s.Watch(ctx, f) })
}

// WaitFor is callstore.Store.WaitFor on the current read model.
func (m *Manager) WaitFor(ctx context.Context, pos eventstore.Position) error {
	_, err := retry(m, func(s *callstore.Store) (struct{}, error) { return struct{}{}, s.WaitFor(ctx, pos) })
	return err
}

// Checkpoint is the position the current read model has applied.
func (m *Manager) Checkpoint(ctx context.Context) (eventstore.Position, error) {
	return retry(m, func(s *callstore.Store) (eventstore.Position, error) { return s.Checkpoint(ctx) })
}

// Counts is callstore.Store.Counts on the current read model.
func (m *Manager) Counts() callstore.Counts { return m.Current().Counts() }

// Conference is callstore.Store.Conference on the current read model.
func (m *Manager) Conference(ctx context.Context, sid string) (callstore.ConferenceTree, error) {
	return retry(m, func(s *callstore.Store) (callstore.ConferenceTree, error) { return s.Conference(ctx, sid) })
}

// ListConferences is callstore.Store.ListConferences on the current read
// model.
func (m *Manager) ListConferences(ctx context.Context, f callstore.ConferenceFilter, limit int, token string) (callstore.ConferencePage, error) {
	return retry(m, func(s *callstore.Store) (callstore.ConferencePage, error) {
		return s.ListConferences(ctx, f, limit, token)
	})
}

// WatchConferences is callstore.Store.WatchConferences on the current read
// model.
func (m *Manager) WatchConferences(ctx context.Context, f callstore.ConferenceFilter) (*callstore.ConferenceWatcher, error) {
	return retry(m, func(s *callstore.Store) (*callstore.ConferenceWatcher, error) { return s.WatchConferences(ctx, f) })
}

// Due is callstore.Store.Due on the current read model.
func (m *Manager) Due(ctx context.Context, t time.Time, limit int) ([]string, error) {
	return retry(m, func(s *callstore.Store) ([]string, error) { return s.Due(ctx, t, limit) })
}

// Scrub is callstore.Store.Scrub on the current read model. A read model
// being built beside it folds the erasure from the log and holds only
// what it folded: its earlier versions of the calls are in files the
// build replaces.
func (m *Manager) Scrub(ctx context.Context, sids []string) error {
	_, err := retry(m, func(s *callstore.Store) (struct{}, error) { return struct{}{}, s.Scrub(ctx, sids) })
	return err
}

// ScrubPending is callstore.Store.ScrubPending on the current read model.
func (m *Manager) ScrubPending(ctx context.Context) (int, error) {
	return retry(m, func(s *callstore.Store) (int, error) { return s.ScrubPending(ctx) })
}

// Find is callstore.Store.Find on the current read model.
func (m *Manager) Find(ctx context.Context, match func(*callledgerv1.Call) bool) ([]string, error) {
	return retry(m, func(s *callstore.Store) ([]string, error) { return s.Find(ctx, match) })
}
