package ledger

import (
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

// decodeFactsFast decodes what DecodeFacts returns without the protobuf
// runtime, for rebuilds: proto.Unmarshal walks its tables by reflection
// and allocates each message, timestamp, optional number and string of
// an event apart (21 allocations for BenchmarkDecodeFacts's status
// callback; about 40% of the decoding time in a rebuild's profile). Here
// an event takes three: its strings are substrings of one copy of its
// facts, the event and its timestamps share one block, and the body and
// its optional numbers another.
//
// It reports false for anything it does not expect (an unknown field, an
// unexpected wire type, a message field repeated, invalid UTF-8, a parse
// error, facts in more than maxFactRuns pieces) and the caller falls back to
// proto.Unmarshal, which then gives its own result or error: the fast path
// only ever takes inputs on which both agree.
func decodeFactsFast(data []byte) (*callledgerv1.Event, bool) {
	// The facts are the runs of fields around the request and envelope:
	// usually two, as protobuf-go writes the oneof body last.
	var (
		runs  [maxFactRuns][2]int
		nruns int
		size  int
	)
	for off := 0; off < len(data); {
		num, typ, n := protowire.ConsumeTag(data[off:])
		if n < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, data[off+n:])
		if m < 0 {
			return nil, false
		}
		next := off + n + m
		switch {
		case num == fieldRequest || num == fieldCloudEvent:
		case nruns > 0 && runs[nruns-1][1] == off:
			runs[nruns-1][1] = next
			size += next - off
		case nruns == maxFactRuns:
			return nil, false
		default:
			runs[nruns] = [2]int{off, next}
			nruns++
			size += next - off
		}
		off = next
	}
	var sb strings.Builder
	sb.Grow(size)
	for _, r := range runs[:nruns] {
		sb.Write(data[r[0]:r[1]])
	}
	str := sb.String()
	blk := &eventBlock{}
	ev := &blk.ev
	for _, r := range runs[:nruns] {
		d := factsDecoder{data: data[r[0]:r[1]], str: str[:r[1]-r[0]]}
		str = str[r[1]-r[0]:]
		if !d.event(blk) {
			return nil, false
		}
	}
	return ev, true
}

// maxFactRuns bounds the runs of facts an event may be split into for the
// fast path; more (never written by callledger) take the slow one.
const maxFactRuns = 4

// event decodes the fields of an event in d into blk.
func (d *factsDecoder) event(blk *eventBlock) bool {
	ev := &blk.ev
	for off := 0; off < len(d.data); {
		f, next, ok := d.next(off, len(d.data))
		if !ok {
			return false
		}
		switch f.num {
		case 1:
			ok = d.string(f, &ev.EventId)
		case 2:
			ok = d.string(f, &ev.CallSid)
		case 3:
			ok = f.typ == protowire.VarintType
			ev.Source = callledgerv1.Source(int32(f.v))
		case 4:
			ok = ev.ReceivedAt == nil && d.timestamp(f, &blk.received)
			ev.ReceivedAt = &blk.received
		case 5:
			ok = ev.ReportedAt == nil && d.timestamp(f, &blk.reported)
			ev.ReportedAt = &blk.reported
		default:
			ok = ev.Body == nil && f.typ == protowire.BytesType && d.body(ev, f)
		}
		if !ok {
			return false
		}
		off = next
	}
	return true
}

// eventBlock is an event and its timestamps, allocated together.
type eventBlock struct {
	ev                 callledgerv1.Event
	received, reported timestamppb.Timestamp
}

// factsDecoder reads the fields of an event's facts.
type factsDecoder struct {
	data []byte
	// str is data as one string: string fields are substrings of it.
	str string
}

// field is one field of a message: a varint value, or the bounds of a
// length-delimited one in the decoder's data.
type field struct {
	num    protowire.Number
	typ    protowire.Type
	v      uint64
	lo, hi int
}

// next reads the field at off, which ends by end, and returns the offset
// after it. Only the wire types the facts use are accepted.
func (d *factsDecoder) next(off, end int) (field, int, bool) {
	// Most fields have a one-byte tag and a one-byte value or length.
	if off+2 <= end && d.data[off]|d.data[off+1] < 0x80 && d.data[off] >= 1<<3 {
		f := field{num: protowire.Number(d.data[off] >> 3), typ: protowire.Type(d.data[off] & 7)}
		switch f.typ {
		case protowire.VarintType:
			f.v = uint64(d.data[off+1])
			return f, off + 2, true
		case protowire.BytesType:
			f.lo, f.hi = off+2, off+2+int(d.data[off+1])
			return f, f.hi, f.hi <= end
		}
	}
	return d.nextSlow(off, end)
}

// nextSlow is next for any encoding of a field.
func (d *factsDecoder) nextSlow(off, end int) (field, int, bool) {
	num, typ, n := protowire.ConsumeTag(d.data[off:end])
	if n < 0 {
		return field{}, 0, false
	}
	off += n
	f := field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		v, m := protowire.ConsumeVarint(d.data[off:end])
		if m < 0 {
			return field{}, 0, false
		}
		f.v = v
		return f, off + m, true
	case protowire.BytesType:
		v, m := protowire.ConsumeBytes(d.data[off:end])
		if m < 0 {
			return field{}, 0, false
		}
		f.lo, f.hi = off+m-len(v), off+m
		return f, off + m, true
	default:
		return field{}, 0, false
	}
}

// string sets dst to f's value, valid UTF-8 as proto3 requires.
func (d *factsDecoder) string(f field, dst *string) bool {
	if f.typ != protowire.BytesType {
		return false
	}
	*dst = d.str[f.lo:f.hi]
	return utf8.ValidString(*dst)
}

func (d *factsDecoder) timestamp(f field, t *timestamppb.Timestamp) bool {
	if f.typ != protowire.BytesType {
		return false
	}
	for off := f.lo; off < f.hi; {
		g, next, ok := d.next(off, f.hi)
		if !ok || g.typ != protowire.VarintType {
			return false
		}
		off = next
		switch g.num {
		case 1:
			t.Seconds = int64(g.v)
		case 2:
			t.Nanos = int32(g.v)
		default:
			return false
		}
	}
	return true
}

// varint checks f's wire type for a number field.
func varint(f field) bool { return f.typ == protowire.VarintType }

// body decodes the oneof body in f into ev.
func (d *factsDecoder) body(ev *callledgerv1.Event, f field) bool {
	switch f.num {
	case 10:
		b := &struct {
			w              callledgerv1.Event_CallStatusReported
			m              callledgerv1.CallStatusReported
			seq, dur, mins int64
			sip            int32
		}{}
		b.w.CallStatusReported, ev.Body = &b.m, &b.w
		m := &b.m
		for off := f.lo; off < f.hi; {
			g, next, ok := d.next(off, f.hi)
			if !ok {
				return false
			}
			off = next
			switch g.num {
			case 1:
				m.Status = callledgerv1.CallStatus(int32(g.v))
				ok = varint(g)
			case 2:
				ok = d.string(g, &m.StatusRaw)
			case 3:
				b.seq, m.SequenceNumber = int64(g.v), &b.seq
				ok = varint(g)
			case 4:
				ok = d.string(g, &m.AccountSid)
			case 5:
				ok = d.string(g, &m.ParentCallSid)
			case 6:
				ok = d.string(g, &m.Direction)
			case 7:
				ok = d.string(g, &m.From)
			case 8:
				ok = d.string(g, &m.To)
			case 9:
				b.dur, m.CallDurationSeconds = int64(g.v), &b.dur
				ok = varint(g)
			case 10:
				b.mins, m.DurationMinutes = int64(g.v), &b.mins
				ok = varint(g)
			case 11:
				b.sip, m.SipResponseCode = int32(g.v), &b.sip
				ok = varint(g)
			case 12:
				ok = d.string(g, &m.AnsweredBy)
			case 13:
				ok = d.string(g, &m.CallbackSource)
			case 14:
				ok = d.string(g, &m.RecordingSid)
			case 15:
				ok = d.string(g, &m.RecordingUrl)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		return true
	case 11:
		b := &struct {
			w       callledgerv1.Event_DialCompleted
			m       callledgerv1.DialCompleted
			dur     int64
			bridged bool
		}{}
		b.w.DialCompleted, ev.Body = &b.m, &b.w
		m := &b.m
		for off := f.lo; off < f.hi; {
			g, next, ok := d.next(off, f.hi)
			if !ok {
				return false
			}
			off = next
			switch g.num {
			case 1:
				ok = d.string(g, &m.DialCallSid)
			case 2:
				m.DialCallStatus = callledgerv1.CallStatus(int32(g.v))
				ok = varint(g)
			case 3:
				ok = d.string(g, &m.DialCallStatusRaw)
			case 4:
				b.dur, m.DialCallDurationSeconds = int64(g.v), &b.dur
				ok = varint(g)
			case 5:
				b.bridged, m.DialBridged = g.v != 0, &b.bridged
				ok = varint(g)
			case 6:
				m.ParentStatus = callledgerv1.CallStatus(int32(g.v))
				ok = varint(g)
			case 7:
				ok = d.string(g, &m.ParentStatusRaw)
			case 8:
				ok = d.string(g, &m.AccountSid)
			case 9:
				ok = d.string(g, &m.Direction)
			case 10:
				ok = d.string(g, &m.From)
			case 11:
				ok = d.string(g, &m.To)
			case 12:
				ok = d.string(g, &m.RecordingUrl)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		return true
	case 12:
		b := &struct {
			w        callledgerv1.Event_RecordingStatusReported
			m        callledgerv1.RecordingStatusReported
			dur      int64
			channels int32
			start    timestamppb.Timestamp
		}{}
		b.w.RecordingStatusReported, ev.Body = &b.m, &b.w
		m := &b.m
		for off := f.lo; off < f.hi; {
			g, next, ok := d.next(off, f.hi)
			if !ok {
				return false
			}
			off = next
			switch g.num {
			case 1:
				ok = d.string(g, &m.RecordingSid)
			case 2:
				ok = d.string(g, &m.RecordingStatus)
			case 3:
				ok = d.string(g, &m.RecordingUrl)
			case 4:
				b.dur, m.RecordingDurationSeconds = int64(g.v), &b.dur
				ok = varint(g)
			case 5:
				b.channels, m.RecordingChannels = int32(g.v), &b.channels
				ok = varint(g)
			case 6:
				ok = d.string(g, &m.RecordingSource)
			case 7:
				ok = m.RecordingStartTime == nil && d.timestamp(g, &b.start)
				m.RecordingStartTime = &b.start
			case 8:
				ok = d.string(g, &m.RecordingTrack)
			case 9:
				ok = d.string(g, &m.AccountSid)
			case 10:
				ok = d.string(g, &m.ErrorCode)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		return true
	case 13:
		b := &struct {
			w callledgerv1.Event_RequestQuarantined
			m callledgerv1.RequestQuarantined
		}{}
		b.w.RequestQuarantined, ev.Body = &b.m, &b.w
		m := &b.m
		for off := f.lo; off < f.hi; {
			g, next, ok := d.next(off, f.hi)
			if !ok {
				return false
			}
			off = next
			switch g.num {
			case 1:
				ok = d.string(g, &m.Kind)
			case 2:
				ok = d.string(g, &m.Reason)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		return true
	case 14:
		b := &struct {
			w callledgerv1.Event_HangupRequested
			m callledgerv1.HangupRequested
		}{}
		b.w.HangupRequested, ev.Body = &b.m, &b.w
		m := &b.m
		for off := f.lo; off < f.hi; {
			g, next, ok := d.next(off, f.hi)
			if !ok {
				return false
			}
			off = next
			switch g.num {
			case 1:
				ok = d.string(g, &m.RequestId)
			case 2:
				ok = d.string(g, &m.RequestedBy)
			case 3:
				m.EndCall = g.v != 0
				ok = varint(g)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		return true
	case 15:
		b := &struct {
			w callledgerv1.Event_HangupSent
			m callledgerv1.HangupSent
		}{}
		b.w.HangupSent, ev.Body = &b.m, &b.w
		m := &b.m
		for off := f.lo; off < f.hi; {
			g, next, ok := d.next(off, f.hi)
			if !ok {
				return false
			}
			off = next
			switch g.num {
			case 1:
				ok = d.string(g, &m.RequestId)
			case 2:
				ok = d.string(g, &m.Status)
			case 3:
				ok = d.string(g, &m.AccountSid)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		return true
	case 16:
		b := &struct {
			w callledgerv1.Event_HangupFailed
			m callledgerv1.HangupFailed
		}{}
		b.w.HangupFailed, ev.Body = &b.m, &b.w
		m := &b.m
		for off := f.lo; off < f.hi; {
			g, next, ok := d.next(off, f.hi)
			if !ok {
				return false
			}
			off = next
			switch g.num {
			case 1:
				ok = d.string(g, &m.RequestId)
			case 2:
				ok = d.string(g, &m.Status)
			case 3:
				m.ErrorCode = int32(g.v)
				ok = varint(g)
			case 4:
				ok = d.string(g, &m.ErrorMessage)
			case 5:
				m.HttpStatus = int32(g.v)
				ok = varint(g)
			case 6:
				ok = d.string(g, &m.AccountSid)
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		return true
	case 17:
		b := &struct {
			w          callledgerv1.Event_CallReconciled
			m          callledgerv1.CallReconciled
			dur        int64
			start, end timestamppb.Timestamp
		}{}
		b.w.CallReconciled, ev.Body = &b.m, &b.w
		m := &b.m
		for off := f.lo; off < f.hi; {
			g, next, ok := d.next(off, f.hi)
			if !ok {
				return false
			}
			off = next
			switch g.num {
			case 1:
				m.Status = callledgerv1.CallStatus(int32(g.v))
				ok = varint(g)
			case 2:
				ok = d.string(g, &m.StatusRaw)
			case 3:
				ok = d.string(g, &m.AccountSid)
			case 4:
				ok = d.string(g, &m.ParentCallSid)
			case 5:
				ok = d.string(g, &m.Direction)
			case 6:
				ok = d.string(g, &m.From)
			case 7:
				ok = d.string(g, &m.To)
			case 8:
				b.dur, m.DurationSeconds = int64(g.v), &b.dur
				ok = varint(g)
			case 9:
				ok = m.StartTime == nil && d.timestamp(g, &b.start)
				m.StartTime = &b.start
			case 10:
				ok = m.EndTime == nil && d.timestamp(g, &b.end)
				m.EndTime = &b.end
			case 11:
				ok = d.string(g, &m.AnsweredBy)
			case 12:
				m.NotFound = g.v != 0
				ok = varint(g)
			case 13:
				if g.typ != protowire.BytesType {
					return false
				}
				// As proto.Unmarshal: a copy, nil when empty.
				m.Resource = append([]byte(nil), d.data[g.lo:g.hi]...)
				ok = true
			default:
				ok = false
			}
			if !ok {
				return false
			}
		}
		return true
	}
	return false
}
