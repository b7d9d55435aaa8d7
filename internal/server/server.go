// Package server is callledger's composition root: it builds the whole
// server (listeners, signature verifier, event store, telemetry, tracing,
// the call-state projection, the gRPC services, commands, reconciler and
// health) from one Config, and runs it until its context ends. `callledger
// serve` and the end-to-end tests both build it here, so what the tests
// exercise is what users run. Model: wild-workouts'
// internal/trainings/service (one newApplication for production and
// component tests).
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/instrument"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/privatefs"
	"github.com/callledger/callledger/internal/tlsfiles"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/keystore/keyservice"
	"github.com/callledger/callledger/metrics"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callversions"
	"github.com/callledger/callledger/projections/rebuild"
	"github.com/callledger/callledger/reconcile"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/services/projection"
	"github.com/callledger/callledger/services/query"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/tracing"
	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
)

// Server is callledger, built and ready to serve: its listeners are bound
// (see Addrs), its store and read model open. Run serves; a Server that is
// never run must be closed.
type Server struct {
	cfg Config
	log *slog.Logger
	tel *telemetry
	// tp exports traces; nil when tracing is off.
	tp *sdktrace.TracerProvider
	// store is the event store under its decorators (metrics, tracing).
	store eventstore.Store
	hooks *webhook.Handler
	// personal seals and opens personal data with keys; both nil with
	// Privacy.Unsealed.
	personal *seal.Events
	// keys is the key store personal is over; nil with Privacy.Unsealed
	// until erasures open it (erasures).
	keys *keystore.Embedded

	// Security (security.go): the webhook verifier and the default tokens
	// its keyring is rebuilt with, the REST client and the token that
	// authenticates it ("" in development mode), the TLS of each listener
	// (nil when plaintext), the gRPC authorizer; Reload swaps what they
	// hold.
	verifier      *twilio.Verifier
	defaultTokens []string
	restToken     string
	rest          *rest.Client
	grpcTLS       *tlsfiles.Server
	httpTLS       *tlsfiles.Server
	apiTLS        *tlsfiles.Server
	auth          *grpcauth.Authorizer
	// localAPIToken is the token of the local principal when the gRPC API
	// is guarded by it (see GRPC.APITokens); devMode: no Twilio auth token
	// was configured, so every listener is loopback.
	localAPIToken string
	devMode       bool
	reloadMu      sync.Mutex

	// The query side; nil with RoleWebhooks.
	calls        *callversions.Manager
	health       *health.Server
	grpcServices map[string]grpc.ServiceInfo
	// restOn: Twilio REST credentials are configured, so hang-ups can end
	// calls and the reconciler runs.
	restOn bool

	// servers are the listeners and what serves each, in the order they
	// shut down: the one Twilio reaches first, /metrics last.
	servers []*listener
	// background is what runs beside the servers until they have stopped
	// (the projection's health watch, the reconciler).
	background []func(ctx context.Context)
	// closers release what New opened, run in reverse order by Close.
	closers   []closer
	closeOnce sync.Once
	closeErr  error
}

// listener is one bound listener and the server on it.
type listener struct {
	name     string
	ln       net.Listener
	serve    func(net.Listener) error
	shutdown func(ctx context.Context) error
}

type closer struct {
	what  string
	close func() error
}

// Addrs are the addresses a server listens on.
type Addrs struct {
	// HTTP serves the webhooks and health probes (and /metrics when
	// Metrics is empty).
	HTTP string
	// GRPC serves the gRPC services; empty with RoleWebhooks.
	GRPC string
	// Metrics serves /metrics on a listener of its own; empty when it is
	// on HTTP.
	Metrics string
	// API serves the REST routes, the OpenAPI document and the call
	// board; empty when off (or with RoleWebhooks).
	API string
}

// New builds the server cfg describes and binds its listeners. It opens
// the event store and, unless the role is RoleWebhooks, the call-state
// read model, which starts following the log at once. ctx bounds the
// building (the first contact with KurrentDB), not the server's life.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, devMode: cfg.HTTP.AuthToken == ""}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if err := s.privateDataDir(); err != nil {
		return nil, err
	}
	if err := cfg.checkAPIAddr(cfg.HTTP.AuthToken == ""); err != nil {
		return nil, err
	}
	restToken, err := s.authenticate()
	if err != nil {
		return nil, err
	}
	s.restToken = restToken
	if err := s.checkExposure(cfg.HTTP.AuthToken == ""); err != nil {
		return nil, err
	}
	accounts, err := s.loadAccounts()
	if err != nil {
		return nil, err
	}
	if err := s.httpSecurity(); err != nil {
		return nil, err
	}
	httpLn, err := s.listen("http", "--http-addr", cfg.HTTP.Addr)
	if err != nil {
		return nil, err
	}
	var grpcLn, metricsLn, apiLn net.Listener
	if s.queries() {
		if grpcLn, err = s.listen("grpc", "--grpc-addr", cfg.GRPC.Addr); err != nil {
			return nil, err
		}
		if cfg.API.Addr != "" {
			if apiLn, err = s.listen("api", "--api-addr", cfg.API.Addr); err != nil {
				return nil, err
			}
		}
	}
	if cfg.Metrics.Addr != "" {
		if metricsLn, err = s.listen("metrics", "--metrics-addr", cfg.Metrics.Addr); err != nil {
			return nil, err
		}
	}
	if s.cfg.HTTP.PublicURL == "" {
		// Development mode: the server signs for itself as it is reached
		// locally, on the port it actually got.
		scheme := "http://"
		if s.httpTLS != nil {
			scheme = "https://"
		}
		s.cfg.HTTP.PublicURL = scheme + httpLn.Addr().String()
	}
	s.defaultTokens = []string{s.cfg.HTTP.AuthToken}
	if cfg.HTTP.SecondaryAuthToken != "" {
		s.defaultTokens = append(s.defaultTokens, cfg.HTTP.SecondaryAuthToken)
	}
	keyring, err := s.webhookKeyring(accounts)
	if err != nil {
		return nil, err
	}
	if s.verifier, err = twilio.NewVerifierWithKeyring(s.cfg.HTTP.PublicURL, keyring); err != nil {
		return nil, fmt.Errorf("--public-url: %w", err)
	}

	if s.tel, err = newTelemetry(); err != nil {
		return nil, err
	}
	if err := s.startTracing(ctx); err != nil {
		return nil, err
	}
	if err := s.openKeys(); err != nil {
		return nil, err
	}
	if err := s.openStore(ctx); err != nil {
		return nil, err
	}

	s.hooks, err = webhook.New(webhook.Config{
		Verifier:      s.verifier,
		Store:         s.store,
		Logger:        s.log,
		MaxInFlight:   cfg.HTTP.MaxInFlight,
		MaxAppendWait: cfg.HTTP.MaxAppendWait,
		DialTwiML:     cfg.HTTP.DialTwiML,
		Observer:      s.tel.webhook,
		Ready:         storeReady(s.store),
		Now:           cfg.Seams.WebhookClock,
		Sealer:        s.sealer(),
	})
	if err != nil {
		return nil, err
	}
	if err := metrics.NewAppendWait(s.tel.reg, s.hooks.OldestAppendWait); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if metricsLn == nil {
		s.hooks.Handle("GET /metrics", s.tel.handler(s.log))
	}
	var handler http.Handler = s.hooks
	if s.tp != nil {
		handler = otelhttp.NewHandler(s.hooks, "webhook",
			otelhttp.WithTracerProvider(s.tp), otelhttp.WithPropagators(tracing.Propagator()),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + webhook.Route(r.URL.Path) }))
	}
	s.servers = append(s.servers, s.httpServer("http", netutil.LimitListener(httpLn, cfg.HTTP.MaxConns), handler, s.httpTLS, &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
	}))

	if s.queries() {
		g, err := s.querySide(ctx, restToken, accounts)
		if err != nil {
			return nil, err
		}
		if apiLn != nil {
			// Before gRPC: the API's calls run on the gRPC server.
			api, err := s.apiServers(apiLn, g)
			if err != nil {
				return nil, err
			}
			s.servers = append(s.servers, api...)
		}
		s.servers = append(s.servers, &listener{
			name: "grpc", ln: grpcLn, serve: g.Serve,
			shutdown: func(ctx context.Context) error { stopGRPC(ctx, g); return nil },
		})
	}
	if metricsLn != nil {
		// Last in the list, so that scrapes see the drain to its end.
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.tel.handler(s.log))
		s.servers = append(s.servers, s.httpServer("metrics", netutil.LimitListener(metricsLn, maxMetricsConns), mux, nil, &http.Server{
			ReadHeaderTimeout: 5 * time.Second,
			WriteTimeout:      30 * time.Second,
			MaxHeaderBytes:    maxHeaderBytes,
		}))
	}
	for _, t := range []*tlsfiles.Server{s.grpcTLS, s.httpTLS, s.apiTLS} {
		if t != nil {
			s.background = append(s.background, func(ctx context.Context) { t.Watch(ctx, cfg.Seams.TLSPollInterval) })
		}
	}
	return s, nil
}

// Limits of the HTTP listeners: Twilio's requests carry a few KiB of
// headers, and a scraper needs a handful of connections.
const (
	maxHeaderBytes  = 64 << 10
	maxMetricsConns = 64
)

// sealer is what the writers seal with: the webhook, its own events; the
// reconciler, hang-ups and erasures, events they keep using.
type sealer interface {
	webhook.Sealer
	reconcile.Sealer
}

// sealer is what the writers seal with; nil when sealing is off.
func (s *Server) sealer() sealer {
	if s.personal == nil {
		return nil
	}
	return s.personal
}

// opener is what the readers open sealed personal data with; nil when
// sealing is off.
func (s *Server) opener() callstore.Opener {
	if s.personal == nil {
		return nil
	}
	return s.personal
}

// queries reports whether the server runs the query side: the projection
// and the gRPC services.
func (s *Server) queries() bool { return s.cfg.Role == RoleAll }

// authenticate settles the webhook token and returns the one that may
// also authenticate REST calls: in development mode (no token) it makes
// up a token that only `callledger simulate` knows, which is no REST
// credential, and refuses to listen beyond loopback.
func (s *Server) authenticate() (restToken string, err error) {
	c := &s.cfg.HTTP
	if c.AuthToken != "" {
		if c.PublicURL == "" {
			return "", errors.New("--public-url is required with a Twilio auth token: Twilio signs the URL it calls " +
				"(e.g. https://hooks.example.com), which the server cannot see behind a proxy")
		}
		return c.AuthToken, nil
	}
	if !isLoopback(c.Addr) {
		return "", fmt.Errorf("no Twilio auth token: set TWILIO_AUTH_TOKEN (or --auth-token); "+
			"without one, serve only binds a loopback address, and --http-addr %s is not one", c.Addr)
	}
	tok, err := devToken(s.cfg.DataDir)
	if err != nil {
		return "", err
	}
	c.AuthToken = tok
	s.log.Warn("DEVELOPMENT MODE: no Twilio auth token configured; webhooks are checked against a "+
		"development token that only `callledger simulate` knows. Real Twilio traffic will be refused. "+
		"Set TWILIO_AUTH_TOKEN and --public-url for production.",
		"token_file", devTokenPath(s.cfg.DataDir))
	return "", nil
}

// listen binds addr, named by flag in errors.
func (s *Server) listen(name, flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", flag, err)
	}
	s.onClose(name+" listener", func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	return ln, nil
}

// httpServer is srv serving h on ln, over TLS when t is not nil, logging
// through the server's log.
func (s *Server) httpServer(name string, ln net.Listener, h http.Handler, t *tlsfiles.Server, srv *http.Server) *listener {
	srv.Handler = h
	srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	serve := srv.Serve
	if t != nil {
		srv.TLSConfig = t.TLSConfig("h2", "http/1.1")
		serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
	}
	return &listener{name: name, ln: ln, serve: serve, shutdown: srv.Shutdown}
}

// startTracing starts exporting traces when they are asked for.
func (s *Server) startTracing(ctx context.Context) error {
	endpoint := s.cfg.Tracing.OTLPEndpoint
	if !tracing.Enabled(endpoint) {
		return nil
	}
	tp, err := tracing.Start(ctx, endpoint)
	if err != nil {
		return err
	}
	s.tp = tp
	s.onClose("trace export", func() error {
		// After the servers: their last spans are flushed too.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(fctx); err != nil {
			return fmt.Errorf("flush traces: %w", err)
		}
		return nil
	})
	s.log.Info("exporting traces over OTLP", "endpoint", endpoint)
	return nil
}

// openStore opens the event store and decorates it with what every
// backend gets alike: metrics of its appends and, when tracing is on,
// spans; the embedded store's appends are also refused while its disk is
// nearly full (guardDisk).
func (s *Server) openStore(ctx context.Context) error {
	opts := StoreOptions{Logger: s.log}
	if s.cfg.StoreURL == "" {
		onCommit, err := s.tel.groupCommit()
		if err != nil {
			return err
		}
		opts.OnGroupCommit = onCommit
	}
	if s.keys != nil && s.cfg.StoreURL == "" {
		// The new keys of a group's events are synced once, just before
		// the group: a webhook does not wait for a key store sync of its
		// own before it joins a group (docs/BENCHMARKS.md §10).
		keys := s.keys
		opts.BeforeSync = func() error { return keys.Sync(context.Background()) }
		s.personal = seal.NewEvents(keys, seal.DeferSync())
	}
	store, err := OpenStore(ctx, s.cfg.StoreURL, s.cfg.DataDir, opts)
	if err != nil {
		return err
	}
	s.onClose("event store", store.Close)
	if store, err = s.guardDisk(store); err != nil {
		return err
	}
	s.store = instrument.Metrics(store, s.tel.store)
	if s.tp != nil {
		s.store = instrument.Tracing(s.store, s.tp)
	}
	return nil
}

// querySide opens the call-state projection and builds the gRPC server
// over it: queries, projection management, commands, health and
// reflection. The reconciler and the health watch run beside the servers.
func (s *Server) querySide(ctx context.Context, restToken string, accounts []rest.Account) (*grpc.Server, error) {
	var log callversions.Log = s.store
	if wrap := s.cfg.Seams.ProjectionSubscription; wrap != nil {
		log = instrument.Subscriptions(s.store, wrap)
	}
	if _, err := ClaimReadModel(s.cfg.DataDir, s.cfg.StoreURL, s.log); err != nil {
		return nil, err
	}
	calls, err := callversions.Open(ctx, callversions.Config{
		Root: ProjectionRoot(s.cfg.DataDir), Log: log, Logger: s.log,
		Store:   callstore.Options{Observe: s.tel.delays.Observe, CacheSize: s.cfg.Projection.CacheBytes, Personal: s.opener()},
		Rebuild: rebuild.Options{Personal: s.opener()},
	})
	if err != nil {
		return nil, fmt.Errorf("open call-state read model: %w", err)
	}
	s.calls = calls
	s.onClose("call-state read model", calls.Close)
	if err := s.tel.watchProjection(s.store, calls); err != nil {
		return nil, err
	}
	if err := metrics.NewReadModel(s.tel.reg, calls.Corruptions, calls.Damaged); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}

	if err := s.grpcSecurity(); err != nil {
		return nil, err
	}
	g := grpc.NewServer(s.grpcOptions()...)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
	queries, err := query.New(query.Config{
		Calls: calls, History: s.store, Logger: s.log, Counts: calls, Delays: s.tel.delays, Personal: s.opener(),
		Lag: func(ctx context.Context) (uint64, time.Duration, bool, error) {
			l, err := projections.MeasureLag(ctx, s.store, calls, time.Now())
			return l.Positions, l.Age, calls.CaughtUp(), err
		},
	})
	if err != nil {
		return nil, err
	}
	queries.Register(g)
	proj, err := projection.New(projection.Config{Projection: calls, Log: s.store, Logger: s.log})
	if err != nil {
		return nil, err
	}
	proj.Register(g)
	cmds, rec, err := s.commands(restToken, accounts, calls)
	if err != nil {
		return nil, err
	}
	cmds.Register(g)
	var erasures *erasure.Service
	if !s.keysElsewhere() {
		if erasures, err = s.erasures(ctx, calls); err != nil {
			return nil, err
		}
	}
	// Every node scrubs its read model of what erasures redact, wherever
	// they were made.
	s.background = append(s.background, scrubber{calls: calls, every: s.cfg.Seams.ScrubInterval, log: s.log}.run)
	s.admin(calls, erasures).Register(g)
	if s.personal != nil && s.keys != nil && s.cfg.StoreURL != "" {
		// Webhook replicas on the same KurrentDB seal with this node's keys.
		keyservice.NewServer(s.keys, s.log).Register(g)
	}
	if rec != nil {
		s.background = append(s.background, func(ctx context.Context) {
			if err := rec.Run(ctx); err != nil {
				s.log.Error("reconciler stopped", "err", err)
			}
		})
	}
	// The query service reports SERVING while the projection is current
	// enough, so a balancer does not send reads to a stale replica.
	queryService := callledgerv1.CallQueryService_ServiceDesc.ServiceName
	s.health.SetServingStatus(queryService, healthpb.HealthCheckResponse_NOT_SERVING)
	watch := projectionHealth{
		health: s.health, service: queryService, caughtUp: calls.CaughtUp,
		lag: func(ctx context.Context) (projections.Lag, error) {
			return projections.MeasureLag(ctx, s.store, calls, time.Now())
		},
		maxLag: s.cfg.Projection.MaxLag, interval: 500 * time.Millisecond, log: s.log,
	}
	s.background = append(s.background, watch.run)
	// No method serves without a rule.
	if err := Policy().Check(g.GetServiceInfo()); err != nil {
		return nil, err
	}
	s.grpcServices = g.GetServiceInfo()
	s.tel.instrumentGRPC(g) // after the last service is registered
	return g, nil
}

// grpcOptions are every option of the gRPC server, assembled here alone:
// the query service's, TLS, the limits, the interceptors in the order they
// run (metrics first, so that refusals are counted; then authentication and
// authorization; then the per-principal limits), and the tracing stats
// handler.
func (s *Server) grpcOptions() []grpc.ServerOption {
	limits := newCallLimits(s.cfg.GRPC)
	perConn, shedUnary, shedStream := s.shedding()
	// Metrics first, so that every refusal is counted; authentication
	// next, so that calls of nobody take no share of what shedding admits.
	unary := []grpc.UnaryServerInterceptor{s.tel.grpc.UnaryServerInterceptor(), s.auth.Unary(), shedUnary, limits.unary}
	stream := []grpc.StreamServerInterceptor{s.tel.grpc.StreamServerInterceptor(), s.auth.Stream(), shedStream, limits.stream}
	if seam := s.cfg.Seams.GRPCInterceptors; seam != nil {
		unary, stream = append(unary, seam.Unary), append(stream, seam.Stream)
	}
	opts := slices.Concat(query.ServerOptions(), grpcLimits(), []grpc.ServerOption{
		perConn, // after grpcLimits: --overload's streams per connection win
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	})
	if s.grpcTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.grpcTLS.TLSConfig("h2"))))
	}
	if s.tp != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(s.tp), otelgrpc.WithPropagators(tracing.Propagator()))))
	}
	return opts
}

// grpcLimits bound what one connection can take of the server: streams at
// once, message sizes (requests are small; the largest answer, a page of
// ListCallEvents, stays below the send limit by query.DefaultMaxPageBytes),
// how often a client may ping, and how long a handshake may take. Idle
// connections are probed so that a vanished client's streams end.
func grpcLimits() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.MaxSendMsgSize(maxSendMsgSize),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
}

// Limits of a gRPC connection.
const (
	maxConcurrentStreams = 256
	maxRecvMsgSize       = 1 << 20
	maxSendMsgSize       = 16 << 20
)

// GRPCServices returns the services and methods the gRPC server registered
// (grpc.Server.GetServiceInfo); nil with RoleWebhooks. Every one has a rule
// in Policy.
func (s *Server) GRPCServices() map[string]grpc.ServiceInfo { return s.grpcServices }

// Addrs returns the addresses the server listens on.
func (s *Server) Addrs() Addrs {
	var a Addrs
	for _, l := range s.servers {
		switch l.name {
		case "http":
			a.HTTP = l.ln.Addr().String()
		case "grpc":
			a.GRPC = l.ln.Addr().String()
		case "metrics":
			a.Metrics = l.ln.Addr().String()
		case "api":
			a.API = l.ln.Addr().String()
		}
	}
	return a
}

// DataDir returns the data directory, where tools and tests beside the
// server find its local tokens (ReadLocalAPIToken, ReadDevToken).
func (s *Server) DataDir() string { return s.cfg.DataDir }

// Store returns the event store as the server uses it, decorators
// included; instrument.Unwrap reaches the adapter. For tests and tools
// that run beside the server in its process.
func (s *Server) Store() eventstore.Store { return s.store }

// Projection returns the call-state read model the queries answer from;
// Personal seals and opens personal data with the server's key store;
// nil when sealing is off (Privacy.Unsealed). Tests fold the log with it
// as the projection does.
func (s *Server) Personal() *seal.Events { return s.personal }

// nil with RoleWebhooks. For tests that run beside the server.
func (s *Server) Projection() *callversions.Manager { return s.calls }

// Run serves until ctx ends or a server fails, then shuts down in order:
// webhooks drain (new ones get 503), gRPC health turns NOT_SERVING, the
// servers stop in turn (HTTP, then the API, whose watch streams end at
// once, then gRPC, bounded by ShutdownTimeout, /metrics last), the
// background work stops, and the read model, the store and the trace
// export close. It returns the failure that stopped it, if any.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	for _, run := range s.background {
		bg.Go(func() { run(bgCtx) })
	}
	errc := make(chan error, len(s.servers))
	for _, l := range s.servers {
		go func() { errc <- l.serve(l.ln) }()
	}
	a := s.Addrs()
	grpcAt, metricsAt, apiAt := cmp.Or(a.GRPC, "off"), cmp.Or(a.Metrics, "http"), cmp.Or(a.API, "off")
	s.log.Info("callledger serving",
		"http", a.HTTP, "grpc", grpcAt, "api", apiAt, "metrics", metricsAt, "role", string(s.cfg.Role),
		"public_url", s.cfg.HTTP.PublicURL, "data_dir", s.cfg.DataDir, "store", storeKind(s.cfg.StoreURL))

	var serveErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down: finishing requests in flight")
	case serveErr = <-errc:
		s.log.Error("server stopped", "err", serveErr)
	}

	s.hooks.Drain()
	if s.health != nil {
		s.health.Shutdown()
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	for _, l := range s.servers {
		if err := l.shutdown(shutCtx); err != nil {
			s.log.Error(l.name+" shutdown", "err", err)
		}
	}
	stopBackground()
	bg.Wait()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return serveErr
	}
	return nil
}

// Close releases what New opened: the read model, the store, the trace
// export and the listeners. Run closes on its own; call Close for a server
// that is never run. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for i := len(s.closers) - 1; i >= 0; i-- {
			c := s.closers[i]
			if err := c.close(); err != nil {
				s.log.Error("close "+c.what, "err", err)
				errs = append(errs, fmt.Errorf("close %s: %w", c.what, err))
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// onClose registers what Close releases, after everything registered
// later.
func (s *Server) onClose(what string, close func() error) {
	s.closers = append(s.closers, closer{what: what, close: close})
}

// stopGRPC stops gracefully, or at once when ctx ends first (streams such as
// WatchCalls never end on their own).
func stopGRPC(ctx context.Context, srv *grpc.Server) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		srv.Stop()
	}
}

// privateDataDir creates the data directory 0700 and takes group and
// others' permissions away from what an older version left in it
// (privatefs). A directory the server does not own (a volume's root) keeps
// its mode, with a warning.
func (s *Server) privateDataDir() error {
	dir := s.cfg.DataDir
	err := privatefs.MkdirAll(dir)
	if errors.Is(err, fs.ErrPermission) {
		s.log.Warn("the data directory is not private and the server cannot change its mode: make it 0700, "+
			"or point --data-dir at a directory inside it, which the server creates 0700", "data_dir", dir, "err", err)
		err = nil
	}
	if err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if err := privatefs.Tighten(dir); err != nil {
		s.log.Warn("some files of the data directory stay readable by others", "data_dir", dir, "err", err)
	}
	return nil
}

// isLoopback reports whether addr binds a loopback interface only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
