package query

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/delays"
)

// Stats windows of GetStats.
const (
	// DefaultStatsWindow is the delay window of a request that sets none.
	DefaultStatsWindow = 5 * time.Minute
	// MaxStatsWindow is the longest window; the server keeps no older
	// delays. Longer requests are refused, not cut, so a client never
	// mistakes a shorter window for the one it asked for.
	MaxStatsWindow = delays.MaxAge
)

// Counts is the part of the read model GetStats counts from.
// *callstore.Store implements it.
type Counts interface {
	Counts() callstore.Counts
}

// Delays summarizes recent delivery delays; *delays.Window implements it.
type Delays interface {
	Summarize(window time.Duration) delays.Summary
}

// GetStats answers the call counts and the delivery-delay percentiles.
func (s *Server) GetStats(ctx context.Context, req *callledgerv1.GetStatsRequest) (*callledgerv1.GetStatsResponse, error) {
	if s.counts == nil || s.delays == nil {
		return nil, status.Error(codes.Unimplemented, "statistics are not configured on this server")
	}
	window := DefaultStatsWindow
	if req.GetWindow() != nil {
		if err := req.GetWindow().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "window: %v", err)
		}
		window = req.GetWindow().AsDuration()
		if window <= 0 || window > MaxStatsWindow {
			return nil, status.Errorf(codes.InvalidArgument, "window %s: want more than 0 and at most %s", window, MaxStatsWindow)
		}
	}
	c := s.counts.Counts()
	d := s.delays.Summarize(window)
	resp := &callledgerv1.GetStatsResponse{
		ActiveCalls: c.Active,
		TotalCalls:  c.Total,
		Window:      durationpb.New(window),
		Position:    uint64(c.Position),
		DeliveryDelay: &callledgerv1.DelayStats{
			Samples: int64(d.Samples),
			P50:     durationpb.New(d.P50),
			P90:     durationpb.New(d.P90),
			P99:     durationpb.New(d.P99),
			Max:     durationpb.New(d.Max),
		},
	}
	for st, n := range c.ByStatus {
		resp.CallsByStatus = append(resp.CallsByStatus, &callledgerv1.StatusCount{Status: st, Count: n})
	}
	slices.SortFunc(resp.CallsByStatus, func(a, b *callledgerv1.StatusCount) int { return int(a.GetStatus() - b.GetStatus()) })
	if s.lag != nil {
		events, age, caughtUp, err := s.lag(ctx)
		if err != nil {
			return nil, s.fail(ctx, "GetStats", err)
		}
		resp.LagEvents, resp.Lag, resp.CaughtUp = events, durationpb.New(age), caughtUp
	}
	return resp, nil
}
