// Package callexport turns call-state records into flat rows, one per call
// leg, and writes them as Parquet, CSV or JSON Lines for analysts' tools.
// Every format has the same columns, in the same order, under the same
// names; a value that is not known is null (an empty CSV field).
package callexport

import (
	"io"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/rowfile"
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
var Columns = rowfile.Columns[Row]()

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
	w      *rowfile.Writer[Row]
	rows   int
}

// Formats are the supported formats.
var Formats = rowfile.Formats

// New returns an Exporter that writes format to out. Close must be called
// to finish the file (Parquet writes its footer then).
func New(format string, out io.Writer, f Filter) (*Exporter, error) {
	w, err := rowfile.New[Row](format, out)
	if err != nil {
		return nil, err
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
	row := rowOfCall(c)
	return e.w.Write(&row)
}

// Rows is the number of rows written.
func (e *Exporter) Rows() int { return e.rows }

// Close finishes the file.
func (e *Exporter) Close() error { return e.w.Close() }
