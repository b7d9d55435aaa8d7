package query

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"

	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
)

// ListCallEvents pages through the events of one call's own stream, in
// revision order, straight from the event log (not the read model, which
// may lag behind it).
//
// A call without events of its own (unknown, or a placeholder known only
// because another leg named it) has an empty history: the answer is an
// empty page, not NOT_FOUND, so that the history of a call GetCall serves
// is always readable. GetCall tells whether a call exists.
//
// An event the server cannot decode (never written by callledger) is still
// listed, with its type and place but without a body, and logged: a history
// that hides a record, or fails as a whole because of one, would mislead.
func (s *Server) ListCallEvents(ctx context.Context, req *callledgerv1.ListCallEventsRequest) (*callledgerv1.ListCallEventsResponse, error) {
	sid := req.GetCallSid()
	if !eventcodec.ValidCallSid(sid) {
		return nil, invalid("call_sid %.40q is not a CallSid (CA followed by 32 lowercase hex digits)", sid)
	}
	limit, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, invalid("%v", err)
	}
	var from uint64
	if t := req.GetPageToken(); t != "" {
		if from, err = decodeEventsToken(sid, t); err != nil {
			return nil, invalid("invalid page_token: it is malformed or was issued for another call")
		}
	}
	stream := eventcodec.CallStream(sid)
	recs, next, err := s.readPage(ctx, stream, from, limit)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return &callledgerv1.ListCallEventsResponse{}, nil
	}
	if err != nil {
		return nil, s.fail(ctx, "ListCallEvents", err)
	}
	resp := &callledgerv1.ListCallEventsResponse{}
	if next != nil {
		resp.NextPageToken = encodeEventsToken(sid, *next)
	}
	resp.Events = make([]*callledgerv1.StoredEvent, 0, len(recs))
	bytes := 0
	for _, rec := range recs {
		se := &callledgerv1.StoredEvent{Position: uint64(rec.Position), Revision: rec.Revision, Type: rec.Type}
		if ev, err := eventcodec.Decode(rec); err != nil {
			s.log.ErrorContext(ctx, "listing an undecodable event without its body", "method", "ListCallEvents", "stream", stream, "revision", rec.Revision, "err", err)
		} else {
			se.Event = ev
			if s.personal != nil {
				// A key the store does not have, or a ciphertext that does
				// not open, fails the call: never shown as an erasure.
				o, err := s.personal.Open(ctx, ev)
				if err != nil {
					return nil, s.fail(ctx, "ListCallEvents", err)
				}
				se.Redacted = o.Redacted
			}
		}
		// The page ends before the event that would take it past the
		// byte bound (its first event always fits), and goes on from it.
		size := proto.Size(se) + 8 // the field's tag and length
		if len(resp.Events) > 0 && bytes+size > s.maxPageBytes {
			resp.NextPageToken = encodeEventsToken(sid, rec.Revision)
			break
		}
		bytes += size
		resp.Events = append(resp.Events, se)
	}
	return resp, nil
}

// eventsReadChunk is how many events one read of the log takes: the
// memory a page holds beyond its byte bound is at most one chunk.
const eventsReadChunk = 64

// readPage reads up to limit events of stream from revision from, ending
// early once the page holds Config.MaxPageBytes of stored events, data and
// metadata (never with fewer than one
// event), and returns the revision the next page starts at (nil after the
// last event).
func (s *Server) readPage(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, *uint64, error) {
	var page []eventstore.RecordedEvent
	bytes := 0
	for {
		want := min(limit-len(page), eventsReadChunk)
		// One more than wanted: it says whether anything follows.
		recs, err := s.history.ReadStream(ctx, stream, from, want+1)
		if err != nil {
			return nil, nil, err
		}
		more := false
		for i, rec := range recs {
			size := len(rec.Data) + len(rec.Metadata)
			switch {
			case len(page) == limit, len(page) > 0 && bytes+size > s.maxPageBytes:
				return page, &rec.Revision, nil
			case i == want:
				from, more = rec.Revision, true // the first of the next chunk
			default:
				page = append(page, rec)
				bytes += size
			}
		}
		if !more {
			return page, nil, nil
		}
	}
}

// Events page tokens: version, next revision, and a hash of the CallSid, so
// that a token of one call is refused for another instead of skipping part
// of its history.
const eventsTokenVersion = 1

func encodeEventsToken(sid string, next uint64) string {
	b := make([]byte, 0, 17)
	b = append(b, eventsTokenVersion)
	b = binary.BigEndian.AppendUint64(b, next)
	b = binary.BigEndian.AppendUint64(b, sidHash(sid))
	return base64.RawURLEncoding.EncodeToString(b)
}

var errEventsToken = errors.New("invalid events page token")

func decodeEventsToken(sid, token string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != 17 || b[0] != eventsTokenVersion {
		return 0, errEventsToken
	}
	if binary.BigEndian.Uint64(b[9:]) != sidHash(sid) {
		return 0, errEventsToken
	}
	return binary.BigEndian.Uint64(b[1:9]), nil
}

func sidHash(sid string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(sid))
	return h.Sum64()
}
