// Package webhook is the HTTP adapter that turns Twilio's webhooks into
// ledger events. It answers Twilio with a 2xx only after every event of the
// request is durable in the event store: a 2xx is a promise that nothing is
// lost, so anything short of that is a 5xx that Twilio may retry.
package webhook

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/ratelog"
	"github.com/callledger/callledger/twilio"
)

// Appender is the part of the event store the webhook needs.
type Appender interface {
	Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error)
}

// Observer is told what the handler does, for metrics. Its methods are
// called on the request path, so they must be quick and safe for
// concurrent use. Route is the request path of a known route, "other"
// otherwise; kind is the callback kind (status, dial, recording, events).
type Observer interface {
	// Answered: one call per request, with the answer code and the time
	// from receipt to answer.
	Answered(route string, code int, elapsed time.Duration)
	// Delivered: Twilio's delivery delay of one stored event, received_at
	// minus the Timestamp (or CloudEvent time) Twilio reported.
	Delivered(kind string, delay time.Duration)
	// Duplicates: n events of a request were already stored.
	Duplicates(kind string, n int)
	// SignatureFailed: a request was refused for its signature. account
	// is the configured account whose tokens it was checked against
	// (twilio.VerifyError.Account), AccountDefault for the default tokens
	// (or none tried), AccountUnlisted for an AccountSid the configuration
	// does not list (twilio.ErrUnknownAccount): never a value the request
	// chose, so that it can be a metric label.
	SignatureFailed(kind, account string)
	// Quarantined: n events were newly stored in a quarantine stream.
	Quarantined(kind string, n int)
}

// nopObserver is the Observer of a handler built without one.
type nopObserver struct{}

func (nopObserver) Answered(string, int, time.Duration) {}
func (nopObserver) Delivered(string, time.Duration)     {}
func (nopObserver) Duplicates(string, int)              {}
func (nopObserver) SignatureFailed(string, string)      {}
func (nopObserver) Quarantined(string, int)             {}

// Values of SignatureFailed's account besides configured AccountSids.
const (
	AccountDefault  = "default"
	AccountUnlisted = "unlisted"
)

// failedAccount is the account label of a signature failure err.
func failedAccount(err error) string {
	var ve *twilio.VerifyError
	switch {
	case errors.Is(err, twilio.ErrUnknownAccount):
		return AccountUnlisted
	case errors.As(err, &ve) && ve.Account != "":
		return ve.Account
	}
	return AccountDefault
}

// RequestIDHeader names a request in logs and answers: taken from the
// request when a proxy set it, echoed on every refusal.
const RequestIDHeader = "X-Request-Id"

// Defaults for Config fields left zero.
const (
	DefaultMaxBodyBytes  = 64 << 10
	DefaultMaxInFlight   = 4096
	DefaultMaxAppendWait = 5 * time.Second
	DefaultAppendTimeout = 10 * time.Second
	DefaultDialTwiML     = `<?xml version="1.0" encoding="UTF-8"?><Response/>`
	DefaultRetryAfter    = 1 * time.Second
	DefaultLogEvery      = 10 * time.Second
)

// PositionHeader carries the commit position of a request's events, so a
// client can ask a query service to wait until it has applied them.
const PositionHeader = "Callledger-Position"

// Config wires a Handler.
type Config struct {
	// Verifier checks X-Twilio-Signature; required.
	Verifier *twilio.Verifier
	// Store receives the events; required.
	Store Appender
	// Logger gets one line per refused or failed request, except for 503s:
	// at most one per LogEvery for each kind (saturated, store failing),
	// since a full disk or a store outage answers every webhook 503. The
	// first of each kind names its request ID; the next one says how many
	// were held back.
	Logger *slog.Logger
	// LogEvery spaces repeated 503 lines of one kind (default
	// DefaultLogEvery).
	LogEvery time.Duration
	// MaxBodyBytes bounds a request body; larger bodies get 413.
	MaxBodyBytes int64
	// MaxInFlight bounds concurrent appends; beyond it requests get 503 at
	// once instead of queueing without bound. Twice as many requests may
	// be read and verified at once (each holds its body): beyond that too,
	// 503 at once, so that a flood cannot hold unbounded memory.
	MaxInFlight int
	// MaxAppendWait refuses new webhooks with 503 at once while the oldest
	// append in flight has waited longer (default DefaultMaxAppendWait;
	// negative: never). A count of appends in flight alone lets a server
	// whose store slowed down queue more seconds of work than Twilio waits
	// (15 s), and then it answers nothing in time; bounded by waiting
	// time, what it takes it answers within the bound. It is far above a
	// disk's usual hiccups, which are better waited out than refused.
	MaxAppendWait time.Duration
	// AppendTimeout bounds one request's appends. Twilio gives up after
	// 15 s, so waiting longer only wastes a slot.
	AppendTimeout time.Duration
	// DialTwiML answers <Dial action> callbacks; it takes over the parent
	// call. The default, an empty <Response/>, ends it.
	DialTwiML string
	// RetryAfter is sent with every 503.
	RetryAfter time.Duration
	// Ready reports whether the store can take writes, for /readyz.
	Ready func(ctx context.Context) error
	// Now is the server clock; time.Now when nil.
	Now func() time.Time
	// Observer is told of every answer, delay, duplicate and refusal;
	// nothing when nil.
	Observer Observer
	// Sealer seals the personal fields of every derived event before it
	// is appended (docs/PRIVACY.md); nil stores them in the clear.
	Sealer Sealer
}

// Sealer returns an event as it is to be stored, its personal fields
// sealed; *seal.Events is one. The event IDs are derived before, from
// the request, so a retry across an upgrade still deduplicates.
type Sealer interface {
	SealOwned(ctx context.Context, ev *callledgerv1.Event) (*callledgerv1.Event, error)
}

// Handler serves the Twilio-facing routes and the health probes.
type Handler struct {
	cfg   Config
	mux   *http.ServeMux
	slots chan struct{}
	// reading bounds the requests being read, verified or appended.
	reading  chan struct{}
	draining atomic.Bool
	retry    string
	// logs holds back repeated refusal lines of one kind.
	logs *ratelog.Limiter
	// inFlight knows when the appends in flight began (MaxAppendWait).
	inFlight *appendWaits
}

// OldestAppendWait is how long the oldest webhook append in flight has
// waited; zero when none is. Past Config.MaxAppendWait new webhooks are
// refused: a gauge of it warns before they are.
func (h *Handler) OldestAppendWait() time.Duration { return h.inFlight.oldest(h.cfg.Now()) }

// New validates cfg and builds the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Verifier == nil || cfg.Store == nil {
		return nil, errors.New("webhook: Verifier and Store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.AppendTimeout <= 0 {
		cfg.AppendTimeout = DefaultAppendTimeout
	}
	if cfg.MaxAppendWait == 0 {
		cfg.MaxAppendWait = DefaultMaxAppendWait
	}
	if cfg.DialTwiML == "" {
		cfg.DialTwiML = DefaultDialTwiML
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = DefaultLogEvery
	}
	h := &Handler{
		cfg:      cfg,
		mux:      http.NewServeMux(),
		slots:    make(chan struct{}, cfg.MaxInFlight),
		reading:  make(chan struct{}, 2*cfg.MaxInFlight),
		inFlight: &appendWaits{},
		retry:    strconv.Itoa(int((cfg.RetryAfter + time.Second - 1) / time.Second)),
		logs:     ratelog.NewLimiter(cfg.LogEvery),
	}
	for _, kind := range twilio.Kinds() {
		hf := h.ingest(kind)
		h.mux.Handle(http.MethodPost+" "+kind.Path(), hf)
		if kind != twilio.KindEvents { // form callbacks may be configured as GET; Event Streams only POSTs
			h.mux.Handle(http.MethodGet+" "+kind.Path(), hf)
		}
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	h.mux.HandleFunc("GET /readyz", h.readyz)
	return h, nil
}

// Handle adds a route beside the webhook routes (metrics, for one).
func (h *Handler) Handle(pattern string, handler http.Handler) { h.mux.Handle(pattern, handler) }

// ServeHTTP dispatches to the routes. Unknown paths get 404; a known path
// with another method gets 405 with an Allow header. Every answer is
// reported to the Observer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.cfg.Now()
	aw := answerWriter{ResponseWriter: w, h: h, r: r}
	h.mux.ServeHTTP(&aw, r)
	h.cfg.Observer.Answered(Route(r.URL.Path), aw.status(), h.cfg.Now().Sub(start))
}

// Route names a request's route with a bounded set of values, so that a
// metric label or a trace span name cannot grow with whatever paths
// clients try.
func Route(path string) string {
	if _, ok := twilio.KindOfPath(path); ok {
		return path
	}
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return path
	}
	return "other"
}

// answerWriter remembers the status code of an answer.
type answerWriter struct {
	http.ResponseWriter
	code int
	h    *Handler
	r    *http.Request
}

func (a *answerWriter) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
		if code == http.StatusMethodNotAllowed {
			// The mux answers a wrong method itself: log the refusal (and
			// set its request ID header) before the header goes out.
			a.h.refused(a.ResponseWriter, a.r, "refused: method not allowed", "method", a.r.Method)
		}
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerWriter) Write(b []byte) (int, error) {
	if a.code == 0 {
		a.code = http.StatusOK
	}
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (a *answerWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

func (a *answerWriter) status() int {
	if a.code == 0 {
		return http.StatusOK
	}
	return a.code
}

// InFlight returns the webhook appends in flight now (at most
// Config.MaxInFlight): a measure of how busy ingest is, so that queries
// can give way to it.
func (h *Handler) InFlight() int { return len(h.slots) }

// Drain marks the handler as shutting down: /readyz fails so a load
// balancer stops sending, while requests in flight still finish.
func (h *Handler) Drain() { h.draining.Store(true) }

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if h.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if h.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.cfg.Ready(ctx); err != nil {
			h.cfg.Logger.Warn("not ready", "err", err)
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = io.WriteString(w, "ready\n")
}

// ingest is the webhook path: read, verify, derive, append, answer.
func (h *Handler) ingest(kind twilio.Kind) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received := h.cfg.Now()

		select {
		case h.reading <- struct{}{}:
			defer func() { <-h.reading }()
		default:
			h.logRequest(w, r, slog.LevelWarn, "refused: saturated", []any{"max_in_flight", h.cfg.MaxInFlight}, true)
			h.unavailable(w, "too many requests in flight")
			return
		}
		if r.ContentLength > h.cfg.MaxBodyBytes {
			h.refused(w, r, "refused: body too large", "bytes", r.ContentLength)
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				h.refused(w, r, "refused: body too large", "limit", h.cfg.MaxBodyBytes)
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			h.refused(w, r, "refused: body unreadable", "err", err)
			http.Error(w, "request body unreadable", http.StatusBadRequest)
			return
		}

		if err := h.cfg.Verifier.Verify(r.RequestURI, body, r.Header.Get("X-Twilio-Signature")); err != nil {
			// The error says why (missing, malformed, no token matched),
			// never the signature or a token.
			h.cfg.Observer.SignatureFailed(string(kind), failedAccount(err))
			h.refused(w, r, "refused: signature", "err", err)
			http.Error(w, "invalid Twilio signature", http.StatusForbidden)
			return
		}

		// Take a slot before deriving the events: a saturated server
		// refuses without doing that work first.
		select {
		case h.slots <- struct{}{}:
		default:
			h.logRequest(w, r, slog.LevelWarn, "refused: saturated", []any{"max_in_flight", h.cfg.MaxInFlight}, true)
			h.unavailable(w, "too many requests in flight")
			return
		}
		now := h.cfg.Now()
		if h.cfg.MaxAppendWait > 0 {
			if wait := h.inFlight.oldest(now); wait > h.cfg.MaxAppendWait {
				<-h.slots
				h.logRequest(w, r, slog.LevelWarn, "refused: appends in flight waiting too long",
					[]any{"oldest_wait", wait.Round(time.Millisecond), "max_append_wait", h.cfg.MaxAppendWait}, true)
				h.unavailable(w, "appends are waiting too long")
				return
			}
		}
		derived := twilio.Derive(kind, &twilio.Request{
			Method:      r.Method,
			URL:         h.cfg.Verifier.SignedURL(r.RequestURI),
			RawQuery:    signedQuery(r.URL.RawQuery),
			ContentType: r.Header.Get("Content-Type"),
			Header:      r.Header,
			Body:        body,
			RemoteAddr:  r.RemoteAddr,
			ReceivedAt:  received,
		})

		began := h.inFlight.start(now)
		pos, err := h.appendAll(r.Context(), kind, derived)
		h.inFlight.done(began)
		<-h.slots
		if err != nil {
			h.logRequest(w, r, slog.LevelError, "append failed; answering 503 so Twilio retries", []any{"err", err}, true)
			h.unavailable(w, "event store unavailable")
			return
		}
		for _, d := range derived {
			if rep := d.Event.GetReportedAt(); rep != nil {
				h.cfg.Observer.Delivered(string(kind), received.Sub(rep.AsTime()))
			}
		}

		w.Header().Set(PositionHeader, strconv.FormatUint(uint64(pos), 10))
		switch kind {
		case twilio.KindDial:
			w.Header().Set("Content-Type", "text/xml; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, h.cfg.DialTwiML)
		case twilio.KindEvents:
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

// appendAll appends the derived events, one append per stream, and returns
// the highest commit position among them. The appends run detached from the
// request's cancellation: once started, an append is finished even if Twilio
// hangs up, so a retry finds it and answers as a duplicate.
func (h *Handler) appendAll(ctx context.Context, kind twilio.Kind, derived []twilio.Derived) (eventstore.Position, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.AppendTimeout)
	defer cancel()
	var last eventstore.Position
	for i := 0; i < len(derived); {
		// Events of one stream go in one atomic append. Derive emits them
		// grouped in delivery order; an Event Streams array is the only
		// source of more than one.
		j := i + 1
		for j < len(derived) && derived[j].Stream == derived[i].Stream {
			j++
		}
		records := make([]eventstore.EventData, 0, j-i)
		for _, d := range derived[i:j] {
			ev := d.Event
			if h.cfg.Sealer != nil {
				var err error
				// Derived events are the handler's own: sealed in place.
				if ev, err = h.cfg.Sealer.SealOwned(ctx, ev); err != nil {
					return 0, fmt.Errorf("seal %s: %w", d.Stream, err)
				}
			}
			rec, err := eventcodec.Encode(ev)
			if err != nil {
				return 0, fmt.Errorf("encode %s: %w", d.Stream, err)
			}
			records = append(records, rec)
		}
		res, err := h.cfg.Store.Append(ctx, derived[i].Stream, eventstore.Any(), records...)
		if err != nil {
			return 0, fmt.Errorf("append %s: %w", derived[i].Stream, err)
		}
		if n := len(res.Duplicates); n > 0 {
			h.cfg.Observer.Duplicates(string(kind), n)
		}
		if n := len(records) - len(res.Duplicates); n > 0 && strings.HasPrefix(derived[i].Stream, eventcodec.QuarantineStreamPrefix) {
			h.cfg.Observer.Quarantined(string(kind), n)
		}
		last = max(last, res.Position)
		i = j
	}
	return last, nil
}

// signedQuery is the part of a request's raw query Twilio signed: net/http
// keeps in RawQuery anything after a '#' in the request line (a fragment is
// not meant to be sent), which the signature does not cover, so nothing is
// derived or stored from it.
func signedQuery(rawQuery string) string {
	if i := strings.IndexByte(rawQuery, '#'); i >= 0 {
		return rawQuery[:i]
	}
	return rawQuery
}

func (h *Handler) unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", h.retry)
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// refused logs a request answered 4xx or 503 by choice, one line with its
// request ID, which the answer carries too. Nothing secret is logged: no
// header but the request ID, no body, no signature.
func (h *Handler) refused(w http.ResponseWriter, r *http.Request, msg string, args ...any) {
	h.logRequest(w, r, slog.LevelWarn, msg, args, false)
}

// logRequest sets the request ID on the answer and logs msg; when limited,
// only if no line with the same msg was logged less than LogEvery ago.
func (h *Handler) logRequest(w http.ResponseWriter, r *http.Request, level slog.Level, msg string, args []any, limited bool) {
	id := requestID(r)
	w.Header().Set(RequestIDHeader, id)
	attrs := append([]any{"request_id", id, "method", r.Method, "route", Route(r.URL.Path), "remote", r.RemoteAddr}, args...)
	if limited {
		ok, held := h.logs.Allow(msg)
		if !ok {
			return
		}
		if held > 0 {
			attrs = append(attrs, "suppressed", held)
		}
	}
	h.cfg.Logger.Log(r.Context(), level, msg, attrs...)
}

// maxRequestIDLen bounds an ID taken from a request, so a client cannot
// fill the log through it.
const maxRequestIDLen = 128

// requestID names a request in logs: Twilio's idempotency token when it
// sends one, so a log line can be matched with Twilio's debugger, else a
// proxy's X-Request-Id, else a fresh random ID. Only refusals and failures
// need one, so the success path never generates it.
func requestID(r *http.Request) string {
	for _, name := range []string{"I-Twilio-Idempotency-Token", RequestIDHeader} {
		if id := r.Header.Get(name); id != "" {
			if len(id) > maxRequestIDLen {
				id = id[:maxRequestIDLen]
			}
			return id
		}
	}
	return rand.Text()
}
