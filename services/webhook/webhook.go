// Package webhook is the HTTP adapter that turns Twilio's webhooks into
// ledger events. It answers Twilio with a 2xx only after every event of the
// request is durable in the event store: a 2xx is a promise that nothing is
// lost, so anything short of that is a 5xx that Twilio may retry.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/ledger"
	"github.com/callledger/callledger/twilio"
)

// Appender is the part of the event store the webhook needs.
type Appender interface {
	Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error)
}

// Defaults for Config fields left zero.
const (
	DefaultMaxBodyBytes  = 64 << 10
	DefaultMaxInFlight   = 4096
	DefaultAppendTimeout = 10 * time.Second
	DefaultDialTwiML     = `<?xml version="1.0" encoding="UTF-8"?><Response/>`
	DefaultRetryAfter    = 1 * time.Second
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
	// Logger gets one line per refused or failed request.
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body; larger bodies get 413.
	MaxBodyBytes int64
	// MaxInFlight bounds concurrent appends; beyond it requests get 503 at
	// once instead of queueing without bound.
	MaxInFlight int
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
}

// Handler serves the Twilio-facing routes and the health probes.
type Handler struct {
	cfg      Config
	mux      *http.ServeMux
	slots    chan struct{}
	draining atomic.Bool
	retry    string
}

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
	if cfg.DialTwiML == "" {
		cfg.DialTwiML = DefaultDialTwiML
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{
		cfg:   cfg,
		mux:   http.NewServeMux(),
		slots: make(chan struct{}, cfg.MaxInFlight),
		retry: strconv.Itoa(int((cfg.RetryAfter + time.Second - 1) / time.Second)),
	}
	for _, r := range []struct {
		path    string
		kind    twilio.Kind
		methods []string
	}{
		{"/twilio/voice/status", twilio.KindStatus, []string{http.MethodGet, http.MethodPost}},
		{"/twilio/voice/dial", twilio.KindDial, []string{http.MethodGet, http.MethodPost}},
		{"/twilio/voice/recording", twilio.KindRecording, []string{http.MethodGet, http.MethodPost}},
		{"/twilio/events", twilio.KindEvents, []string{http.MethodPost}},
	} {
		hf := h.ingest(r.kind)
		for _, m := range r.methods {
			h.mux.Handle(m+" "+r.path, hf)
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
// with another method gets 405 with an Allow header.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

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
		log := h.cfg.Logger.With("route", r.URL.Path, "request_id", requestID(r), "remote", r.RemoteAddr)

		if r.ContentLength > h.cfg.MaxBodyBytes {
			log.Warn("refused: body too large", "bytes", r.ContentLength)
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				log.Warn("refused: body too large", "limit", h.cfg.MaxBodyBytes)
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			log.Warn("refused: body unreadable", "err", err)
			http.Error(w, "request body unreadable", http.StatusBadRequest)
			return
		}

		if err := h.cfg.Verifier.Verify(r.RequestURI, body, r.Header.Get("X-Twilio-Signature")); err != nil {
			log.Warn("refused: signature", "err", err)
			http.Error(w, "invalid Twilio signature", http.StatusForbidden)
			return
		}

		derived := twilio.Derive(kind, &twilio.Request{
			Method:      r.Method,
			URL:         h.cfg.Verifier.SignedURL(r.RequestURI),
			RawQuery:    r.URL.RawQuery,
			ContentType: r.Header.Get("Content-Type"),
			Header:      r.Header,
			Body:        body,
			RemoteAddr:  r.RemoteAddr,
			ReceivedAt:  received,
		})

		select {
		case h.slots <- struct{}{}:
		default:
			log.Warn("refused: saturated", "max_in_flight", h.cfg.MaxInFlight)
			h.unavailable(w, "too many requests in flight")
			return
		}
		pos, err := h.appendAll(r.Context(), derived)
		<-h.slots
		if err != nil {
			log.Error("append failed; answering 503 so Twilio retries", "err", err)
			h.unavailable(w, "event store unavailable")
			return
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
func (h *Handler) appendAll(ctx context.Context, derived []twilio.Derived) (eventstore.Position, error) {
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
			rec, err := ledger.Encode(d.Event)
			if err != nil {
				return 0, fmt.Errorf("encode %s: %w", d.Stream, err)
			}
			records = append(records, rec)
		}
		res, err := h.cfg.Store.Append(ctx, derived[i].Stream, eventstore.Any(), records...)
		if err != nil {
			return 0, fmt.Errorf("append %s: %w", derived[i].Stream, err)
		}
		last = max(last, res.Position)
		i = j
	}
	return last, nil
}

func (h *Handler) unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", h.retry)
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// requestID names a request in logs: Twilio's idempotency token when it
// sends one, so a log line can be matched with Twilio's debugger.
func requestID(r *http.Request) string {
	if id := r.Header.Get("I-Twilio-Idempotency-Token"); id != "" {
		return id
	}
	return r.Header.Get("X-Request-Id")
}
