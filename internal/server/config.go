package server

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/freespace"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/reconcile"
	"github.com/callledger/callledger/services/webhook"
)

// Role is what a server serves.
type Role string

// The roles a server can take.
const (
	// RoleAll serves the webhooks, the call-state projection and the gRPC
	// services.
	RoleAll Role = "all"
	// RoleWebhooks serves the webhooks, health and metrics only: no
	// projection, no gRPC; for stateless webhook replicas on a shared
	// KurrentDB.
	RoleWebhooks Role = "webhooks"
)

// Config is everything a server can be told, as typed settings grouped by
// the part of the server they configure. Each setting names the flag of
// `callledger serve` that sets it, and errors about a setting name that
// flag, since that is how users set it. The zero value of a setting is its
// default unless its comment says otherwise.
type Config struct {
	// Role is what the server serves (--role); default RoleAll.
	Role Role
	// DataDir holds the embedded event store (ledger/), the projections
	// (projections/), the key store (keys/) and the development token and
	// KEK (--data-dir); created if missing.
	DataDir string
	// StoreURL names the event store (--store): empty for the embedded
	// store in DataDir/ledger, or a KurrentDB connection string.
	StoreURL string

	HTTP       HTTP
	GRPC       GRPC
	API        API
	Metrics    Metrics
	Projection Projection
	// Disk guards the embedded ledger against a full disk.
	Disk Disk
	// Overload bounds queries and watchers, which give way to webhooks.
	Overload  Overload
	Twilio    Twilio
	Reconcile Reconcile
	Tracing   Tracing
	// Erasure configures erasures and retention.
	Erasure Erasure
	// Privacy seals personal data with keys of a key store in
	// DataDir/keys (docs/PRIVACY.md).
	Privacy Privacy

	// ShutdownTimeout bounds how long a graceful shutdown waits for
	// requests and streams in flight (--shutdown-timeout); default 20 s.
	ShutdownTimeout time.Duration
	// Logger receives the server's log; default discard.
	Logger *slog.Logger

	// Seams are for tests; production leaves them zero.
	Seams Seams
}

// HTTP configures the listener Twilio reaches: the webhooks and the health
// probes.
type HTTP struct {
	// Addr is the listen address (--http-addr); port 0 picks a free one
	// (see Server.Addrs).
	Addr string
	// PublicURL is the base URL Twilio calls, which signatures are checked
	// against (--public-url). Required with an AuthToken; in development
	// mode it defaults to http://<bound address>.
	PublicURL string
	// AuthToken is the Twilio auth token (--auth-token). Empty means
	// development mode: a token made up in DataDir that only `callledger
	// simulate` knows, and Addr must be a loopback address.
	AuthToken string
	// SecondaryAuthToken is accepted too, during a rotation
	// (--auth-token-secondary).
	SecondaryAuthToken string
	// MaxInFlight bounds the webhook appends in flight (--max-in-flight);
	// default webhook.DefaultMaxInFlight.
	MaxInFlight int
	// MaxAppendWait refuses new webhooks while the oldest append in flight
	// has waited longer (--max-append-wait); zero: the default
	// (webhook.DefaultMaxAppendWait), negative: off.
	MaxAppendWait time.Duration
	// DialTwiML answers <Dial action> callbacks (--dial-twiml); default
	// webhook.DefaultDialTwiML.
	DialTwiML string
	// TLSCert and TLSKey serve the webhooks over HTTPS (--http-tls-cert,
	// --http-tls-key; PEM, reloaded when they change and by Reload), for
	// deployments without a terminating proxy. Twilio requires a
	// certificate of a public CA.
	TLSCert, TLSKey string
	// MaxConns caps the connections open at once
	// (--http-max-connections); more wait to be accepted. Default
	// DefaultHTTPMaxConns.
	MaxConns int
}

// GRPC configures the listener of the gRPC services (RoleAll only) and who
// may call them (see docs/SECURITY.md).
type GRPC struct {
	// Addr is the listen address (--grpc-addr); port 0 picks a free one.
	// Beyond loopback, New refuses to serve it without TLS and an
	// authentication method unless Insecure is set.
	Addr string
	// TLSCert and TLSKey serve gRPC over TLS 1.2 or later
	// (--grpc-tls-cert, --grpc-tls-key; PEM, reloaded when they change and
	// by Reload, without dropping connections).
	TLSCert, TLSKey string
	// ClientCA, with TLS, requires a client certificate signed by this CA
	// (--grpc-client-ca); its identity is a principal of APITokens.
	ClientCA string
	// APITokens is the API tokens file (--api-tokens; re-read by Reload):
	// principals by token hash or client certificate, with their scopes.
	// Empty, on a loopback address and without ClientCA or Insecure: a
	// local token is made in DataDir (LocalAPITokenPath) for every scope.
	APITokens string
	// Insecure serves without TLS or without authentication, whatever is
	// missing (--grpc-insecure), with a warning at start and every hour.
	// What is configured still applies.
	Insecure bool
	// HangupRate and HangupBurst bound the RequestHangup calls of each
	// principal (--hangup-rate per second, --hangup-burst); defaults
	// DefaultHangupRate, DefaultHangupBurst.
	HangupRate  float64
	HangupBurst int
	// MaxWatches and MaxWatchesPerPrincipal cap the WatchCalls streams
	// open at once, in all and per principal (--max-watches,
	// --max-watches-per-principal); defaults DefaultMaxWatches,
	// DefaultMaxWatchesPerPrincipal.
	MaxWatches, MaxWatchesPerPrincipal int
}

// API configures the listener browsers and scripts reach (RoleAll only):
// the REST routes of the gRPC services, the OpenAPI document and the call
// board, served through the gRPC server's own interceptors.
type API struct {
	// Addr is the listen address (--api-addr); empty: no API listener.
	// Without a Twilio auth token (development mode) it must be loopback.
	Addr string
	// CORSOrigins may call the REST routes from other origins
	// (--api-cors-origins): scheme://host[:port], or * for any. Empty:
	// same origin only.
	CORSOrigins []string
	// TLSCert and TLSKey serve the API over HTTPS (--api-tls-cert,
	// --api-tls-key; PEM, reloaded when they change and by Reload).
	// Beyond loopback, New refuses a plaintext API unless GRPC.Insecure.
	TLSCert, TLSKey string
}

// Defaults of the limits.
const (
	DefaultHTTPMaxConns           = 10_000
	DefaultHangupRate             = 2.0
	DefaultHangupBurst            = 20
	DefaultMaxWatches             = 1000
	DefaultMaxWatchesPerPrincipal = 100
	// DefaultMetricsPort is the port of /metrics's own listener when
	// --http-addr is not loopback and --metrics-addr is not set.
	DefaultMetricsPort = "9464"
)

// Metrics configures where /metrics is served.
type Metrics struct {
	// Addr is a listener of /metrics's own (--metrics-addr). Empty serves
	// /metrics on the HTTP listener when it is loopback, and otherwise on
	// the HTTP listener's host at port DefaultMetricsPort, so that a
	// listener Twilio reaches never serves it.
	Addr string
}

// Projection configures the call-state projection and the read model the
// queries answer from (RoleAll only).
type Projection struct {
	// CacheBytes is the read model's block cache (--read-model-cache-mb);
	// default callstore.DefaultCacheSize.
	CacheBytes int64
	// MaxLag: the query service reports NOT_SERVING on gRPC health while
	// the projection's oldest unapplied event is older than this
	// (--max-query-lag); 0 means no bound.
	MaxLag time.Duration
}

// Disk is the free-space watermark of the embedded ledger (ignored on
// KurrentDB, whose ledger is on KurrentDB's disks).
type Disk struct {
	// MinFreeBytes: appends are refused (webhooks 503, commands
	// UNAVAILABLE, /readyz failing) while the ledger's filesystem has
	// less free space than this (--min-free-space). Zero means
	// freespace.DefaultMin of the filesystem (the smaller of 1 GiB and 5 %
	// of it, at least freespace.Headroom); negative turns the guard off
	// (--min-free-space 0).
	MinFreeBytes int64
	// CheckInterval is how often the free space is read (no flag; default
	// freespace.DefaultInterval).
	CheckInterval time.Duration
}

// Twilio holds the credentials of Twilio's REST API, for hang-ups and the
// reconciler. None means REST is off.
type Twilio struct {
	// AccountsFile is a JSON file of credentials per account
	// (--twilio-accounts).
	AccountsFile string
	// AccountSid is one more account (--twilio-account-sid), authenticated
	// by APIKeySid and APIKeySecret (--twilio-api-key,
	// --twilio-api-secret) or else by HTTP.AuthToken.
	AccountSid   string
	APIKeySid    string
	APIKeySecret string
}

// Reconcile tunes the reconciler, which runs when REST credentials are
// configured; zero values take reconcile's defaults (Default*).
type Reconcile struct {
	// HangupAfter, IdleAfter and PlaceholderAfter say when a call is
	// reconciled (--reconcile-hangup-after, --reconcile-idle-after,
	// --reconcile-placeholder-after).
	HangupAfter, IdleAfter, PlaceholderAfter time.Duration
	// Rate and Burst bound the REST requests per account
	// (--reconcile-rate, --reconcile-burst).
	Rate  float64
	Burst int
	// Interval is the wait between looks for due calls when none is due
	// (no flag: tests shorten it).
	Interval time.Duration
}

// Tracing configures the export of traces.
type Tracing struct {
	// OTLPEndpoint is the OTLP/gRPC collector (--otlp-endpoint); empty
	// means off unless the standard OTEL_EXPORTER_OTLP_ENDPOINT is set.
	OTLPEndpoint string
}

// Seams let tests reach what production wires to the outside world. Each
// is nil in production.
type Seams struct {
	// RESTTransport carries the requests of the Twilio REST client: tests
	// point it at twilio/rest/resttest's fake. Nil: the real Twilio.
	RESTTransport http.RoundTripper
	// ProjectionSubscription wraps every subscription the call-state
	// projection opens on the log: tests record what it is delivered.
	ProjectionSubscription func(eventstore.Subscription) eventstore.Subscription
	// GRPCInterceptors run last in the gRPC server's chains, after
	// authentication: tests stand in for other interceptors with them.
	GRPCInterceptors *Interceptors
	// TLSPollInterval is how often TLS files are checked for changes; 0:
	// tlsfiles.DefaultPollInterval.
	TLSPollInterval time.Duration
	// InsecureWarningInterval is how often the warning of an insecure
	// gRPC listener is repeated; 0: an hour.
	InsecureWarningInterval time.Duration
	// Statfs reads the free space of the ledger's filesystem: tests fill
	// a disk without filling one. Nil: statfs(2).
	Statfs freespace.StatFunc
	// WebhookClock is the webhooks' server clock (an event's received_at):
	// tests that compare folded state with a committed file fix it. Nil:
	// time.Now.
	WebhookClock func() time.Time
	// ScrubInterval is how often the read model is scrubbed of what the
	// erasures it applied redacted; 0: DefaultScrubInterval.
	ScrubInterval time.Duration
	// RetentionClock is the clock retention ages calls by: tests age
	// calls without waiting. Nil: time.Now.
	RetentionClock func() time.Time
}

// Interceptors are a unary and a stream gRPC server interceptor; both are
// required.
type Interceptors struct {
	Unary  grpc.UnaryServerInterceptor
	Stream grpc.StreamServerInterceptor
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	switch c.Role {
	case "":
		c.Role = RoleAll
	case RoleAll, RoleWebhooks:
	default:
		return c, fmt.Errorf("--role %q: must be %q or %q", c.Role, RoleAll, RoleWebhooks)
	}
	if c.DataDir == "" {
		return c, fmt.Errorf("--data-dir: empty")
	}
	if c.HTTP.MaxInFlight == 0 {
		c.HTTP.MaxInFlight = webhook.DefaultMaxInFlight
	}
	if c.HTTP.DialTwiML == "" {
		c.HTTP.DialTwiML = webhook.DefaultDialTwiML
	}
	if err := c.securityDefaults(); err != nil {
		return c, err
	}
	switch {
	case c.Projection.CacheBytes == 0:
		c.Projection.CacheBytes = callstore.DefaultCacheSize
	case c.Projection.CacheBytes < 0:
		return c, fmt.Errorf("--read-model-cache-mb %d MiB: must be positive", c.Projection.CacheBytes>>20)
	}
	r := &c.Reconcile
	r.HangupAfter = cmp.Or(r.HangupAfter, reconcile.DefaultHangupAfter)
	r.IdleAfter = cmp.Or(r.IdleAfter, reconcile.DefaultIdleAfter)
	r.PlaceholderAfter = cmp.Or(r.PlaceholderAfter, reconcile.DefaultPlaceholderAfter)
	r.Rate = cmp.Or(r.Rate, reconcile.DefaultRate)
	r.Burst = cmp.Or(r.Burst, reconcile.DefaultBurst)
	r.Interval = cmp.Or(r.Interval, reconcile.DefaultInterval)
	if c.Erasure.Retention < 0 {
		return c, fmt.Errorf("--retention %s: must be positive (0 turns retention off)", c.Erasure.Retention)
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
