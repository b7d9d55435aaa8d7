package query

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
)

// errNoConferences answers the conference queries of a server built
// without a conference read model.
var errNoConferences = status.Error(codes.Unimplemented, "this server has no conference read model")

// GetConference returns a conference, its participants and their calls,
// after waiting, when asked, until the read model has applied
// min_position (as GetCall does).
func (s *Server) GetConference(ctx context.Context, req *callledgerv1.GetConferenceRequest) (*callledgerv1.GetConferenceResponse, error) {
	if s.confs == nil {
		return nil, errNoConferences
	}
	sid := req.GetConferenceSid()
	if !eventcodec.ValidConferenceSid(sid) {
		return nil, invalid("conference_sid %.40q is not a ConferenceSid (CF followed by 32 lowercase hex digits)", sid)
	}
	if pos := req.GetMinPosition(); pos > 0 {
		if err := s.waitFor(ctx, eventstore.Position(pos)); err != nil {
			return nil, err
		}
	}
	tree, err := s.confs.Conference(ctx, sid)
	if err != nil {
		return nil, s.fail(ctx, "GetConference", err)
	}
	return &callledgerv1.GetConferenceResponse{Conference: tree.Conference, Calls: tree.Calls, Position: uint64(tree.Position)}, nil
}

// ListConferences pages through the conferences matching a filter, newest
// start first.
func (s *Server) ListConferences(ctx context.Context, req *callledgerv1.ListConferencesRequest) (*callledgerv1.ListConferencesResponse, error) {
	if s.confs == nil {
		return nil, errNoConferences
	}
	f, err := toConferenceFilter(req.GetFilter())
	if err != nil {
		return nil, err
	}
	limit, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, invalid("%v", err)
	}
	page, err := s.confs.ListConferences(ctx, f, limit, req.GetPageToken())
	if err != nil {
		return nil, s.fail(ctx, "ListConferences", err)
	}
	return &callledgerv1.ListConferencesResponse{Conferences: page.Conferences, NextPageToken: page.Next, Position: uint64(page.Position)}, nil
}

// WatchConferences streams the matching conferences as of one position, a
// caught_up marker, then every change, as WatchCalls does for calls (the
// same bounded buffer, the same answers when it ends).
func (s *Server) WatchConferences(req *callledgerv1.WatchConferencesRequest, stream grpc.ServerStreamingServer[callledgerv1.WatchConferencesResponse]) error {
	ctx := stream.Context()
	if s.confs == nil {
		return errNoConferences
	}
	f, err := toConferenceFilter(req.GetFilter())
	if err != nil {
		return err
	}
	w, err := s.confs.WatchConferences(ctx, f)
	if err != nil {
		return s.fail(ctx, "WatchConferences", err)
	}
	defer w.Close()

	pos := uint64(w.Position())
	var sendErr error
	err = w.Snapshot(ctx, func(c *callledgerv1.Conference) error {
		sendErr = stream.Send(&callledgerv1.WatchConferencesResponse{Conference: c, Position: pos, Snapshot: true})
		return sendErr
	})
	switch {
	case sendErr != nil:
		return s.sendFailed(ctx, sendErr)
	case err != nil:
		return s.watchEnded(ctx, err)
	}
	if err := stream.Send(&callledgerv1.WatchConferencesResponse{Position: pos, CaughtUp: true}); err != nil {
		return s.sendFailed(ctx, err)
	}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ch, ok := <-w.Changes():
			if !ok {
				return s.watchEnded(ctx, w.Err())
			}
			if err := stream.Send(&callledgerv1.WatchConferencesResponse{Conference: ch.Conference, Position: uint64(ch.Position)}); err != nil {
				return s.sendFailed(ctx, err)
			}
		}
	}
}

// toConferenceFilter validates a ConferenceFilter and maps it onto the
// read model's, with the time rules of CallFilter.
func toConferenceFilter(pf *callledgerv1.ConferenceFilter) (callstore.ConferenceFilter, error) {
	f := callstore.ConferenceFilter{ActiveOnly: pf.GetActiveOnly()}
	after, err := bound("started_after", pf.GetStartedAfter())
	if err != nil {
		return f, err
	}
	before, err := bound("started_before", pf.GetStartedBefore())
	if err != nil {
		return f, err
	}
	if pf.GetStartedBefore() != nil && before == 0 {
		return f, invalid("filter.started_before must be after 1970-01-01T00:00:00Z")
	}
	if after != 0 && before != 0 && after > before {
		return f, invalid("filter.started_after is later than filter.started_before")
	}
	f.StartedAfter, f.StartedBefore = after, before
	return f, nil
}
