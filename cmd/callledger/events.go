package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
)

func eventsCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("events", stderr)
	var sf storeFlags
	sf.register(fs)
	var kek kekFlag
	kek.register(fs)
	return &ffcli.Command{
		Name:       "events",
		ShortUsage: "callledger events <CallSid> [--data-dir DIR | --store esdb://...]",
		ShortHelp:  "print the events of one call, one JSON object per line",
		LongHelp: "Reads the event store directly. The embedded store works offline on the data\n" +
			"directory of a stopped server; with --store it reads KurrentDB, also while\n" +
			"servers are running. A ConferenceSid names the conference's stream, and a\n" +
			"quarantine stream can be named instead of a CallSid (quarantine-status,\n" +
			"quarantine-events, ...).",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			pos, err := parseInterspersed(fs, args)
			if err != nil {
				return err
			}
			if len(pos) != 1 {
				return errors.New("usage: callledger events <CallSid> [--data-dir DIR | --store esdb://...]")
			}
			stream := pos[0]
			switch {
			case strings.HasPrefix(stream, eventcodec.QuarantineStreamPrefix):
			case eventcodec.ValidConferenceSid(stream):
				stream = eventcodec.ConferenceStream(stream)
			case !eventcodec.ValidCallSid(stream):
				return fmt.Errorf("%q is not a CallSid (CA followed by 32 hex digits)", stream)
			default:
				stream = eventcodec.CallStream(stream)
			}
			logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			store, err := sf.openOffline(ctx, logger, ", or read a copy of the directory")
			if err != nil {
				return err
			}
			defer store.Close()
			open := &lazyOpener{kek: &kek, dataDir: sf.dataDir, log: logger}
			defer open.Close()
			return printEvents(ctx, store, stream, open, stdout)
		},
	}
}

// eventJSON is one line of `callledger events`.
type eventJSON struct {
	Stream     string          `json:"stream"`
	Revision   uint64          `json:"revision"`
	Position   uint64          `json:"position"`
	Type       string          `json:"type"`
	EventID    string          `json:"event_id"`
	Source     string          `json:"source"`
	ReceivedAt string          `json:"received_at,omitempty"`
	ReportedAt string          `json:"reported_at,omitempty"`
	Fields     json.RawMessage `json:"fields"`
	CloudEvent json.RawMessage `json:"cloud_event,omitempty"`
	Request    *requestJSON    `json:"request,omitempty"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	// Redacted: the call was erased; its personal fields are gone.
	Redacted bool `json:"redacted,omitempty"`
}

type requestJSON struct {
	Method      string            `json:"method"`
	URL         string            `json:"url"`
	ContentType string            `json:"content_type,omitempty"`
	RemoteAddr  string            `json:"remote_addr,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Body        string            `json:"body,omitempty"`
}

func printEvents(ctx context.Context, store eventstore.Store, stream string, open *lazyOpener, w io.Writer) error {
	out := bufio.NewWriter(w)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for from := uint64(0); ; {
		recs, err := store.ReadStream(ctx, stream, from, 512)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			line, err := eventLine(ctx, rec, open)
			if err != nil {
				return err
			}
			if err := enc.Encode(line); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		from = recs[len(recs)-1].Revision + 1
	}
	return out.Flush()
}

func eventLine(ctx context.Context, rec eventstore.RecordedEvent, open *lazyOpener) (eventJSON, error) {
	ev, err := eventcodec.Decode(rec)
	if err != nil {
		return eventJSON{}, err
	}
	o, err := open.Open(ctx, ev)
	if err != nil {
		return eventJSON{}, fmt.Errorf("%s@%d: %w", rec.Stream, rec.Revision, err)
	}
	line := eventJSON{
		Stream:   rec.Stream,
		Revision: rec.Revision,
		Position: uint64(rec.Position),
		Type:     rec.Type,
		EventID:  ev.GetEventId(),
		Source:   ev.GetSource().String(),
		Redacted: o.Redacted,
	}
	if ev.GetReceivedAt() != nil {
		line.ReceivedAt = ev.GetReceivedAt().AsTime().Format(time.RFC3339Nano)
	}
	if ev.GetReportedAt() != nil {
		line.ReportedAt = ev.GetReportedAt().AsTime().Format(time.RFC3339Nano)
	}
	if line.Fields, err = marshalBody(ev); err != nil {
		return eventJSON{}, err
	}
	if ce := ev.GetCloudEvent(); ce != nil && json.Valid(ce.GetRaw()) {
		line.CloudEvent = ce.GetRaw()
	}
	if req := ev.GetRequest(); req != nil {
		line.Request = &requestJSON{
			Method:      req.GetMethod(),
			URL:         req.GetUrl(),
			ContentType: req.GetContentType(),
			RemoteAddr:  req.GetRemoteAddr(),
			Headers:     map[string]string{},
		}
		for _, h := range req.GetHeaders() {
			if prev, ok := line.Request.Headers[h.GetName()]; ok {
				line.Request.Headers[h.GetName()] = prev + ", " + h.GetValue()
			} else {
				line.Request.Headers[h.GetName()] = h.GetValue()
			}
		}
		line.Parameters = parameters(ev)
		if line.Parameters == nil {
			line.Request.Body = string(req.GetBody())
		}
	}
	return line, nil
}

// marshalBody renders the normalized fields of ev.
func marshalBody(ev *callledgerv1.Event) (json.RawMessage, error) {
	var body proto.Message
	switch b := ev.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		body = b.CallStatusReported
	case *callledgerv1.Event_DialCompleted:
		body = b.DialCompleted
	case *callledgerv1.Event_RecordingStatusReported:
		body = b.RecordingStatusReported
	case *callledgerv1.Event_RequestQuarantined:
		body = b.RequestQuarantined
	default:
		return json.RawMessage("null"), nil
	}
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("render event %s: %w", ev.GetEventId(), err)
	}
	return out, nil
}

// parameters returns the Twilio parameters of the verbatim request: the
// form body, the query of a GET, or the request.parameters of an Event
// Streams CloudEvent. nil when the request holds none that parse.
func parameters(ev *callledgerv1.Event) map[string]any {
	req := ev.GetRequest()
	if ce := ev.GetCloudEvent(); ce != nil {
		return cloudEventParameters(ce.GetRaw())
	}
	raw := string(req.GetBody())
	if req.GetMethod() == "GET" {
		u, err := url.Parse(req.GetUrl())
		if err != nil {
			return nil
		}
		raw = u.RawQuery
	} else if !strings.HasPrefix(req.GetContentType(), "application/x-www-form-urlencoded") {
		return nil
	}
	vals, err := url.ParseQuery(raw)
	if err != nil || len(vals) == 0 {
		return nil
	}
	out := make(map[string]any, len(vals))
	for k, v := range vals {
		if len(v) == 1 {
			out[k] = v[0]
		} else {
			out[k] = v
		}
	}
	return out
}

func cloudEventParameters(raw []byte) map[string]any {
	var ce struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(raw, &ce) != nil {
		return nil
	}
	data := ce.Data
	var s string
	if json.Unmarshal(data, &s) == nil {
		data = []byte(s)
	}
	var d struct {
		Request struct {
			Parameters map[string]any `json:"parameters"`
		} `json:"request"`
	}
	if json.Unmarshal(data, &d) != nil {
		return nil
	}
	return d.Request.Parameters
}
