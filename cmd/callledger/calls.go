package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/peterbourgon/ff/v3/ffcli"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/twilio"
)

// callsCommand is `callledger calls`: the calls of a running server, over
// gRPC.
func callsCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("calls", stderr)
	return &ffcli.Command{
		Name:       "calls",
		ShortUsage: "callledger calls <list|get|watch|events|hangup> [flags]",
		ShortHelp:  "list, inspect, watch and hang up the calls of a running server",
		LongHelp: "Talks to a running server's gRPC port (--addr, default 127.0.0.1:9090), with\n" +
			"--token (or CALLLEDGER_TOKEN) when the server requires one. --output json prints\n" +
			"one protojson object per line, as the REST API answers.",
		FlagSet: fs,
		Options: ffOptions(),
		Subcommands: []*ffcli.Command{
			callsListCommand(stdout, stderr),
			callsGetCommand(stdout, stderr),
			callsWatchCommand(stdout, stderr),
			callsEventsCommand(stdout, stderr),
			callsHangupCommand(stdout, stderr),
		},
		Exec: func(context.Context, []string) error { return flag.ErrHelp },
	}
}

// filterFlags select calls, for list and watch.
type filterFlags struct {
	active bool
	status string
	parent string
	since  string
	until  string
}

func (f *filterFlags) register(fs *flag.FlagSet, activeDefault bool) {
	fs.BoolVar(&f.active, "active", activeDefault, "only calls that are not over (known status, not terminal)")
	fs.StringVar(&f.status, "status", "", "only calls in these statuses, comma-separated (queued, initiated, ringing, in-progress, completed, busy, failed, no-answer, canceled)")
	fs.StringVar(&f.parent, "parent", "", "only the child legs of this CallSid")
	fs.StringVar(&f.since, "since", "", "only calls that started at or after this time (RFC 3339)")
	fs.StringVar(&f.until, "until", "", "only calls that started before this time (RFC 3339)")
}

func (f *filterFlags) filter() (*callledgerv1.CallFilter, error) {
	out := &callledgerv1.CallFilter{ActiveOnly: f.active, ParentCallSid: f.parent}
	for s := range strings.SplitSeq(f.status, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		st := parseStatus(s)
		if st == callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED {
			return nil, fmt.Errorf("--status %q: not a call status (queued, initiated, ringing, in-progress, completed, busy, failed, no-answer, canceled)", s)
		}
		out.Statuses = append(out.Statuses, st)
	}
	if f.parent != "" && !eventcodec.ValidCallSid(f.parent) {
		return nil, fmt.Errorf("--parent %q is not a CallSid (CA followed by 32 hex digits)", f.parent)
	}
	for _, b := range []struct {
		flag, v string
		dst     **timestamppb.Timestamp
	}{{"--since", f.since, &out.StartedAfter}, {"--until", f.until, &out.StartedBefore}} {
		if b.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, b.v)
		if err != nil {
			return nil, fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-03-01T09:00:00Z", b.flag, b.v)
		}
		*b.dst = timestamppb.New(t)
	}
	return out, nil
}

// parseStatus reads a status as Twilio writes it or as the enum is named.
func parseStatus(s string) callledgerv1.CallStatus {
	s = strings.ToLower(strings.TrimPrefix(strings.ToUpper(s), "CALL_STATUS_"))
	return twilio.ParseCallStatus(strings.ReplaceAll(s, "_", "-"))
}

// clientCommand builds a subcommand that talks to the server: its flags,
// positional arguments checked against usage, the connection, and errors
// explained. run gets the connection and the positional arguments.
func clientCommand(name, usage, help string, stderr io.Writer, args int, extra func(*flag.FlagSet),
	run func(ctx context.Context, c *clientFlags, conn clientConn, args []string) error) *ffcli.Command {
	fs := newFlagSet(name, stderr)
	var c clientFlags
	c.register(fs)
	if extra != nil {
		extra(fs)
	}
	return &ffcli.Command{
		Name:       name,
		ShortUsage: usage,
		ShortHelp:  help,
		FlagSet:    fs,
		Options:    ffOptions(),
		Exec: func(ctx context.Context, raw []string) error {
			pos, err := parseInterspersed(fs, raw)
			if err != nil {
				return err
			}
			if len(pos) != args {
				return fmt.Errorf("usage: %s", usage)
			}
			if args == 1 && !eventcodec.ValidCallSid(pos[0]) {
				return fmt.Errorf("%q is not a CallSid (CA followed by 32 lowercase hex digits)", pos[0])
			}
			conn, err := c.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			return run(ctx, &c, clientConn{
				query:      callledgerv1.NewCallQueryServiceClient(conn),
				commands:   callledgerv1.NewCallCommandServiceClient(conn),
				projection: callledgerv1.NewProjectionServiceClient(conn),
			}, pos)
		},
	}
}

// clientConn are the services a client command calls.
type clientConn struct {
	query      callledgerv1.CallQueryServiceClient
	commands   callledgerv1.CallCommandServiceClient
	projection callledgerv1.ProjectionServiceClient
}

func callsListCommand(stdout, stderr io.Writer) *ffcli.Command {
	var f filterFlags
	var limit int
	return clientCommand("list", "callledger calls list [--active] [--status S,…] [--parent CA…] [--since T] [--until T] [--limit N]",
		"list calls, newest first", stderr, 0,
		func(fs *flag.FlagSet) {
			f.register(fs, false)
			fs.IntVar(&limit, "limit", 50, "at most this many calls (0: all, page by page)")
		},
		func(ctx context.Context, c *clientFlags, conn clientConn, _ []string) error {
			filter, err := f.filter()
			if err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: must be 0 or more", limit)
			}
			var calls []*callledgerv1.Call
			token := ""
			for {
				size := 1000
				if limit > 0 {
					size = min(size, limit-len(calls))
				}
				rctx, cancel := context.WithTimeout(ctx, c.timeout)
				resp, err := conn.query.ListCalls(rctx, &callledgerv1.ListCallsRequest{Filter: filter, PageSize: int32(size), PageToken: token})
				cancel()
				if err != nil {
					return c.explain(err, "")
				}
				calls = append(calls, resp.GetCalls()...)
				token = resp.GetNextPageToken()
				if token == "" || (limit > 0 && len(calls) >= limit) {
					break
				}
			}
			if c.output == "json" {
				for _, call := range calls {
					if err := jsonLine(stdout, call); err != nil {
						return err
					}
				}
				return nil
			}
			if len(calls) == 0 {
				_, err := fmt.Fprintln(stdout, "no calls match")
				return err
			}
			return callTable(stdout, calls)
		})
}

func callsGetCommand(stdout, stderr io.Writer) *ffcli.Command {
	var minPos uint64
	return clientCommand("get", "callledger calls get <CallSid> [--min-position N]",
		"show a call and every leg of its tree", stderr, 1,
		func(fs *flag.FlagSet) {
			fs.Uint64Var(&minPos, "min-position", 0, "first wait until the server has applied this position (a webhook's Callledger-Position, a hang-up's position)")
		},
		func(ctx context.Context, c *clientFlags, conn clientConn, args []string) error {
			rctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			resp, err := conn.query.GetCall(rctx, &callledgerv1.GetCallRequest{CallSid: args[0], MinPosition: minPos})
			if err != nil {
				return c.explain(err, args[0])
			}
			if c.output == "json" {
				return jsonLine(stdout, resp)
			}
			return printCall(stdout, resp)
		})
}

func callsWatchCommand(stdout, stderr io.Writer) *ffcli.Command {
	var f filterFlags
	return clientCommand("watch", "callledger calls watch [--active=false] [--status S,…] [--parent CA…]",
		"print the matching calls, then every change as it happens, until interrupted", stderr, 0,
		func(fs *flag.FlagSet) { f.register(fs, true) },
		func(ctx context.Context, c *clientFlags, conn clientConn, _ []string) error {
			filter, err := f.filter()
			if err != nil {
				return err
			}
			stream, err := conn.query.WatchCalls(ctx, &callledgerv1.WatchCallsRequest{Filter: filter})
			if err != nil {
				return c.explain(err, "")
			}
			if c.output == "table" {
				if _, err := fmt.Fprintf(stdout, watchFormat, "TIME", "POSITION", "CALLSID", "STATUS", "DIRECTION", "FROM", "TO"); err != nil {
					return err
				}
			}
			for {
				m, err := stream.Recv()
				if err != nil {
					if ctx.Err() != nil {
						return nil // interrupted: the normal end
					}
					if errors.Is(err, io.EOF) {
						return errors.New("the server ended the watch (it is shutting down): watch again")
					}
					return c.explain(err, "")
				}
				if c.output == "json" {
					err = jsonLine(stdout, m)
				} else {
					err = watchLine(stdout, m)
				}
				if err != nil {
					return err
				}
			}
		})
}

const watchFormat = "%-12s %-9s %-34s %-22s %-13s %-16s %s\n"

// watchLine prints one message of the watch; the caught-up marker says
// that changes follow.
func watchLine(w io.Writer, m *callledgerv1.WatchCallsResponse) error {
	if m.GetCaughtUp() {
		_, err := fmt.Fprintf(w, "-- caught up at position %d; changes follow as they happen --\n", m.GetPosition())
		return err
	}
	c := m.GetCall()
	at := "now"
	if !m.GetSnapshot() {
		at = time.Now().Format("15:04:05.000")
	}
	_, err := fmt.Fprintf(w, watchFormat, at, strconv.FormatUint(m.GetPosition(), 10), c.GetCallSid(), statusText(c),
		dash(c.GetDirection()), dash(c.GetFrom()), dash(c.GetTo()))
	return err
}

func callsEventsCommand(stdout, stderr io.Writer) *ffcli.Command {
	return clientCommand("events", "callledger calls events <CallSid>",
		"print the stored events of one call, oldest first", stderr, 1, nil,
		func(ctx context.Context, c *clientFlags, conn clientConn, args []string) error {
			var events []*callledgerv1.StoredEvent
			token := ""
			for {
				rctx, cancel := context.WithTimeout(ctx, c.timeout)
				resp, err := conn.query.ListCallEvents(rctx, &callledgerv1.ListCallEventsRequest{CallSid: args[0], PageSize: 1000, PageToken: token})
				cancel()
				if err != nil {
					return c.explain(err, args[0])
				}
				events = append(events, resp.GetEvents()...)
				if token = resp.GetNextPageToken(); token == "" {
					break
				}
			}
			if c.output == "json" {
				for _, e := range events {
					if err := jsonLine(stdout, e); err != nil {
						return err
					}
				}
				return nil
			}
			if len(events) == 0 {
				_, err := fmt.Fprintf(stdout, "no events of %s's own: an unknown call, or one known only from another leg\n", args[0])
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "POSITION\tREV\tRECEIVED\tTYPE\tSOURCE\tDELAY\tWHAT")
			for _, e := range events {
				ev := e.GetEvent()
				delay := "-"
				if ev.GetReportedAt() != nil && ev.GetReceivedAt() != nil {
					delay = ev.GetReceivedAt().AsTime().Sub(ev.GetReportedAt().AsTime()).Round(time.Millisecond).String()
				}
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", e.GetPosition(), e.GetRevision(), clock(ev.GetReceivedAt()),
					e.GetType(), sourceText(ev.GetSource()), delay, eventSummary(ev))
			}
			return tw.Flush()
		})
}

func callsHangupCommand(stdout, stderr io.Writer) *ffcli.Command {
	var endCall bool
	var requestedBy, requestID string
	return clientCommand("hangup", "callledger calls hangup <CallSid> [--end-call=false] [--requested-by NAME] [--request-id ID]",
		"record a hang-up request (the call shows as ending at once) and end the call through Twilio", stderr, 1,
		func(fs *flag.FlagSet) {
			fs.BoolVar(&endCall, "end-call", true, "end the call through Twilio's REST API (the server needs Twilio credentials); false records the request only")
			fs.StringVar(&requestedBy, "requested-by", defaultRequester(), "who asks, for the audit trail")
			fs.StringVar(&requestID, "request-id", "", "idempotency key: retrying with the same one never sends the hang-up twice (default: a new one, printed)")
		},
		func(ctx context.Context, c *clientFlags, conn clientConn, args []string) error {
			if requestID == "" {
				requestID = "cli-" + uuid.NewString()
			}
			rctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			resp, err := conn.commands.RequestHangup(rctx, &callledgerv1.RequestHangupRequest{
				CallSid: args[0], RequestedBy: requestedBy, RequestId: requestID, EndCall: endCall,
			})
			if err != nil {
				switch status.Code(err) {
				case codes.FailedPrecondition:
					return fmt.Errorf("%w; --end-call=false records the request without ending the call", c.explain(err, args[0]))
				case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown:
					// It may have been recorded: the same request id is safe.
					return fmt.Errorf("%w (retry with --request-id %s: a retry never hangs up twice)", c.explain(err, args[0]), requestID)
				}
				return c.explain(err, args[0])
			}
			if c.output == "json" {
				return jsonLine(stdout, resp)
			}
			h := resp.GetHangupRequest()
			verb := "recorded"
			if resp.GetDuplicate() {
				verb = "had already been recorded"
			}
			fmt.Fprintf(stdout, "hang-up of %s %s at position %d (request %s, by %s): the call shows as ending\n",
				args[0], verb, resp.GetPosition(), h.GetRequestId(), h.GetRequestedBy())
			switch h.GetOutcome() {
			case callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT:
				fmt.Fprintf(stdout, "Twilio accepted Status=%s; the call turns terminal when Twilio reports it (or the reconciler asks)\n", h.GetSentStatus())
			case callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED:
				return fmt.Errorf("the hang-up was recorded, but Twilio did not end %s: error %d: %s", args[0], h.GetErrorCode(), h.GetErrorMessage())
			default:
				if !h.GetEndCall() {
					fmt.Fprintln(stdout, "recorded only (--end-call=false): end the call in your application")
				}
			}
			return nil
		})
}

// defaultRequester names the user at this machine.
func defaultRequester() string {
	name := "cli"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		name += "@" + host
	}
	return name
}

// statsCommand is `callledger stats`.
func statsCommand(stdout, stderr io.Writer) *ffcli.Command {
	var window time.Duration
	return clientCommand("stats", "callledger stats [--window 5m]",
		"calls by status, Twilio's delivery delay and the projection's lag, from a running server", stderr, 0,
		func(fs *flag.FlagSet) {
			fs.DurationVar(&window, "window", 5*time.Minute, "how far back the delivery-delay percentiles look (at most 1h)")
		},
		func(ctx context.Context, c *clientFlags, conn clientConn, _ []string) error {
			rctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			stats, err := conn.query.GetStats(rctx, &callledgerv1.GetStatsRequest{Window: durationpb.New(window)})
			if err != nil {
				return c.explain(err, "")
			}
			// The read model's version and position need projections:admin;
			// a token without it still gets the lag, from GetStats.
			proj, err := conn.projection.GetProjectionStatus(rctx, &callledgerv1.GetProjectionStatusRequest{})
			if status.Code(err) == codes.PermissionDenied {
				proj, err = nil, nil
			}
			if err != nil {
				return c.explain(err, "")
			}
			if c.output == "json" {
				if err := jsonLine(stdout, stats); err != nil {
					return err
				}
				if proj == nil {
					return nil
				}
				return jsonLine(stdout, proj)
			}
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "active calls\t%d\n", stats.GetActiveCalls())
			fmt.Fprintf(tw, "calls\t%d\n", stats.GetTotalCalls())
			for _, s := range stats.GetCallsByStatus() {
				name := callstore.StatusName(s.GetStatus())
				if s.GetStatus() == callledgerv1.CallStatus_CALL_STATUS_UNSPECIFIED {
					name = "not reported yet"
				}
				fmt.Fprintf(tw, "  %s\t%d\n", name, s.GetCount())
			}
			d := stats.GetDeliveryDelay()
			if d.GetSamples() == 0 {
				fmt.Fprintf(tw, "delivery delay\tno samples in the last %s\n", stats.GetWindow().AsDuration())
			} else {
				warn := ""
				if d.GetP99().AsDuration() > 5*time.Second {
					warn = "  (p99 above 5s: Twilio is delivering late)"
				}
				fmt.Fprintf(tw, "delivery delay\tp50 %s  p90 %s  p99 %s  max %s over %d events in the last %s%s\n",
					ms(d.GetP50()), ms(d.GetP90()), ms(d.GetP99()), ms(d.GetMax()), d.GetSamples(), stats.GetWindow().AsDuration(), warn)
			}
			if proj != nil {
				fmt.Fprintf(tw, "projection\tversion %d (%s), position %d of %d, lag %d events / %s, caught up: %t\n",
					proj.GetVersion(), proj.GetReadModel(), proj.GetCheckpoint(), proj.GetHead(), proj.GetLagEvents(),
					ms(proj.GetLag()), proj.GetCaughtUp())
			} else {
				fmt.Fprintf(tw, "projection\tposition %d, lag %d events / %s, caught up: %t\n",
					stats.GetPosition(), stats.GetLagEvents(), ms(stats.GetLag()), stats.GetCaughtUp())
			}
			return tw.Flush()
		})
}

func ms(d *durationpb.Duration) string { return d.AsDuration().Round(time.Millisecond).String() }

// callTable prints calls one a line.
func callTable(w io.Writer, calls []*callledgerv1.Call) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLSID\tSTATUS\tDIRECTION\tFROM\tTO\tSTARTED\tDURATION\tPARENT")
	for _, c := range calls {
		dur := "-"
		if c.DurationSeconds != nil {
			dur = (time.Duration(c.GetDurationSeconds()) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.GetCallSid(), statusText(c), dash(c.GetDirection()),
			dash(c.GetFrom()), dash(c.GetTo()), when(c.GetStartTime()), dur, dash(c.GetParentCallSid()))
	}
	return tw.Flush()
}

// printCall prints a call, its hang-up request and the legs of its tree.
func printCall(w io.Writer, resp *callledgerv1.GetCallResponse) error {
	c := resp.GetCall()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "call\t%s\n", c.GetCallSid())
	fmt.Fprintf(tw, "status\t%s (decided by %s)\n", statusText(c), sourceText(c.GetStatusSource()))
	fmt.Fprintf(tw, "direction\t%s\n", dash(c.GetDirection()))
	fmt.Fprintf(tw, "from → to\t%s → %s\n", dash(c.GetFrom()), dash(c.GetTo()))
	fmt.Fprintf(tw, "started\t%s\n", when(c.GetStartTime()))
	if c.GetAnsweredAt() != nil {
		fmt.Fprintf(tw, "answered\t%s\n", when(c.GetAnsweredAt()))
	}
	if c.GetEndedAt() != nil {
		fmt.Fprintf(tw, "ended\t%s\n", when(c.GetEndedAt()))
	}
	if c.DurationSeconds != nil {
		fmt.Fprintf(tw, "duration\t%s\n", time.Duration(c.GetDurationSeconds())*time.Second)
	}
	if h := c.GetHangupRequest(); h != nil {
		fmt.Fprintf(tw, "hang-up\trequested %s by %s (request %s), %s\n", when(h.GetRequestedAt()), h.GetRequestedBy(), h.GetRequestId(), outcomeText(h))
	}
	if r := c.GetReconciliation(); r != nil {
		fmt.Fprintf(tw, "Twilio REST\t%s at %s\n", map[bool]string{true: "no such call", false: callstore.StatusName(r.GetStatus())}[r.GetNotFound()], when(r.GetFetchedAt()))
	}
	fmt.Fprintf(tw, "events\t%d (last at position %d; read at %d)\n", c.GetEventCount(), c.GetLastPosition(), resp.GetPosition())
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(resp.GetLegs()) > 1 {
		fmt.Fprintln(w, "\nlegs of the tree:")
		return callTable(w, resp.GetLegs())
	}
	return nil
}

func outcomeText(h *callledgerv1.HangupRequest) string {
	switch h.GetOutcome() {
	case callledgerv1.HangupOutcome_HANGUP_OUTCOME_SENT:
		return "Twilio accepted Status=" + h.GetSentStatus()
	case callledgerv1.HangupOutcome_HANGUP_OUTCOME_FAILED:
		return fmt.Sprintf("Twilio refused: %d %s", h.GetErrorCode(), h.GetErrorMessage())
	}
	if !h.GetEndCall() {
		return "recorded only"
	}
	return "pending"
}

// statusText is the status as Twilio writes it, with ending and
// placeholders said.
func statusText(c *callledgerv1.Call) string {
	switch {
	case c.GetPlaceholder():
		return "not reported yet"
	case c.GetEnding():
		return callstore.StatusName(c.GetStatus()) + " (ending)"
	}
	return callstore.StatusName(c.GetStatus())
}

func sourceText(s callledgerv1.Source) string {
	name, _ := strings.CutPrefix(s.String(), "SOURCE_")
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// eventSummary says what an event reported, briefly.
func eventSummary(e *callledgerv1.Event) string {
	switch b := e.GetBody().(type) {
	case *callledgerv1.Event_CallStatusReported:
		return b.CallStatusReported.GetStatusRaw()
	case *callledgerv1.Event_DialCompleted:
		return "dial " + b.DialCompleted.GetDialCallStatusRaw() + " " + b.DialCompleted.GetDialCallSid()
	case *callledgerv1.Event_RecordingStatusReported:
		return "recording " + b.RecordingStatusReported.GetRecordingStatus()
	case *callledgerv1.Event_HangupRequested:
		return "by " + b.HangupRequested.GetRequestedBy() + map[bool]string{true: ", end call", false: ", recorded only"}[b.HangupRequested.GetEndCall()]
	case *callledgerv1.Event_HangupSent:
		return "Status=" + b.HangupSent.GetStatus()
	case *callledgerv1.Event_HangupFailed:
		return fmt.Sprintf("%d %s", b.HangupFailed.GetErrorCode(), b.HangupFailed.GetErrorMessage())
	case *callledgerv1.Event_CallReconciled:
		if b.CallReconciled.GetNotFound() {
			return "not found at Twilio"
		}
		return b.CallReconciled.GetStatusRaw()
	case *callledgerv1.Event_RequestQuarantined:
		return b.RequestQuarantined.GetReason()
	}
	return ""
}

func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05")
}

func clock(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format("15:04:05.000")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
