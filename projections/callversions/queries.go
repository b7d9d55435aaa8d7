package callversions

import (
	"context"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
)

// The query methods answer from the current read model; a query that a
// switch cuts off is asked again of the new one, so clients never see
// the switch. A watcher, though, belongs to one read model: a switch ends
// it with callstore.ErrClosed and the client watches again.

// Tree is callstore.Store.Tree on the current read model.
func (m *Manager) Tree(ctx context.Context, sid string) (*callledgerv1.Call, []*callledgerv1.Call, eventstore.Position, error) {
	type tree struct {
		call *callledgerv1.Call
		legs []*callledgerv1.Call
		pos  eventstore.Position
	}
	t, err := retry(m, func(s *callstore.Store) (tree, error) {
		c, l, p, err := s.Tree(ctx, sid)
		return tree{c, l, p}, err
	})
	return t.call, t.legs, t.pos, err
}

// List is callstore.Store.List on the current read model.
func (m *Manager) List(ctx context.Context, f callstore.Filter, limit int, token string) ([]*callledgerv1.Call, string, eventstore.Position, error) {
	type page struct {
		calls []*callledgerv1.Call
		next  string
		pos   eventstore.Position
	}
	p, err := retry(m, func(s *callstore.Store) (page, error) {
		c, n, pos, err := s.List(ctx, f, limit, token)
		return page{c, n, pos}, err
	})
	return p.calls, p.next, p.pos, err
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
