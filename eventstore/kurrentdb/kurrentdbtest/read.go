package kurrentdbtest

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Read serves Streams/Read: plain stream and $all reads, and $all
// subscriptions (a Read with the subscription count option).
func (s *Server) Read(req *streams.ReadReq, st streams.Streams_ReadServer) error {
	ctx := st.Context()
	if err := s.beforeCall(ctx, MethodRead); err != nil {
		return err
	}
	o := req.GetOptions()
	if o == nil {
		return status.Error(codes.InvalidArgument, "'options' is a required argument")
	}
	if o.GetUuidOption() == nil {
		return status.Error(codes.InvalidArgument, "'uuidOption' is a required argument")
	}
	stringIDs := o.GetUuidOption().GetString_() != nil
	_, filtered := o.FilterOption.(*streams.ReadReq_Options_Filter)
	_, subscription := o.CountOption.(*streams.ReadReq_Options_Subscription)
	switch so := o.StreamOption.(type) {
	case *streams.ReadReq_Options_Stream:
		if subscription {
			return status.Error(codes.Unimplemented, "stand-in: stream subscriptions are not reproduced")
		}
		if filtered {
			return status.Error(codes.InvalidArgument, "The combination of (Stream, Count, Filter) is invalid.")
		}
		return s.readStream(ctx, so.Stream, o, stringIDs, st)
	case *streams.ReadReq_Options_All:
		if subscription {
			return s.subscribeAll(ctx, so.All, o, stringIDs, st)
		}
		if filtered {
			return status.Error(codes.Unimplemented, "stand-in: filtered $all reads are not reproduced")
		}
		return s.readAll(ctx, so.All, o, stringIDs, st)
	default:
		return status.Error(codes.InvalidArgument, "no stream option")
	}
}

func (s *Server) readStream(ctx context.Context, so *streams.ReadReq_Options_StreamOptions, o *streams.ReadReq_Options, stringIDs bool, st streams.Streams_ReadServer) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	s.mu.Lock()
	var evs []*record
	stream := s.streams[name]
	if stream != nil {
		evs = stream.events // immutable prefix: writers only append
	}
	tombstoned := stream != nil && stream.tombstoned
	s.mu.Unlock()
	if tombstoned {
		return streamDeleted(ctx, name)
	}
	if len(evs) == 0 {
		// What a compatibility-0 server sends: a message, then OK.
		return st.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{StreamNotFound: &streams.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}
	count := o.GetCount()
	last := uint64(len(evs) - 1)
	if o.GetReadDirection() == streams.ReadReq_Options_Backwards {
		var from uint64
		switch r := so.RevisionOption.(type) {
		case *streams.ReadReq_Options_StreamOptions_Revision:
			from = min(r.Revision, last)
		case *streams.ReadReq_Options_StreamOptions_Start:
			from = 0
		default:
			from = last
		}
		for i, n := int64(from), uint64(0); i >= 0 && n < count; i, n = i-1, n+1 {
			if err := st.Send(eventResp(evs[i], stringIDs)); err != nil {
				return err
			}
		}
		return nil
	}
	var from uint64
	switch r := so.RevisionOption.(type) {
	case *streams.ReadReq_Options_StreamOptions_Revision:
		from = r.Revision
	case *streams.ReadReq_Options_StreamOptions_End:
		from = last + 1
	default:
		from = 0
	}
	for i, n := from, uint64(0); i <= last && n < count; i, n = i+1, n+1 {
		if err := st.Send(eventResp(evs[i], stringIDs)); err != nil {
			return err
		}
	}
	return nil
}

func invalidPosition() error {
	return status.Error(codes.InvalidArgument, "Trying to read from an invalid position.")
}

func (s *Server) readAll(_ context.Context, ao *streams.ReadReq_Options_AllOptions, o *streams.ReadReq_Options, stringIDs bool, st streams.Streams_ReadServer) error {
	backwards := o.GetReadDirection() == streams.ReadReq_Options_Backwards
	s.mu.Lock()
	recs := s.records
	var from int // index of the first record to send
	switch p := ao.AllOption.(type) {
	case *streams.ReadReq_Options_AllOptions_Position:
		pos := p.Position.GetCommitPosition()
		if !s.validPositionLocked(pos) {
			s.mu.Unlock()
			return invalidPosition()
		}
		if backwards {
			from = s.indexFromLocked(pos) - 1 // before pos
		} else {
			from = s.indexFromLocked(pos) // at pos or after
		}
	case *streams.ReadReq_Options_AllOptions_End:
		if backwards {
			from = len(recs) - 1
		} else {
			from = len(recs)
		}
	default: // start
		if backwards {
			from = -1
		} else {
			from = 0
		}
	}
	s.mu.Unlock()
	count := o.GetCount()
	step := 1
	if backwards {
		step = -1
	}
	for i, n := from, uint64(0); i >= 0 && i < len(recs) && n < count; i, n = i+step, n+1 {
		if err := st.Send(eventResp(recs[i], stringIDs)); err != nil {
			return err
		}
	}
	return nil
}

// eventResp renders a record as the server does, with the system metadata
// the client requires: a missing or non-numeric "created" makes the v4
// client exit the process.
func eventResp(r *record, stringIDs bool) *streams.ReadResp {
	id := protoUUID(r.id)
	if stringIDs {
		id = &shared.UUID{Value: &shared.UUID_String_{String_: r.id.String()}}
	}
	ev := &streams.ReadResp_ReadEvent_RecordedEvent{
		Id:               id,
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
		StreamRevision:   r.revision,
		PreparePosition:  r.pos,
		CommitPosition:   r.pos,
		Metadata: map[string]string{
			"type":         r.typ,
			"content-type": r.ctype,
			"created":      strconv.FormatInt(r.created, 10),
		},
		CustomMetadata: r.meta,
		Data:           r.data,
	}
	return &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event:    ev,
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.pos},
	}}}
}

// filter is a subscription's server-side filter.
type filter struct {
	onType   bool
	prefixes []string
	re       *regexp.Regexp
	interval int // checkpoint every this many considered records
}

func parseFilter(o *streams.ReadReq_Options) (*filter, error) {
	fo, ok := o.FilterOption.(*streams.ReadReq_Options_Filter)
	if !ok {
		return nil, nil
	}
	f := &filter{}
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	switch x := fo.Filter.Filter.(type) {
	case *streams.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = x.StreamIdentifier
	case *streams.ReadReq_Options_FilterOptions_EventType:
		expr, f.onType = x.EventType, true
	default:
		return nil, status.Error(codes.InvalidArgument, "filter without a stream or event type expression")
	}
	if expr.GetRegex() != "" {
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "invalid filter regex: "+err.Error())
		}
		f.re = re
	} else {
		f.prefixes = expr.GetPrefix()
	}
	window := 32 // the server's default read batch for the count window
	if w, ok := fo.Filter.Window.(*streams.ReadReq_Options_FilterOptions_Max); ok && w.Max > 0 {
		window = int(w.Max)
	}
	mult := int(fo.Filter.GetCheckpointIntervalMultiplier())
	if mult == 0 {
		return nil, status.Error(codes.InvalidArgument, "checkpointIntervalMultiplier must not be zero")
	}
	f.interval = window * mult
	return f, nil
}

func (f *filter) match(r *record) bool {
	if f == nil {
		return true
	}
	v := r.stream
	if f.onType {
		v = r.typ
	}
	if f.re != nil {
		return f.re.MatchString(v)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	return false
}

// subscribeAll serves a catch-up subscription to $all. Catch-up and live
// are one loop over the in-memory log, so nothing is skipped or repeated
// at the hand-over; the messages are those of a real server: confirmation
// first, events, checkpoints (filtered only) every interval of considered
// records and when going live, caught_up, then live events.
func (s *Server) subscribeAll(ctx context.Context, ao *streams.ReadReq_Options_AllOptions, o *streams.ReadReq_Options, stringIDs bool, st streams.Streams_ReadServer) error {
	f, err := parseFilter(o)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.nextSub++
	id := "standin-sub-" + strconv.Itoa(s.nextSub)
	drop := s.drop
	var (
		cursor  int
		after   uint64 // the start: events and checkpoints come after it
		invalid bool
	)
	switch p := ao.AllOption.(type) {
	case *streams.ReadReq_Options_AllOptions_Position:
		after = p.Position.GetCommitPosition()
		invalid = !s.validPositionLocked(after)
		cursor = s.indexAfterLocked(after) // exclusive
	case *streams.ReadReq_Options_AllOptions_End:
		cursor = len(s.records)
		if cursor > 0 {
			after = s.records[cursor-1].pos
		}
	default:
		cursor = 0
	}
	s.mu.Unlock()

	if err := st.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{SubscriptionId: id}}}); err != nil {
		return err
	}
	if invalid {
		// The server confirms, then its catch-up read fails.
		return invalidPosition()
	}
	dropped := func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.dropStatus.Err()
	}
	// Like the server, never send a checkpoint before the last event sent
	// or not after the previous checkpoint.
	floor, lastCP, sentCP := after, uint64(0), false
	checkpoint := func(pos uint64) error {
		if pos < floor || (sentCP && pos <= lastCP) {
			return nil
		}
		lastCP, sentCP = pos, true
		return st.Send(&streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
			CommitPosition: pos, PreparePosition: pos,
		}}})
	}
	considered, caughtUp := 0, false
	for {
		s.mu.Lock()
		recs := s.records[cursor:]
		changed := s.changed
		s.mu.Unlock()
		var last uint64
		for _, r := range recs {
			select {
			case <-drop:
				return dropped()
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			default:
			}
			last = r.pos
			if f.match(r) {
				if err := st.Send(eventResp(r, stringIDs)); err != nil {
					return err
				}
				floor = r.pos
			}
			if considered++; f != nil && considered >= f.interval {
				considered = 0
				if err := checkpoint(r.pos); err != nil {
					return err
				}
			}
		}
		cursor += len(recs)
		if !caughtUp {
			caughtUp = true
			if f != nil && len(recs) > 0 {
				// A checkpoint when going live, so that at least one is
				// issued within the interval.
				if err := checkpoint(last); err != nil {
					return err
				}
			}
			if err := st.Send(&streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}}); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-drop:
			return dropped()
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}
