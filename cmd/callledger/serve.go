package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/services/query"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/tracing"
	"github.com/callledger/callledger/twilio"
)

// serveConfig is everything `serve` can be told.
type serveConfig struct {
	storeFlags
	role            string
	httpAddr        string
	metricsAddr     string
	otlpEndpoint    string
	grpcAddr        string
	publicURL       string
	authToken       string
	authToken2      string
	maxInFlight     int
	dialTwiML       string
	shutdownTimeout time.Duration
	cacheMB         int
	maxQueryLag     time.Duration
	log             logFlags
	commands        commandFlags
}

func serveCommand(stdout, stderr io.Writer) *ffcli.Command {
	var cfg serveConfig
	fs := newFlagSet("serve", stderr)
	cfg.storeFlags.register(fs)
	fs.StringVar(&cfg.httpAddr, "http-addr", "127.0.0.1:8080", "listen address of the Twilio webhooks and health probes")
	fs.StringVar(&cfg.role, "role", roleAll, "what this process serves: \"all\" (webhooks, the call-state projection and the gRPC services) or \"webhooks\" (webhooks, health and metrics only: no projection, no gRPC; for stateless webhook replicas on a shared KurrentDB)")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "", "listen address of /metrics on a listener of its own (e.g. 0.0.0.0:9464), so that scrapers need not reach the listener Twilio reaches; empty: /metrics is served on --http-addr")
	fs.StringVar(&cfg.otlpEndpoint, "otlp-endpoint", "", "OpenTelemetry collector to export traces of webhooks and gRPC calls to, over OTLP/gRPC (e.g. http://collector:4317; http: without TLS); empty: off, unless the standard OTEL_EXPORTER_OTLP_ENDPOINT is set")
	fs.StringVar(&cfg.grpcAddr, "grpc-addr", "127.0.0.1:9090", "listen address of the gRPC services")
	fs.StringVar(&cfg.publicURL, "public-url", "", "public base URL Twilio calls (e.g. https://hooks.example.com), which signatures are checked against; defaults to http://<http-addr> only in development mode")
	fs.StringVar(&cfg.authToken, "auth-token", "", "Twilio auth token (primary); falls back to TWILIO_AUTH_TOKEN")
	fs.StringVar(&cfg.authToken2, "auth-token-secondary", "", "Twilio secondary auth token, accepted during rotation; falls back to TWILIO_AUTH_TOKEN_SECONDARY")
	fs.IntVar(&cfg.maxInFlight, "max-in-flight", webhook.DefaultMaxInFlight, "webhook appends in flight before new ones get 503")
	fs.StringVar(&cfg.dialTwiML, "dial-twiml", webhook.DefaultDialTwiML, "TwiML answered to <Dial action> callbacks")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long a graceful shutdown waits for requests in flight")
	fs.IntVar(&cfg.cacheMB, "read-model-cache-mb", callstore.DefaultCacheSize>>20, "block cache of the call-state read model, in MiB; about 400 per million calls keeps all of it in memory")
	fs.DurationVar(&cfg.maxQueryLag, "max-query-lag", 30*time.Second, "the query service reports NOT_SERVING on gRPC health while the projection's oldest unapplied event is older than this (0: no bound)")
	cfg.log.register(fs)
	cfg.commands.register(fs)
	return &ffcli.Command{
		Name:       "serve",
		ShortUsage: "callledger serve [flags]",
		ShortHelp:  "serve Twilio webhooks and the gRPC services",
		FlagSet:    fs,
		Options:    ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("serve takes no arguments, got %q", args)
			}
			logger, err := cfg.log.logger(stderr)
			if err != nil {
				return err
			}
			return serve(ctx, cfg, logger)
		},
	}
}

func serve(ctx context.Context, cfg serveConfig, logger *slog.Logger) error {
	if cfg.authToken == "" {
		cfg.authToken = os.Getenv("TWILIO_AUTH_TOKEN")
	}
	if cfg.authToken2 == "" {
		cfg.authToken2 = os.Getenv("TWILIO_AUTH_TOKEN_SECONDARY")
	}
	if cfg.role != roleAll && cfg.role != roleWebhooks {
		return fmt.Errorf("--role %q: must be %q or %q", cfg.role, roleAll, roleWebhooks)
	}
	queries := cfg.role == roleAll
	if cfg.cacheMB <= 0 {
		return fmt.Errorf("--read-model-cache-mb %d: must be positive", cfg.cacheMB)
	}
	if err := os.MkdirAll(cfg.dataDir, 0o750); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	devMode := cfg.authToken == ""
	restToken := cfg.authToken // the development token is no REST credential
	if devMode {
		if !isLoopback(cfg.httpAddr) {
			return fmt.Errorf("no Twilio auth token: set TWILIO_AUTH_TOKEN (or --auth-token); "+
				"without one, serve only binds a loopback address, and --http-addr %s is not one", cfg.httpAddr)
		}
		tok, err := devToken(cfg.dataDir)
		if err != nil {
			return err
		}
		cfg.authToken = tok
		logger.Warn("DEVELOPMENT MODE: no Twilio auth token configured; webhooks are checked against a "+
			"development token that only `callledger simulate` knows. Real Twilio traffic will be refused. "+
			"Set TWILIO_AUTH_TOKEN and --public-url for production.",
			"token_file", devTokenPath(cfg.dataDir))
	}
	if cfg.publicURL == "" && !devMode {
		return errors.New("--public-url is required with a Twilio auth token: Twilio signs the URL it calls " +
			"(e.g. https://hooks.example.com), which the server cannot see behind a proxy")
	}
	httpLn, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("listen --http-addr: %w", err)
	}
	defer httpLn.Close()
	var grpcLn net.Listener // nil: no gRPC services (--role webhooks)
	if queries {
		if grpcLn, err = net.Listen("tcp", cfg.grpcAddr); err != nil {
			return fmt.Errorf("listen --grpc-addr: %w", err)
		}
		defer grpcLn.Close()
	}
	var metricsLn net.Listener // nil: /metrics is on the HTTP listener
	if cfg.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.metricsAddr); err != nil {
			return fmt.Errorf("listen --metrics-addr: %w", err)
		}
		defer metricsLn.Close()
	}
	if cfg.publicURL == "" {
		// Development mode: the server signs for itself as it is reached
		// locally, on the port it actually got.
		cfg.publicURL = "http://" + httpLn.Addr().String()
	}
	tokens := []string{cfg.authToken}
	if cfg.authToken2 != "" {
		tokens = append(tokens, cfg.authToken2)
	}
	verifier, err := twilio.NewVerifier(cfg.publicURL, tokens...)
	if err != nil {
		return fmt.Errorf("--public-url: %w", err)
	}

	tel, err := newTelemetry()
	if err != nil {
		return err
	}
	store, err := cfg.open(ctx, logger, tel.onCommit)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("close event store", "err", err)
		}
	}()

	if embedded, ok := store.(*pebblestore.Store); ok {
		// Group-commit counters exist only for the embedded store.
		if err := tel.watchStore(embedded); err != nil {
			return err
		}
	}

	hooks, err := webhook.New(webhook.Config{
		Verifier:    verifier,
		Store:       store,
		Logger:      logger,
		MaxInFlight: cfg.maxInFlight,
		DialTwiML:   cfg.dialTwiML,
		Observer:    tel.webhook,
		Ready:       storeReady(store),
	})
	if err != nil {
		return err
	}

	var metricsSrv *http.Server
	if metricsLn == nil {
		hooks.Handle("GET /metrics", tel.handler(logger))
	} else {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", tel.handler(logger))
		metricsSrv = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			WriteTimeout:      30 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}

	var handler http.Handler = hooks
	var grpcOpts []grpc.ServerOption
	if tracing.Enabled(cfg.otlpEndpoint) {
		tp, err := tracing.Start(ctx, cfg.otlpEndpoint)
		if err != nil {
			return err
		}
		defer func() {
			// After the servers: their last spans are flushed too.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(fctx); err != nil {
				logger.Warn("flush traces", "err", err)
			}
		}()
		handler = otelhttp.NewHandler(hooks, "webhook",
			otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(tracing.Propagator()),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + webhook.Route(r.URL.Path) }))
		grpcOpts = append(grpcOpts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(tracing.Propagator()))))
		logger.Info("exporting traces over OTLP", "endpoint", cfg.otlpEndpoint)
	}
	httpSrv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	var qs *querySide
	if queries {
		if qs, err = startQuerySide(ctx, cfg, restToken, store, tel, logger, grpcOpts...); err != nil {
			return err
		}
		defer qs.stop()
	}

	errc := make(chan error, 3)
	go func() { errc <- httpSrv.Serve(httpLn) }()
	grpcAt := "off"
	if qs != nil {
		go func() { errc <- qs.grpc.Serve(grpcLn) }()
		grpcAt = grpcLn.Addr().String()
	}
	metricsAt := "http" // the HTTP listener
	if metricsSrv != nil {
		go func() { errc <- metricsSrv.Serve(metricsLn) }()
		metricsAt = metricsLn.Addr().String()
	}
	logger.Info("callledger serving",
		"http", httpLn.Addr().String(), "grpc", grpcAt, "metrics", metricsAt, "role", cfg.role,
		"public_url", cfg.publicURL, "data_dir", cfg.dataDir, "store", storeKind(cfg.store))

	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down: finishing requests in flight")
	case serveErr = <-errc:
		logger.Error("server stopped", "err", serveErr)
	}

	hooks.Drain()
	if qs != nil {
		qs.health.Shutdown()
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		logger.Error("http shutdown", "err", err)
	}
	if qs != nil {
		stopGRPC(shutCtx, qs.grpc)
	}
	if metricsSrv != nil {
		// Last, so that scrapes see the drain to its end.
		if err := metricsSrv.Shutdown(shutCtx); err != nil {
			logger.Error("metrics shutdown", "err", err)
		}
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return serveErr
	}
	return nil
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

// The roles of --role.
const (
	roleAll      = "all"
	roleWebhooks = "webhooks"
)

// querySide is what serve runs besides the webhooks unless --role is
// webhooks: the call-state projection, the gRPC services over it, the
// hang-up commands and the reconciler.
type querySide struct {
	grpc   *grpc.Server
	health *health.Server
	// stop stops the commands, the reconciler and the health watch, then
	// closes the read model; after grpc has stopped.
	stop func()
}

// startQuerySide opens the projection and builds the gRPC server, with
// opts besides serve's own; the caller serves it.
func startQuerySide(ctx context.Context, cfg serveConfig, restToken string, store eventstore.Store, tel *telemetry, logger *slog.Logger, opts ...grpc.ServerOption) (*querySide, error) {
	calls, err := openProjection(ctx, cfg.dataDir, store, callstore.Options{Observe: tel.delays.Observe, CacheSize: int64(cfg.cacheMB) << 20}, logger)
	if err != nil {
		return nil, err
	}
	var stops []func() // run in reverse order
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	stops = append(stops, func() {
		if err := calls.Close(); err != nil {
			logger.Error("close call-state read model", "err", err)
		}
	})
	fail := func(err error) (*querySide, error) {
		stop()
		return nil, err
	}
	if err := tel.watchProjection(store, calls); err != nil {
		return fail(err)
	}
	runCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	stops = append(stops, stopWatch)

	grpcSrv := grpc.NewServer(slices.Concat(query.ServerOptions(), tel.grpcOptions(), opts)...)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(grpcSrv, healthSrv)
	reflection.Register(grpcSrv)
	queries, err := query.New(query.Config{Calls: calls, History: store, Logger: logger, Counts: calls, Delays: tel.delays})
	if err != nil {
		return fail(err)
	}
	queries.Register(grpcSrv)
	if err := registerProjection(grpcSrv, calls, store, logger); err != nil {
		return fail(err)
	}
	stopCommands, err := startCommands(ctx, cfg.commands, restToken, store, calls, grpcSrv, tel.reconciler.Action, logger)
	if err != nil {
		return fail(err)
	}
	stops = append(stops, stopCommands)
	// The query service reports SERVING while the projection is current
	// enough, so a balancer does not send reads to a stale replica.
	queryService := callledgerv1.CallQueryService_ServiceDesc.ServiceName
	healthSrv.SetServingStatus(queryService, healthpb.HealthCheckResponse_NOT_SERVING)
	go projectionHealth{
		health: healthSrv, service: queryService, caughtUp: calls.CaughtUp,
		lag: func(ctx context.Context) (projections.Lag, error) {
			return projections.MeasureLag(ctx, store, calls, time.Now())
		},
		maxLag: cfg.maxQueryLag, interval: 500 * time.Millisecond, log: logger,
	}.run(runCtx)

	tel.instrumentGRPC(grpcSrv) // after the last service is registered
	return &querySide{grpc: grpcSrv, health: healthSrv, stop: stop}, nil
}
