// Package callexport turns call-state records into flat rows, one per call
// leg, and writes them as Parquet, CSV or JSON Lines for analysts' tools.
// Every format has the same columns, in the same order, under the same
// names; a value that is not known is null (an empty CSV field).
package callexport

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
)

// Row is one call leg, flat.
type Row struct {
	CallSid                 string     `parquet:"call_sid" json:"call_sid"`
	AccountSid              string     `parquet:"account_sid" json:"account_sid"`
	ParentCallSid           string     `parquet:"parent_call_sid" json:"parent_call_sid"`
	RootCallSid             string     `parquet:"root_call_sid" json:"root_call_sid"`
	Status                  string     `parquet:"status" json:"status"`
	Terminal                bool       `parquet:"terminal" json:"terminal"`
	Placeholder             bool       `parquet:"placeholder" json:"placeholder"`
	Direction               string     `parquet:"direction" json:"direction"`
	From                    string     `parquet:"from" json:"from"`
	To                      string     `parquet:"to" json:"to"`
	StartTime               *time.Time `parquet:"start_time,optional,timestamp(nanosecond)" json:"start_time"`
	InitiatedAt             *time.Time `parquet:"initiated_at,optional,timestamp(nanosecond)" json:"initiated_at"`
	RingingAt               *time.Time `parquet:"ringing_at,optional,timestamp(nanosecond)" json:"ringing_at"`
	AnsweredAt              *time.Time `parquet:"answered_at,optional,timestamp(nanosecond)" json:"answered_at"`
	EndedAt                 *time.Time `parquet:"ended_at,optional,timestamp(nanosecond)" json:"ended_at"`
	DurationSeconds         *int64     `parquet:"duration_seconds,optional" json:"duration_seconds"`
	AnsweredBy              string     `parquet:"answered_by" json:"answered_by"`
	SipResponseCode         *int32     `parquet:"sip_response_code,optional" json:"sip_response_code"`
	DialCallSid             string     `parquet:"dial_call_sid" json:"dial_call_sid"`
	DialCallStatus          string     `parquet:"dial_call_status" json:"dial_call_status"`
	DialCallDurationSeconds *int64     `parquet:"dial_call_duration_seconds,optional" json:"dial_call_duration_seconds"`
	RecordingCount          int32      `parquet:"recording_count" json:"recording_count"`
	HangupRequested         bool       `parquet:"hangup_requested" json:"hangup_requested"`
	HangupRequestedAt       *time.Time `parquet:"hangup_requested_at,optional,timestamp(nanosecond)" json:"hangup_requested_at"`
	EventCount              int64      `parquet:"event_count" json:"event_count"`
	LastPosition            int64      `parquet:"last_position" json:"last_position"`
}

// Columns are the column names, in order.
var Columns = []string{
	"call_sid", "account_sid", "parent_call_sid", "root_call_sid", "status", "terminal", "placeholder",
	"direction", "from", "to", "start_time", "initiated_at", "ringing_at", "answered_at", "ended_at",
	"duration_seconds", "answered_by", "sip_response_code", "dial_call_sid", "dial_call_status",
	"dial_call_duration_seconds", "recording_count", "hangup_requested", "hangup_requested_at",
	"event_count", "last_position",
}

// Filter selects the rows to export; the zero value keeps every call.
type Filter struct {
	// Since and Until bound the call's start time: Since <= start < Until.
	Since, Until time.Time
	// ActiveOnly keeps calls under way (status known, not terminal).
	ActiveOnly bool
}

// Match reports whether f keeps c.
func (f Filter) Match(c *callledgerv1.Call) bool {
	if f.ActiveOnly && !callstate.Active(c) {
		return false
	}
	start := c.GetStartTime().AsTime()
	if !f.Since.IsZero() && (c.GetStartTime() == nil || start.Before(f.Since)) {
		return false
	}
	if !f.Until.IsZero() && (c.GetStartTime() == nil || !start.Before(f.Until)) {
		return false
	}
	return true
}

// RowOf flattens a stored record.
func RowOf(rec *statev1.CallRecord) Row { return rowOfCall(callstate.View(rec)) }

func rowOfCall(c *callledgerv1.Call) Row {
	r := Row{
		CallSid:         c.GetCallSid(),
		AccountSid:      c.GetAccountSid(),
		ParentCallSid:   c.GetParentCallSid(),
		RootCallSid:     c.GetRootCallSid(),
		Status:          statusName(c.GetStatus()),
		Terminal:        c.GetTerminal(),
		Placeholder:     c.GetPlaceholder(),
		Direction:       c.GetDirection(),
		From:            c.GetFrom(),
		To:              c.GetTo(),
		StartTime:       timeOf(c.GetStartTime()),
		InitiatedAt:     timeOf(c.GetInitiatedAt()),
		RingingAt:       timeOf(c.GetRingingAt()),
		AnsweredAt:      timeOf(c.GetAnsweredAt()),
		EndedAt:         timeOf(c.GetEndedAt()),
		DurationSeconds: c.DurationSeconds,
		AnsweredBy:      c.GetAnsweredBy(),
		SipResponseCode: c.SipResponseCode,
		RecordingCount:  int32(len(c.GetRecordings())),
		EventCount:      c.GetEventCount(),
		LastPosition:    int64(c.GetLastPosition()),
	}
	if d := c.GetDial(); d != nil {
		r.DialCallSid = d.GetDialCallSid()
		r.DialCallStatus = d.GetDialCallStatusRaw()
		if r.DialCallStatus == "" && d.GetDialCallStatus() != callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED {
			r.DialCallStatus = statusName(d.GetDialCallStatus())
		}
		r.DialCallDurationSeconds = d.DialCallDurationSeconds
	}
	if h := c.GetHangupRequest(); h != nil {
		r.HangupRequested = true
		r.HangupRequestedAt = timeOf(h.GetRequestedAt())
	}
	return r
}

// statusName is Twilio's spelling of a status ("in-progress"), as the
// read model names it; empty when unknown.
func statusName(s callledgerv1.CallStatus) string {
	if s == callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED {
		return ""
	}
	return callstore.StatusName(s)
}

func timeOf(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}

// Exporter writes rows of a call-state read model in one format.
type Exporter struct {
	filter Filter
	w      rowWriter
	rows   int
}

type rowWriter interface {
	write(Row) error
	close() error
}

// Formats are the supported formats.
var Formats = []string{"parquet", "csv", "jsonl"}

// New returns an Exporter that writes format to out. Close must be called
// to finish the file (Parquet writes its footer then).
func New(format string, out io.Writer, f Filter) (*Exporter, error) {
	var w rowWriter
	switch format {
	case "parquet":
		w = &parquetWriter{w: parquet.NewGenericWriter[Row](out, parquet.Compression(&parquet.Zstd))}
	case "csv":
		cw := csv.NewWriter(out)
		if err := cw.Write(Columns); err != nil {
			return nil, fmt.Errorf("export csv: %w", err)
		}
		w = &csvWriter{w: cw}
	case "jsonl":
		w = &jsonlWriter{enc: json.NewEncoder(out)}
	default:
		return nil, fmt.Errorf("export format %q: want parquet, csv or jsonl", format)
	}
	return &Exporter{filter: f, w: w}, nil
}

// Add writes the row of rec when the filter keeps it.
func (e *Exporter) Add(rec *statev1.CallRecord) error {
	c := callstate.View(rec)
	if !e.filter.Match(c) {
		return nil
	}
	e.rows++
	return e.w.write(rowOfCall(c))
}

// Rows is the number of rows written.
func (e *Exporter) Rows() int { return e.rows }

// Close finishes the file.
func (e *Exporter) Close() error { return e.w.close() }

type parquetWriter struct {
	w   *parquet.GenericWriter[Row]
	buf []Row
}

func (p *parquetWriter) write(r Row) error {
	p.buf = append(p.buf, r)
	if len(p.buf) < 4096 {
		return nil
	}
	return p.flush()
}

func (p *parquetWriter) flush() error {
	if _, err := p.w.Write(p.buf); err != nil {
		return fmt.Errorf("export parquet: %w", err)
	}
	p.buf = p.buf[:0]
	return nil
}

func (p *parquetWriter) close() error {
	if err := p.flush(); err != nil {
		return err
	}
	if err := p.w.Close(); err != nil {
		return fmt.Errorf("export parquet: %w", err)
	}
	return nil
}

type csvWriter struct {
	w      *csv.Writer
	fields []string
}

func (c *csvWriter) write(r Row) error {
	c.fields = append(c.fields[:0],
		r.CallSid, r.AccountSid, r.ParentCallSid, r.RootCallSid, r.Status, strconv.FormatBool(r.Terminal), strconv.FormatBool(r.Placeholder),
		r.Direction, r.From, r.To, csvTime(r.StartTime), csvTime(r.InitiatedAt), csvTime(r.RingingAt), csvTime(r.AnsweredAt), csvTime(r.EndedAt),
		csvInt(r.DurationSeconds), r.AnsweredBy, csvInt(r.SipResponseCode), r.DialCallSid, r.DialCallStatus,
		csvInt(r.DialCallDurationSeconds), strconv.Itoa(int(r.RecordingCount)), strconv.FormatBool(r.HangupRequested), csvTime(r.HangupRequestedAt),
		strconv.FormatInt(r.EventCount, 10), strconv.FormatInt(r.LastPosition, 10),
	)
	if err := c.w.Write(c.fields); err != nil {
		return fmt.Errorf("export csv: %w", err)
	}
	return nil
}

func (c *csvWriter) close() error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return fmt.Errorf("export csv: %w", err)
	}
	return nil
}

func csvTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

func csvInt[T int32 | int64](v *T) string {
	if v == nil {
		return ""
	}
	return strconv.FormatInt(int64(*v), 10)
}

type jsonlWriter struct{ enc *json.Encoder }

func (j *jsonlWriter) write(r Row) error {
	if err := j.enc.Encode(r); err != nil {
		return fmt.Errorf("export jsonl: %w", err)
	}
	return nil
}

func (j *jsonlWriter) close() error { return nil }
