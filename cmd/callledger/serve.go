package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/eventstore/freespace"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/services/webhook"
)

// serveFlags are everything `serve` can be told; config turns them into
// the server's Config.
type serveFlags struct {
	storeFlags
	role            string
	httpAddr        string
	metricsAddr     string
	otlpEndpoint    string
	grpcAddr        string
	apiAddr         string
	apiCORSOrigins  string
	publicURL       string
	authToken       string
	authToken2      string
	maxInFlight     int
	maxAppendWait   time.Duration
	dialTwiML       string
	shutdownTimeout time.Duration
	cacheMB         int
	maxQueryLag     time.Duration
	minFreeSpace    string
	erasureJournal  string
	retention       time.Duration
	log             logFlags
	commands        commandFlags
	security        securityFlags
	kek             kekFlag
	seal            bool
	keyService      server.KeyService
}

func serveCommand(stdout, stderr io.Writer) *ffcli.Command {
	var f serveFlags
	fs := newFlagSet("serve", stderr)
	f.storeFlags.register(fs)
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "listen address of the Twilio webhooks and health probes")
	fs.StringVar(&f.role, "role", string(server.RoleAll), "what this process serves: \"all\" (webhooks, the call-state projection and the gRPC services) or \"webhooks\" (webhooks, health and metrics only: no projection, no gRPC; for stateless webhook replicas on a shared KurrentDB)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "listen address of /metrics on a listener of its own (e.g. 0.0.0.0:9464), so that scrapers need not reach the listener Twilio reaches; empty: /metrics is served on --http-addr")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "OpenTelemetry collector to export traces of webhooks and gRPC calls to, over OTLP/gRPC (e.g. http://collector:4317; http: without TLS); empty: off, unless the standard OTEL_EXPORTER_OTLP_ENDPOINT is set")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:9090", "listen address of the gRPC services")
	fs.StringVar(&f.apiAddr, "api-addr", "127.0.0.1:8081", "listen address of the browser API: the REST routes of the gRPC services (/v1/…), /openapi.json and the live call board at /; empty: off")
	fs.StringVar(&f.apiCORSOrigins, "api-cors-origins", "", "comma-separated origins allowed to call the REST routes from other pages (e.g. https://ops.example.com), or *; empty: same origin only")
	fs.StringVar(&f.publicURL, "public-url", "", "public base URL Twilio calls (e.g. https://hooks.example.com), which signatures are checked against; defaults to http://<http-addr> only in development mode")
	fs.StringVar(&f.authToken, "auth-token", "", "Twilio auth token (primary); falls back to TWILIO_AUTH_TOKEN")
	fs.StringVar(&f.authToken2, "auth-token-secondary", "", "Twilio secondary auth token, accepted during rotation; falls back to TWILIO_AUTH_TOKEN_SECONDARY")
	fs.IntVar(&f.maxInFlight, "max-in-flight", webhook.DefaultMaxInFlight, "webhook appends in flight before new ones get 503")
	fs.DurationVar(&f.maxAppendWait, "max-append-wait", webhook.DefaultMaxAppendWait, "new webhooks get 503 at once while the oldest append in flight has waited longer than this, so that a slowed store answers what it takes within it, well inside Twilio's 15s (0: off)")
	fs.StringVar(&f.dialTwiML, "dial-twiml", webhook.DefaultDialTwiML, "TwiML answered to <Dial action> callbacks")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long a graceful shutdown waits for requests in flight")
	fs.IntVar(&f.cacheMB, "read-model-cache-mb", callstore.DefaultCacheSize>>20, "block cache of the call-state read model, in MiB; about 400 per million calls keeps all of it in memory")
	fs.DurationVar(&f.maxQueryLag, "max-query-lag", 30*time.Second, "the query service reports NOT_SERVING on gRPC health while the projection's oldest unapplied event is older than this (0: no bound)")
	fs.StringVar(&f.minFreeSpace, "min-free-space", "", "refuse appends (webhooks get 503 with Retry-After, /readyz fails) while the embedded ledger's filesystem has less free space than this, e.g. 512MiB or 2GB; 0: off (default: the smaller of 1GiB and 5% of the filesystem, at least 128MiB)")
	fs.StringVar(&f.erasureJournal, "erasure-journal", "", "the erasure journal: one line per erasure (CallSids, no numbers), synced before an erasure is acknowledged and replayed at start, so that a restored backup forgets again; keep it off the backup's restore path (default: <data-dir>/erasures.jsonl)")
	fs.DurationVar(&f.retention, "retention", 0, "erase the personal data of calls that ended longer ago than this (e.g. 2160h for 90 days); a call that never ended counts as ended 24h after it began; 0: off")
	f.kek.register(fs)
	fs.BoolVar(&f.seal, "seal", true, "seal personal data (numbers, names, recordings, the verbatim requests) with a key per call leg, so that erasing a caller destroys keys rather than rewriting the log (docs/PRIVACY.md); false stores it in the clear, and cannot be erased by destroying keys until callledger seal (or copy) has sealed it")
	fs.StringVar(&f.keyService.Addr, "key-service-addr", "", "on a node that shares a KurrentDB (--store) with the --role all node holding the key store (a webhook replica, or a query replica with --role all): that node's gRPC address (its --grpc-addr), whose key service this node seals and opens with (docs/PRIVACY.md §4); TLS required beyond loopback")
	fs.StringVar(&f.keyService.TokenFile, "key-service-token-file", "", "file holding the API token of a principal with scope keys:use on the --key-service-addr node, readable by its owner only (not needed with a client certificate that names one)")
	fs.StringVar(&f.keyService.TLSCA, "key-service-tls-ca", "", "PEM file of the CA that signed the --key-service-addr node's certificate (its --grpc-tls-cert); turns TLS on")
	fs.StringVar(&f.keyService.TLSCert, "key-service-tls-cert", "", "PEM client certificate for a --key-service-addr node that requires one (--grpc-client-ca)")
	fs.StringVar(&f.keyService.TLSKey, "key-service-tls-key", "", "PEM key of --key-service-tls-cert")
	f.log.register(fs)
	f.commands.register(fs)
	f.security.register(fs)
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
			logger, err := f.log.logger(stderr)
			if err != nil {
				return err
			}
			warnWithoutCgo(logger)
			cfg, err := f.config(logger)
			if err != nil {
				return err
			}
			srv, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			stop := reloadOnSIGHUP(srv)
			defer stop()
			return srv.Run(ctx)
		},
	}
}

// config is the server's Config the flags describe.
func (f *serveFlags) config(logger *slog.Logger) (server.Config, error) {
	if f.cacheMB <= 0 {
		return server.Config{}, fmt.Errorf("--read-model-cache-mb %d: must be positive", f.cacheMB)
	}
	minFree, err := f.minFreeBytes()
	if err != nil {
		return server.Config{}, err
	}
	return server.Config{
		Role:     server.Role(f.role),
		DataDir:  f.dataDir,
		StoreURL: f.store,
		HTTP: server.HTTP{
			Addr: f.httpAddr, PublicURL: f.publicURL,
			AuthToken: f.authToken, SecondaryAuthToken: f.authToken2,
			MaxInFlight: f.maxInFlight, MaxAppendWait: offWhenZero(f.maxAppendWait), DialTwiML: f.dialTwiML,
			TLSCert: f.security.httpTLSCert, TLSKey: f.security.httpTLSKey, MaxConns: f.security.httpMaxConns,
		},
		GRPC: server.GRPC{
			Addr:    f.grpcAddr,
			TLSCert: f.security.grpcTLSCert, TLSKey: f.security.grpcTLSKey, ClientCA: f.security.grpcClientCA,
			APITokens: f.security.apiTokens, Insecure: f.security.grpcInsecure,
			HangupRate: f.security.hangupRate, HangupBurst: f.security.hangupBurst,
			MaxWatches: f.security.maxWatches, MaxWatchesPerPrincipal: f.security.maxWatchesPerPrincipal,
		},
		API: server.API{
			Addr: f.apiAddr, CORSOrigins: splitList(f.apiCORSOrigins),
			TLSCert: f.security.apiTLSCert, TLSKey: f.security.apiTLSKey,
		},
		Metrics:    server.Metrics{Addr: f.metricsAddr},
		Projection: server.Projection{CacheBytes: int64(f.cacheMB) << 20, MaxLag: f.maxQueryLag},
		Disk:       server.Disk{MinFreeBytes: minFree},
		Twilio: server.Twilio{
			AccountsFile: f.commands.accountsFile, AccountSid: f.commands.accountSid,
			APIKeySid: f.commands.apiKey, APIKeySecret: f.commands.apiSecret,
		},
		Reconcile: server.Reconcile{
			HangupAfter: f.commands.hangupAfter, IdleAfter: f.commands.idleAfter, PlaceholderAfter: f.commands.placeholderAfter,
			Rate: f.commands.rate, Burst: f.commands.burst,
		},
		Tracing:         server.Tracing{OTLPEndpoint: f.otlpEndpoint},
		Erasure:         server.Erasure{Journal: f.erasureJournal, Retention: f.retention},
		Privacy:         server.Privacy{KEKFile: f.kek.file, Unsealed: !f.seal, KeyService: f.keyService},
		ShutdownTimeout: f.shutdownTimeout,
		Logger:          logger,
	}, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// minFreeBytes is --min-free-space as server.Disk takes it: 0 for the
// default (the flag unset), negative for off ("0").
func (f *serveFlags) minFreeBytes() (int64, error) {
	if f.minFreeSpace == "" {
		return 0, nil
	}
	n, err := freespace.ParseSize(f.minFreeSpace)
	switch {
	case err != nil:
		return 0, fmt.Errorf("--min-free-space: %w", err)
	case n == 0:
		return -1, nil
	case n > math.MaxInt64:
		return 0, fmt.Errorf("--min-free-space %s: too large", f.minFreeSpace)
	}
	return int64(n), nil
}

// offWhenZero turns a duration flag's 0 ("off") into the negative value
// that means off to the server, whose zero means its default.
func offWhenZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
