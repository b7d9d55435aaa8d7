package kurrentdbtest

import (
	"context"
	"errors"
	"io"
	"math"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// expectation is an append's expected stream revision.
type expectation struct {
	kind     expectKind
	revision uint64
}

type expectKind int

const (
	expectAny expectKind = iota
	expectNoStream
	expectExists
	expectRevision
)

type proposed struct {
	id    uuid.UUID
	typ   string
	ctype string
	data  []byte
	meta  []byte
}

// Append serves Streams/Append. Like the real server it reads the whole
// request stream before answering, so that the client always sees the
// status and trailers rather than io.EOF on a Send.
func (s *Server) Append(st streams.Streams_AppendServer) error {
	ctx := st.Context()
	var (
		opts     *streams.AppendReq_Options
		events   []proposed
		size     int
		tooLarge bool
		bad      error
	)
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch c := req.Content.(type) {
		case *streams.AppendReq_Options_:
			if opts != nil && bad == nil {
				bad = status.Error(codes.InvalidArgument, "options sent twice")
			}
			opts = c.Options
		case *streams.AppendReq_ProposedMessage_:
			m := c.ProposedMessage
			if opts == nil && bad == nil {
				bad = status.Error(codes.InvalidArgument, "proposed message before options")
			}
			typ, okT := m.GetMetadata()["type"]
			ctype, okC := m.GetMetadata()["content-type"]
			if (!okT || !okC) && bad == nil {
				missing := "type"
				if okT {
					missing = "content-type"
				}
				bad = failWith(ctx, codes.InvalidArgument, "Required Metadata Property '"+missing+"' is missing",
					"exception", "missing-required-metadata-property", "required-metadata-properties", "type,content-type")
			}
			id, ok := fromProtoUUID(m.GetId())
			if !ok && bad == nil {
				bad = status.Error(codes.InvalidArgument, "event id is not a UUID")
			}
			size += len(typ) + len(m.GetData()) + len(m.GetCustomMetadata())
			if size > s.opts.MaxAppendSize {
				tooLarge = true
			}
			events = append(events, proposed{id: id, typ: typ, ctype: ctype, data: m.GetData(), meta: m.GetCustomMetadata()})
		}
	}
	if err := s.beforeCall(ctx, MethodAppend); err != nil {
		return err
	}
	if bad != nil {
		return bad
	}
	if opts == nil {
		return status.Error(codes.InvalidArgument, "no options")
	}
	if tooLarge {
		return failWith(ctx, codes.InvalidArgument, "Maximum Append Size of "+itoa(s.opts.MaxAppendSize)+" Exceeded.",
			"exception", "maximum-append-size-exceeded", "maximum-append-size", itoa(s.opts.MaxAppendSize))
	}
	var exp expectation
	switch r := opts.ExpectedStreamRevision.(type) {
	case *streams.AppendReq_Options_Revision:
		exp = expectation{kind: expectRevision, revision: r.Revision}
	case *streams.AppendReq_Options_NoStream:
		exp = expectation{kind: expectNoStream}
	case *streams.AppendReq_Options_Any:
		exp = expectation{kind: expectAny}
	case *streams.AppendReq_Options_StreamExists:
		exp = expectation{kind: expectExists}
	default:
		return status.Error(codes.InvalidArgument, "no expected stream revision")
	}
	resp, err := s.append(ctx, string(opts.GetStreamIdentifier().GetStreamName()), exp, events)
	if err != nil {
		return err
	}
	return st.SendAndClose(resp)
}

// append applies the server's commit check and writes the events.
func (s *Server) append(ctx context.Context, name string, exp expectation, events []proposed) (*streams.AppendResp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[name]
	if st != nil && st.tombstoned {
		return nil, streamDeleted(ctx, name)
	}
	cur := int64(-1)
	if st != nil {
		cur = int64(len(st.events)) - 1
	}
	if len(events) == 0 {
		return s.successLocked(name, cur, nil), nil
	}
	write := false
	switch exp.kind {
	case expectRevision, expectNoStream:
		n := int64(-1)
		if exp.kind == expectRevision {
			if exp.revision > math.MaxInt64 {
				return wrongExpectedVersion(exp, cur), nil
			}
			n = int64(exp.revision)
		}
		switch {
		case cur == n:
			write = true
		case cur < n:
			return wrongExpectedVersion(exp, cur), nil
		default:
			// The stream moved past n: idempotent if the events after n
			// are these very events, read from the log (reliable).
			for i, ev := range events {
				r := n + 1 + int64(i)
				if r > cur || st.events[r].id != ev.id {
					return wrongExpectedVersion(exp, cur), nil
				}
			}
			return s.idempotentLocked(st, n+int64(len(events))), nil
		}
	case expectAny, expectExists:
		if cur < 0 {
			if exp.kind == expectExists {
				return wrongExpectedVersion(exp, cur), nil
			}
			write = true
			break
		}
		// Only the recent-ID cache is consulted: a forgotten first ID
		// means the batch is written again (best effort).
		first, ok := s.recent.lookup(name, events[0].id)
		if !ok {
			write = true
			break
		}
		for i, ev := range events[1:] {
			rev, ok := s.recent.lookup(name, ev.id)
			if !ok || rev != first+uint64(i+1) {
				return wrongExpectedVersion(exp, cur), nil
			}
		}
		return s.idempotentLocked(st, int64(first)+int64(len(events))-1), nil
	}
	if !write {
		return wrongExpectedVersion(exp, cur), nil
	}
	recs := make([]*record, len(events))
	for i, ev := range events {
		recs[i] = &record{
			stream: name, revision: uint64(cur + 1 + int64(i)), id: ev.id, typ: ev.typ, ctype: ev.ctype,
			data: clone(ev.data), meta: clone(ev.meta),
		}
	}
	s.commitLocked(recs)
	return s.successLocked(name, cur+int64(len(recs)), recs), nil
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// successLocked answers a write. The commit position is the last event's
// and the prepare position the first's (an implicit transaction's commit
// and transaction positions; inferred from the server's write path, not
// checked against a real server).
func (s *Server) successLocked(name string, cur int64, recs []*record) *streams.AppendResp {
	ok := &streams.AppendResp_Success{}
	if cur < 0 {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
	} else {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(cur)}
	}
	if len(recs) == 0 {
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	} else {
		ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
			CommitPosition: recs[len(recs)-1].pos, PreparePosition: recs[0].pos,
		}}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}}
}

// idempotentLocked answers an append whose events were all there already,
// ending at revision last: current servers point at the originals, older
// ones answer without a position.
func (s *Server) idempotentLocked(st *streamState, last int64) *streams.AppendResp {
	ok := &streams.AppendResp_Success{
		CurrentRevisionOption: &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(last)},
	}
	if s.opts.LegacyIdempotentReply {
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	} else {
		pos := st.events[last].pos
		ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
			CommitPosition: pos, PreparePosition: pos,
		}}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}}
}

// wrongExpectedVersion is the reply body (not a status) the server sends,
// with both the current fields and the 20.6.0 ones filled.
func wrongExpectedVersion(exp expectation, cur int64) *streams.AppendResp {
	w := &streams.AppendResp_WrongExpectedVersion{}
	switch exp.kind {
	case expectAny:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
	case expectExists:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
	case expectNoStream:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: math.MaxUint64}
	default:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: exp.revision}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: exp.revision}
	}
	if cur < 0 {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(cur)}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(cur)}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

// Tombstone serves Streams/Tombstone: the stream is deleted for good, and a
// $streamDeleted event (a system type in a user stream) enters the log.
func (s *Server) Tombstone(ctx context.Context, req *streams.TombstoneReq) (*streams.TombstoneResp, error) {
	if err := s.beforeCall(ctx, MethodTombstone); err != nil {
		return nil, err
	}
	name := string(req.GetOptions().GetStreamIdentifier().GetStreamName())
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stream(name)
	if st.tombstoned {
		return nil, streamDeleted(ctx, name)
	}
	cur := int64(len(st.events)) - 1
	var ok bool
	switch r := req.GetOptions().GetExpectedStreamRevision().(type) {
	case *streams.TombstoneReq_Options_Revision:
		ok = cur == int64(r.Revision)
	case *streams.TombstoneReq_Options_NoStream:
		ok = cur < 0
	case *streams.TombstoneReq_Options_StreamExists:
		ok = cur >= 0
	default:
		ok = true
	}
	if !ok {
		// What Delete and Tombstone send (the v4 client reports it as
		// ErrorCodeUnknown).
		return nil, failWith(ctx, codes.FailedPrecondition, "Tombstone failed due to WrongExpectedVersion.",
			"exception", "wrong-expected-version", "stream-name", name, "expected-version", "", "actual-version", itoa(int(cur)))
	}
	rec := &record{stream: name, revision: math.MaxInt64, id: uuid.New(), typ: "$streamDeleted", ctype: "application/octet-stream"}
	// The tombstone is in $all but not among the stream's readable events.
	s.commitLocked([]*record{rec})
	st.events = st.events[:len(st.events)-1]
	st.tombstoned = true
	return &streams.TombstoneResp{PositionOption: &streams.TombstoneResp_Position_{Position: &streams.TombstoneResp_Position{
		CommitPosition: rec.pos, PreparePosition: rec.pos,
	}}}, nil
}
