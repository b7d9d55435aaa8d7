// Package httpapi is callledger's browser-reachable API: the REST routes the
// protos declare with google.api.http annotations, transcoded by
// grpc-gateway, and the OpenAPI document generated from the same protos.
//
// The gateway calls the gRPC services over a connection to the server's own
// gRPC server (internal/server hands it an in-process one), never the
// service implementations directly: every REST request passes the same
// interceptors as a native gRPC call (authentication, scopes, limits,
// metrics, tracing), with the request's Authorization header as the
// `authorization` metadata. There is no second API to keep in step.
//
// Choices the contract leaves open:
//   - JSON as protojson writes it: lowerCamelCase names, every field
//     present, enums by name, 64-bit integers as strings. Unknown fields in
//     a request body are refused (400), not ignored.
//   - Server-streaming methods (WatchCalls) answer newline-delimited JSON,
//     application/x-ndjson: one {"result": …} object per message, flushed
//     as it is sent, and {"error": …} last when the stream fails.
//   - Errors are the gRPC status as JSON ({"code", "message", "details"})
//     with the HTTP status grpc-gateway maps the code to; 401 carries
//     `WWW-Authenticate: Bearer`.
//   - Headers reach the services only as Authorization and W3C trace
//     context (traceparent, tracestate): a browser cannot set other gRPC
//     metadata.
//   - CORS is off (same origin only) unless origins are configured.
package httpapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/rs/cors"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

// OpenAPI is the OpenAPI (Swagger 2.0) document of the REST routes,
// generated from the protos by `make proto`; served at /openapi.json.
//
//go:embed openapi/callledger.swagger.json
var OpenAPI []byte

// Limits of the API.
const (
	// MaxBodyBytes bounds a request body (a hang-up request is a few
	// hundred bytes).
	MaxBodyBytes = 64 << 10
	// UnaryWriteTimeout bounds the answer of a unary route, GetCall's wait
	// for min_position included; streams have no bound.
	UnaryWriteTimeout = 2 * time.Minute
)

// Config wires a Handler.
type Config struct {
	// Conn reaches the server's gRPC services; required.
	Conn grpc.ClientConnInterface
	// CORSOrigins may call the API from other origins
	// (scheme://host[:port], or "*" for any); empty allows the same origin
	// only.
	CORSOrigins []string
	// Logger receives failures to answer; default discard.
	Logger *slog.Logger
}

// Handler serves the REST routes under /v1/ and the OpenAPI document at
// /openapi.json, and answers 404 for anything else.
type Handler struct {
	h   http.Handler
	log *slog.Logger
	// stopping ends the streams in flight when Stop is called.
	stopping context.Context
	stop     context.CancelFunc
	streams  routeSet
}

// New validates cfg and builds the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Conn == nil {
		return nil, errors.New("httpapi: Conn is required")
	}
	if err := ValidateOrigins(cfg.CORSOrigins); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{log: cfg.Logger.With("component", "httpapi"), streams: streamingRoutes(services()...)}
	h.stopping, h.stop = context.WithCancel(context.Background())

	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &ndjson{JSONPb: runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithMiddlewares(h.bound),
	)
	ctx := context.Background() // the registrations keep no context
	for _, register := range []func() error{
		func() error {
			return callledgerv1.RegisterCallQueryServiceHandlerClient(ctx, gw, callledgerv1.NewCallQueryServiceClient(cfg.Conn))
		},
		func() error {
			return callledgerv1.RegisterCallCommandServiceHandlerClient(ctx, gw, callledgerv1.NewCallCommandServiceClient(cfg.Conn))
		},
		func() error {
			return callledgerv1.RegisterProjectionServiceHandlerClient(ctx, gw, callledgerv1.NewProjectionServiceClient(cfg.Conn))
		},
	} {
		if err := register(); err != nil {
			return nil, fmt.Errorf("httpapi: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/v1/", http.MaxBytesHandler(gw, MaxBodyBytes))
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	var handler http.Handler = mux
	if len(cfg.CORSOrigins) > 0 {
		handler = cors.New(cors.Options{
			AllowedOrigins: cfg.CORSOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodPost},
			AllowedHeaders: []string{"Authorization", "Content-Type"},
			MaxAge:         600,
		}).Handler(mux)
	}
	h.h = handler
	return h, nil
}

// ServeHTTP serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// Stop ends the streams in flight (WatchCalls), which never end on their
// own, so that a graceful shutdown of the listener waits only for the unary
// requests. A client watches again elsewhere. New streams end at once.
func (h *Handler) Stop() { h.stop() }

// bound gives a unary request a write deadline, and a stream the end that
// Stop brings.
func (h *Handler) bound(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		pat, ok := runtime.HTTPPattern(r.Context())
		if ok && h.streams.has(r.Method, pat.String()) {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			stop := context.AfterFunc(h.stopping, cancel)
			defer stop()
			next(w, r.WithContext(ctx), params)
			return
		}
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(UnaryWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			h.log.DebugContext(r.Context(), "set write deadline", "err", err)
		}
		next(w, r, params)
	}
}

// serveOpenAPI serves the OpenAPI document.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(OpenAPI)
}

// incomingHeader forwards W3C trace context; grpc-gateway forwards
// Authorization on its own, as the `authorization` metadata.
func incomingHeader(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case "Traceparent", "Tracestate":
		return strings.ToLower(key), true
	}
	return "", false
}

// outgoingHeader forwards the services' response metadata as
// Grpc-Metadata-* headers, except what the in-memory HTTP/2 hop adds (its
// content type and trailer announcements), which says nothing about the
// call.
func outgoingHeader(key string) (string, bool) {
	switch strings.ToLower(key) {
	case "content-type", "trailer":
		return "", false
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// errorHandler answers as grpc-gateway does, with a Bearer challenge on
// 401 instead of the status message grpc-gateway puts there.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, challenge{w}, r, err)
}

// challenge sets WWW-Authenticate on a 401 as it is written.
type challenge struct{ http.ResponseWriter }

func (c challenge) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", `Bearer realm="callledger"`)
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c challenge) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// ndjson is protojson for one message, and newline-delimited JSON for
// streams.
type ndjson struct{ runtime.JSONPb }

// StreamContentType is the media type of a streamed answer.
func (*ndjson) StreamContentType(any) string { return "application/x-ndjson" }

// ValidateOrigins checks CORS origins: "*", or scheme://host[:port] with
// scheme http or https and nothing after the host.
func ValidateOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("CORS origin %q: want scheme://host[:port] (e.g. https://board.example.com) or *", o)
		}
	}
	return nil
}

// services are the services the gateway serves.
func services() []protoreflect.ServiceDescriptor {
	return []protoreflect.ServiceDescriptor{
		callledgerv1.File_callledger_v1_query_proto.Services().ByName("CallQueryService"),
		callledgerv1.File_callledger_v1_command_proto.Services().ByName("CallCommandService"),
		callledgerv1.File_callledger_v1_projection_proto.Services().ByName("ProjectionService"),
	}
}

// routeSet holds routes as "METHOD pattern", with every path variable
// written as "*".
type routeSet map[string]bool

var pathVariable = regexp.MustCompile(`\{[^}]*\}`)

func (s routeSet) has(method, pattern string) bool {
	return s[method+" "+pathVariable.ReplaceAllString(pattern, "*")]
}

// streamingRoutes are the REST routes of the server-streaming methods of
// svcs, from their google.api.http annotations.
func streamingRoutes(svcs ...protoreflect.ServiceDescriptor) routeSet {
	set := routeSet{}
	for _, svc := range svcs {
		for i := range svc.Methods().Len() {
			m := svc.Methods().Get(i)
			if !m.IsStreamingServer() {
				continue
			}
			rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
			for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
				if method, path := binding(r); path != "" {
					set[method+" "+pathVariable.ReplaceAllString(path, "*")] = true
				}
			}
		}
	}
	return set
}

// binding is the HTTP method and path template of one rule.
func binding(r *annotations.HttpRule) (method, path string) {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath()
	}
	return "", ""
}

// Routes lists every REST route of the API as "METHOD /path", for
// documentation and tests.
func Routes() []string {
	var out []string
	for _, svc := range services() {
		for i := range svc.Methods().Len() {
			rule, _ := proto.GetExtension(svc.Methods().Get(i).Options(), annotations.E_Http).(*annotations.HttpRule)
			if method, path := binding(rule); path != "" {
				out = append(out, method+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}
