package callstate

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

// DecodeView returns View of the CallRecord encoded in b, reading the
// wire format directly: GetCall decodes every leg it serves, and most of a
// record (event IDs, the keys that order reports) is for the fold, not the
// view. Decoding it all into a CallRecord first costs about as much as the
// read itself. The result equals View(proto.Unmarshal(b)), and it fails
// where proto.Unmarshal would; an encoding proto.Marshal never writes (a
// singular message field twice, which the wire format merges) is handed
// to the slow path.
func DecodeView(b []byte) (*callledgerv1.Call, error) {
	c, err := decodeView(b)
	if errors.Is(err, errNonCanonical) {
		rec := &statev1.CallRecord{}
		if err := proto.Unmarshal(b, rec); err != nil {
			return nil, err
		}
		return View(rec), nil
	}
	return c, err
}

var (
	errNonCanonical = errors.New("non-canonical encoding")
	errMalformed    = errors.New("malformed call record")
	errUTF8         = errors.New("string field contains invalid UTF-8")
)

// CallRecord field numbers the view reads (state/v1/state.proto).
const (
	recCallSid       = 1
	recOwnEventIDs   = 2
	recIdentity      = 3
	recParent        = 4
	recChildCallSids = 5
	recNonterminal   = 6
	recTerminal      = 7
	recInitiatedAt   = 8
	recRingingAt     = 9
	recAnsweredAt    = 10
	recRecordings    = 11
	recLastDial      = 12
	recAnsweredBy    = 13
	recStartTime     = 14
	recRootCallSid   = 15
	recLastPosition  = 16
	recHangup        = 17
)

// fields walks the fields of one message, calling fn with each field's
// number, wire type and, for length-delimited fields, contents; for
// varints, v holds the value.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return fmt.Errorf("%w: field number %d", errMalformed, num)
		}
		b = b[n:]
		var v uint64
		var data []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, data); err != nil {
			return err
		}
	}
	return nil
}

func str(data []byte) (string, error) {
	if !utf8.Valid(data) {
		return "", errUTF8
	}
	return string(data), nil
}

// once marks a singular message field seen; a second occurrence would be
// merged into the first by the wire format, which the fast path does not do.
func once(seen *uint64, num protowire.Number) error {
	bit := uint64(1) << (num % 64)
	if *seen&bit != 0 {
		return errNonCanonical
	}
	*seen |= bit
	return nil
}

func decodeView(b []byte) (*callledgerv1.Call, error) {
	c := &callledgerv1.Call{}
	var (
		seen        uint64
		events      int64
		terminal    *statusReport
		nonterminal *statusReport
		hangup      bool
		hangupReq   *callledgerv1.HangupRequest
		dial        *callledgerv1.DialOutcome
	)
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		if typ == protowire.VarintType && num == recLastPosition {
			c.LastPosition = v
			return nil
		}
		if typ != protowire.BytesType {
			return nil // not a field of the view, or unknown: skipped as proto.Unmarshal keeps it aside
		}
		var err error
		switch num {
		case recCallSid:
			c.CallSid, err = str(data)
		case recOwnEventIDs:
			events++
		case recIdentity:
			if err = once(&seen, num); err == nil {
				err = decodeIdentity(data, c)
			}
		case recParent:
			if err = once(&seen, num); err == nil {
				c.ParentCallSid, err = stringField(data, 2)
			}
		case recChildCallSids:
			var s string
			if s, err = str(data); err == nil {
				c.ChildCallSids = append(c.ChildCallSids, s)
			}
		case recNonterminal, recTerminal:
			if err = once(&seen, num); err == nil {
				r := &statusReport{}
				if err = r.decode(data); err == nil {
					if num == recTerminal {
						terminal = r
					} else {
						nonterminal = r
					}
				}
			}
		case recInitiatedAt, recRingingAt, recAnsweredAt, recStartTime:
			if err = once(&seen, num); err == nil {
				var ts *timestamppb.Timestamp
				if ts, err = decodeTimestamp(data); err == nil {
					switch num {
					case recInitiatedAt:
						c.InitiatedAt = ts
					case recRingingAt:
						c.RingingAt = ts
					case recAnsweredAt:
						c.AnsweredAt = ts
					default:
						c.StartTime = ts
					}
				}
			}
		case recRecordings:
			var rec *callledgerv1.Recording
			if rec, err = decodeReportOf(data, func() *callledgerv1.Recording { return &callledgerv1.Recording{} }); err == nil {
				c.Recordings = append(c.Recordings, rec)
			}
		case recLastDial:
			if err = once(&seen, num); err == nil {
				dial, err = decodeReportOf(data, func() *callledgerv1.DialOutcome { return &callledgerv1.DialOutcome{} })
			}
		case recAnsweredBy:
			if err = once(&seen, num); err == nil {
				c.AnsweredBy, err = stringField(data, 2)
			}
		case recRootCallSid:
			c.RootCallSid, err = str(data)
		case recHangup:
			if err = once(&seen, num); err == nil {
				hangup = true
				hangupReq, err = decodeReportOf(data, func() *callledgerv1.HangupRequest { return &callledgerv1.HangupRequest{} })
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// What View derives, in View's order.
	c.Placeholder = events == 0
	c.EventCount = events
	c.Dial = dial
	if c.RootCallSid == "" {
		c.RootCallSid = c.CallSid
	}
	switch {
	case terminal != nil:
		c.Status, c.Terminal, c.StatusSource = terminal.status, true, terminal.source
		c.DurationSeconds, c.SipResponseCode, c.EndedAt = terminal.duration, terminal.sip, terminal.at
	case nonterminal != nil:
		c.Status, c.StatusSource = nonterminal.status, nonterminal.source
	}
	if hangup {
		c.HangupRequest = hangupReq
		c.Ending = !c.Terminal
	}
	return c, nil
}

// stringField returns field num (a string) of the message in data, empty
// when unset.
func stringField(data []byte, num protowire.Number) (string, error) {
	out := ""
	err := fields(data, func(n protowire.Number, typ protowire.Type, _ uint64, v []byte) error {
		if n == fieldKey && typ == protowire.BytesType {
			return checkKey(v)
		}
		if n != num || typ != protowire.BytesType {
			return nil
		}
		var err error
		out, err = str(v)
		return err
	})
	return out, err
}

// fieldKey is the field number of the Key in every state report.
const fieldKey = 1

// checkKey checks that a report's Key, which the view does not show, is
// well-formed, as proto.Unmarshal would.
func checkKey(data []byte) error {
	return fields(data, func(protowire.Number, protowire.Type, uint64, []byte) error { return nil })
}

// decodeIdentity reads the strings of a state Identity into c.
func decodeIdentity(data []byte, c *callledgerv1.Call) error {
	return fields(data, func(num protowire.Number, typ protowire.Type, _ uint64, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		var dst *string
		switch num {
		case fieldKey:
			return checkKey(v)
		case 2:
			dst = &c.AccountSid
		case 3:
			dst = &c.Direction
		case 4:
			dst = &c.From
		case 5:
			dst = &c.To
		default:
			return nil
		}
		var err error
		*dst, err = str(v)
		return err
	})
}

// statusReport is the part of a state StatusReport the view shows.
type statusReport struct {
	status   callledgerv1.CallStatus
	source   callledgerv1.Source
	duration *int64
	sip      *int32
	at       *timestamppb.Timestamp
}

func (r *statusReport) decode(data []byte) error {
	var seen uint64
	return fields(data, func(num protowire.Number, typ protowire.Type, v uint64, d []byte) error {
		switch {
		case num == fieldKey && typ == protowire.BytesType:
			return checkKey(d)
		case num == 2 && typ == protowire.VarintType:
			r.status = callledgerv1.CallStatus(int32(v))
		case num == 3 && typ == protowire.VarintType:
			r.source = callledgerv1.Source(int32(v))
		case num == 4 && typ == protowire.VarintType:
			x := int64(v)
			r.duration = &x
		case num == 5 && typ == protowire.VarintType:
			x := int32(v)
			r.sip = &x
		case num == 6 && typ == protowire.BytesType:
			if err := once(&seen, num); err != nil {
				return err
			}
			ts, err := decodeTimestamp(d)
			if err != nil {
				return err
			}
			r.at = ts
		}
		return nil
	})
}

// decodeTimestamp decodes a google.protobuf.Timestamp by hand: a record
// holds up to five, and proto.Unmarshal's per-message setup would cost
// more than the two varints. Anything else in it is left to the slow
// path, which keeps it as unknown fields.
func decodeTimestamp(data []byte) (*timestamppb.Timestamp, error) {
	ts := &timestamppb.Timestamp{}
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			ts.Seconds = int64(v)
		case num == 2 && typ == protowire.VarintType:
			ts.Nanos = int32(v)
		default:
			return errNonCanonical // unknown fields, which a Timestamp keeps
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ts, nil
}

// decodeReportOf decodes field 2 (the API message) of a state report
// (RecordingReport, DialReport, HangupReport); nil when unset, as the
// getters of View return.
func decodeReportOf[M proto.Message](data []byte, newM func() M) (M, error) {
	var out M
	set := false
	err := fields(data, func(num protowire.Number, typ protowire.Type, _ uint64, v []byte) error {
		if num == fieldKey && typ == protowire.BytesType {
			return checkKey(v)
		}
		if num != 2 || typ != protowire.BytesType {
			return nil
		}
		if set {
			return errNonCanonical
		}
		set = true
		m := newM()
		if err := proto.Unmarshal(v, m); err != nil {
			return err
		}
		out = m
		return nil
	})
	return out, err
}
