// Package eventexport turns the events of the log into flat rows, one per
// event, and writes them as Parquet, CSV or JSON Lines, so that an analyst
// can recompute any projection in DuckDB or pandas (docs/ANALYSTS.md).
// Every format has the same columns in the same order; a value the event
// does not carry is null (an empty CSV field). Personal fields (numbers,
// URLs, error messages that quote numbers) are filled only when asked for,
// and through a Personal, the one place that opens sealed personal data
// with the key store and leaves an erased subject's fields null.
package eventexport

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/seal"
)

// Row is one event, flat.
type Row struct {
	Position   int64      `parquet:"position" json:"position"`
	Stream     string     `parquet:"stream" json:"stream"`
	Revision   int64      `parquet:"revision" json:"revision"`
	Type       string     `parquet:"type" json:"type"`
	EventID    string     `parquet:"event_id" json:"event_id"`
	Source     string     `parquet:"source" json:"source"`
	CallSid    string     `parquet:"call_sid" json:"call_sid"`
	ParentSid  string     `parquet:"parent_call_sid" json:"parent_call_sid"`
	AccountSid string     `parquet:"account_sid" json:"account_sid"`
	Status     string     `parquet:"status" json:"status"`
	ReceivedAt *time.Time `parquet:"received_at,optional,timestamp(nanosecond)" json:"received_at"`
	ReportedAt *time.Time `parquet:"reported_at,optional,timestamp(nanosecond)" json:"reported_at"`
	// DeliveryDelaySeconds is received_at − reported_at: how late Twilio
	// delivered the fact (its Timestamp has one-second resolution).
	DeliveryDelaySeconds *float64 `parquet:"delivery_delay_seconds,optional" json:"delivery_delay_seconds"`

	Direction               string     `parquet:"direction" json:"direction"`
	SequenceNumber          *int64     `parquet:"sequence_number,optional" json:"sequence_number"`
	CallDurationSeconds     *int64     `parquet:"call_duration_seconds,optional" json:"call_duration_seconds"`
	DurationMinutes         *int64     `parquet:"duration_minutes,optional" json:"duration_minutes"`
	SipResponseCode         *int32     `parquet:"sip_response_code,optional" json:"sip_response_code"`
	AnsweredBy              string     `parquet:"answered_by" json:"answered_by"`
	CallbackSource          string     `parquet:"callback_source" json:"callback_source"`
	DialCallSid             string     `parquet:"dial_call_sid" json:"dial_call_sid"`
	DialCallStatus          string     `parquet:"dial_call_status" json:"dial_call_status"`
	DialCallDurationSeconds *int64     `parquet:"dial_call_duration_seconds,optional" json:"dial_call_duration_seconds"`
	DialBridged             *bool      `parquet:"dial_bridged,optional" json:"dial_bridged"`
	RecordingSid            string     `parquet:"recording_sid" json:"recording_sid"`
	RecordingStatus         string     `parquet:"recording_status" json:"recording_status"`
	RecordingDuration       *int64     `parquet:"recording_duration_seconds,optional" json:"recording_duration_seconds"`
	RecordingChannels       *int32     `parquet:"recording_channels,optional" json:"recording_channels"`
	RecordingSource         string     `parquet:"recording_source" json:"recording_source"`
	RecordingTrack          string     `parquet:"recording_track" json:"recording_track"`
	RecordingStartTime      *time.Time `parquet:"recording_start_time,optional,timestamp(nanosecond)" json:"recording_start_time"`
	ErrorCode               string     `parquet:"error_code" json:"error_code"`
	HTTPStatus              *int32     `parquet:"http_status,optional" json:"http_status"`
	HangupRequestID         string     `parquet:"hangup_request_id" json:"hangup_request_id"`
	HangupRequestedBy       string     `parquet:"hangup_requested_by" json:"hangup_requested_by"`
	HangupEndCall           *bool      `parquet:"hangup_end_call,optional" json:"hangup_end_call"`
	NotFound                *bool      `parquet:"not_found,optional" json:"not_found"`
	StartTime               *time.Time `parquet:"start_time,optional,timestamp(nanosecond)" json:"start_time"`
	EndTime                 *time.Time `parquet:"end_time,optional,timestamp(nanosecond)" json:"end_time"`
	QuarantineKind          string     `parquet:"quarantine_kind" json:"quarantine_kind"`
	QuarantineReason        string     `parquet:"quarantine_reason" json:"quarantine_reason"`
	CloudEventID            string     `parquet:"cloud_event_id" json:"cloud_event_id"`
	CloudEventType          string     `parquet:"cloud_event_type" json:"cloud_event_type"`

	// Personal fields: null unless asked for, and for erased subjects.
	From         *string `parquet:"from,optional" json:"from"`
	To           *string `parquet:"to,optional" json:"to"`
	RecordingURL *string `parquet:"recording_url,optional" json:"recording_url"`
	ErrorMessage *string `parquet:"error_message,optional" json:"error_message"`
}

// Columns are the column names, in order: Row's fields' names.
var Columns = func() []string {
	t := reflect.TypeFor[Row]()
	cols := make([]string, t.NumField())
	for i := range cols {
		cols[i] = strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
	}
	return cols
}()

// PersonalColumns are the columns filled only with personal data.
var PersonalColumns = []string{"from", "to", "recording_url", "error_message"}

// Formats are the supported formats.
var Formats = []string{"parquet", "csv", "jsonl"}

// Personal supplies an event's personal fields. It may change ev, filling
// them in, and reports false when the subject was erased (the row's
// personal columns are then null). Open is the one used.
type Personal func(ctx context.Context, ev *callledgerv1.Event) (bool, error)

// Opener opens the sealed personal fields of an event; *seal.Events is
// one.
type Opener interface {
	Open(ctx context.Context, ev *callledgerv1.Event, parts ...seal.Part) (seal.Opened, error)
}

// Open is the Personal of a ledger whose events are sealed (and of one
// stored in the clear, whose events carry their personal fields): it
// opens their facts with o. An erased subject's personal columns are null;
// a key the store does not have, or a ciphertext that does not open, stops
// the export with an error.
func Open(o Opener) Personal {
	return func(ctx context.Context, ev *callledgerv1.Event) (bool, error) {
		r, err := o.Open(ctx, ev, seal.Facts)
		if err != nil {
			return false, err
		}
		return !r.Redacted, nil
	}
}

// Options choose what is exported.
type Options struct {
	// Since and Until bound the events' received time: Since <= t < Until.
	Since, Until time.Time
	// Personal fills the personal columns; nil leaves them null.
	Personal Personal
}

// Exporter writes rows in one format.
type Exporter struct {
	opts Options
	w    rowWriter
	rows int
}

type rowWriter interface {
	write(*Row) error
	close() error
}

// New returns an Exporter that writes format to out. Close must be called
// to finish the file (Parquet writes its footer then).
func New(format string, out io.Writer, opts Options) (*Exporter, error) {
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
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		w = &jsonlWriter{enc: enc}
	default:
		return nil, fmt.Errorf("export format %q: want parquet, csv or jsonl", format)
	}
	return &Exporter{opts: opts, w: w}, nil
}

// Rows is the number of rows written.
func (e *Exporter) Rows() int { return e.rows }

// Close finishes the file.
func (e *Exporter) Close() error { return e.w.close() }

// readBatch is how many events Export reads at a time.
const readBatch = 4096

// Export reads the whole log in order and writes a row per event that the
// time bounds keep.
func (e *Exporter) Export(ctx context.Context, store eventstore.Store) error {
	from := eventstore.Start
	for {
		recs, err := store.ReadAll(ctx, from, readBatch)
		if err != nil {
			return fmt.Errorf("read the log after %d: %w", from, err)
		}
		if len(recs) == 0 {
			return nil
		}
		for _, rec := range recs {
			if err := e.Add(ctx, rec); err != nil {
				return err
			}
		}
		from = recs[len(recs)-1].Position
	}
}

// Add writes the row of rec when the time bounds keep it.
func (e *Exporter) Add(ctx context.Context, rec eventstore.RecordedEvent) error {
	ev, err := eventcodec.DecodeFacts(rec)
	if err != nil {
		return err
	}
	received := ev.GetReceivedAt().AsTime()
	if !e.opts.Since.IsZero() && received.Before(e.opts.Since) {
		return nil
	}
	if !e.opts.Until.IsZero() && !received.Before(e.opts.Until) {
		return nil
	}
	row := rowOf(rec, ev)
	if e.opts.Personal != nil {
		ok, err := e.opts.Personal(ctx, ev)
		if err != nil {
			return fmt.Errorf("personal data of event %s: %w", ev.GetEventId(), err)
		}
		if ok {
			personal(&row, ev)
		}
	}
	e.rows++
	return e.w.write(&row)
}

// rowOf flattens the non-personal facts of ev.
func rowOf(rec eventstore.RecordedEvent, ev *callledgerv1.Event) Row {
	r := Row{
		Position:   int64(rec.Position),
		Stream:     rec.Stream,
		Revision:   int64(rec.Revision),
		Type:       rec.Type,
		EventID:    ev.GetEventId(),
		Source:     sourceName(ev.GetSource()),
		CallSid:    ev.GetCallSid(),
		ReceivedAt: timeOf(ev.GetReceivedAt()),
		ReportedAt: timeOf(ev.GetReportedAt()),
	}
	if r.ReceivedAt != nil && r.ReportedAt != nil {
		d := r.ReceivedAt.Sub(*r.ReportedAt).Seconds()
		r.DeliveryDelaySeconds = &d
	}
	if ce := ev.GetCloudEvent(); ce != nil {
		r.CloudEventID, r.CloudEventType = ce.GetId(), ce.GetType()
	}
	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		c := b.CallStatusReported
		r.Status = status(c.GetStatusRaw(), c.GetStatus())
		r.AccountSid, r.ParentSid, r.Direction = c.GetAccountSid(), c.GetParentCallSid(), c.GetDirection()
		r.SequenceNumber, r.CallDurationSeconds, r.DurationMinutes = c.SequenceNumber, c.CallDurationSeconds, c.DurationMinutes
		r.SipResponseCode, r.AnsweredBy, r.CallbackSource = c.SipResponseCode, c.GetAnsweredBy(), c.GetCallbackSource()
		r.RecordingSid = c.GetRecordingSid()
	case *callledgerv1.Event_DialCompleted:
		d := b.DialCompleted
		r.Status = status(d.GetParentStatusRaw(), d.GetParentStatus())
		r.AccountSid, r.Direction = d.GetAccountSid(), d.GetDirection()
		r.DialCallSid = d.GetDialCallSid()
		r.DialCallStatus = status(d.GetDialCallStatusRaw(), d.GetDialCallStatus())
		r.DialCallDurationSeconds, r.DialBridged = d.DialCallDurationSeconds, d.DialBridged
	case *callledgerv1.Event_RecordingStatusReported:
		g := b.RecordingStatusReported
		r.AccountSid, r.RecordingSid, r.RecordingStatus = g.GetAccountSid(), g.GetRecordingSid(), g.GetRecordingStatus()
		r.RecordingDuration, r.RecordingChannels = g.RecordingDurationSeconds, g.RecordingChannels
		r.RecordingSource, r.RecordingTrack = g.GetRecordingSource(), g.GetRecordingTrack()
		r.RecordingStartTime, r.ErrorCode = timeOf(g.GetRecordingStartTime()), g.GetErrorCode()
	case *callledgerv1.Event_RequestQuarantined:
		r.QuarantineKind, r.QuarantineReason = b.RequestQuarantined.GetKind(), b.RequestQuarantined.GetReason()
	case *callledgerv1.Event_HangupRequested:
		h := b.HangupRequested
		r.HangupRequestID, r.HangupRequestedBy = h.GetRequestId(), h.GetRequestedBy()
		end := h.GetEndCall()
		r.HangupEndCall = &end
	case *callledgerv1.Event_HangupSent:
		h := b.HangupSent
		r.HangupRequestID, r.Status, r.AccountSid = h.GetRequestId(), h.GetStatus(), h.GetAccountSid()
	case *callledgerv1.Event_HangupFailed:
		h := b.HangupFailed
		r.HangupRequestID, r.Status, r.AccountSid = h.GetRequestId(), h.GetStatus(), h.GetAccountSid()
		if h.GetErrorCode() != 0 {
			r.ErrorCode = strconv.Itoa(int(h.GetErrorCode()))
		}
		if h.GetHttpStatus() != 0 {
			s := h.GetHttpStatus()
			r.HTTPStatus = &s
		}
	case *callledgerv1.Event_CallReconciled:
		c := b.CallReconciled
		r.Status = status(c.GetStatusRaw(), c.GetStatus())
		r.AccountSid, r.ParentSid, r.Direction = c.GetAccountSid(), c.GetParentCallSid(), c.GetDirection()
		r.CallDurationSeconds, r.AnsweredBy = c.DurationSeconds, c.GetAnsweredBy()
		r.StartTime, r.EndTime = timeOf(c.GetStartTime()), timeOf(c.GetEndTime())
		nf := c.GetNotFound()
		r.NotFound = &nf
	}
	return r
}

// personal copies the personal fields of ev into r.
func personal(r *Row, ev *callledgerv1.Event) {
	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		r.From, r.To, r.RecordingURL = ptr(b.CallStatusReported.GetFrom()), ptr(b.CallStatusReported.GetTo()), ptr(b.CallStatusReported.GetRecordingUrl())
	case *callledgerv1.Event_DialCompleted:
		r.From, r.To, r.RecordingURL = ptr(b.DialCompleted.GetFrom()), ptr(b.DialCompleted.GetTo()), ptr(b.DialCompleted.GetRecordingUrl())
	case *callledgerv1.Event_RecordingStatusReported:
		r.RecordingURL = ptr(b.RecordingStatusReported.GetRecordingUrl())
	case *callledgerv1.Event_CallReconciled:
		r.From, r.To = ptr(b.CallReconciled.GetFrom()), ptr(b.CallReconciled.GetTo())
	case *callledgerv1.Event_HangupFailed:
		r.ErrorMessage = ptr(b.HangupFailed.GetErrorMessage())
	}
}

// ptr is nil for an empty string: a field the event does not carry.
func ptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// status is Twilio's spelling: the raw value when the event kept it, else
// the enum's name ("in-progress"); empty when unknown.
func status(raw string, s callledgerv1.CallStatus) string {
	if raw != "" || s == callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED {
		return raw
	}
	name, _ := strings.CutPrefix(s.String(), "CALL_STATUS_")
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// sourceName is the source without its prefix, lower case:
// status_callback, dial_action, recording_status, event_streams,
// hangup_request, reconciliation.
func sourceName(s callledgerv1.Source) string {
	name, _ := strings.CutPrefix(s.String(), "SOURCE_")
	return strings.ToLower(name)
}

func timeOf(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}

type parquetWriter struct {
	w   *parquet.GenericWriter[Row]
	buf []Row
}

func (p *parquetWriter) write(r *Row) error {
	p.buf = append(p.buf, *r)
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

// csvWriter writes Row's fields in order: null is an empty field, times
// are RFC 3339.
type csvWriter struct {
	w      *csv.Writer
	fields []string
}

func (c *csvWriter) write(r *Row) error {
	v := reflect.ValueOf(r).Elem()
	c.fields = c.fields[:0]
	for i := range v.NumField() {
		c.fields = append(c.fields, csvField(v.Field(i)))
	}
	if err := c.w.Write(c.fields); err != nil {
		return fmt.Errorf("export csv: %w", err)
	}
	return nil
}

func csvField(f reflect.Value) string {
	if f.Kind() == reflect.Pointer {
		if f.IsNil() {
			return ""
		}
		f = f.Elem()
	}
	switch x := f.Interface().(type) {
	case string:
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case int64:
		return strconv.FormatInt(x, 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	panic(fmt.Sprintf("eventexport: no CSV form for %s", f.Type()))
}

func (c *csvWriter) close() error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return fmt.Errorf("export csv: %w", err)
	}
	return nil
}

type jsonlWriter struct{ enc *json.Encoder }

func (j *jsonlWriter) write(r *Row) error {
	if err := j.enc.Encode(r); err != nil {
		return fmt.Errorf("export jsonl: %w", err)
	}
	return nil
}

func (j *jsonlWriter) close() error { return nil }
