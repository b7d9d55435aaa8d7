package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/privatefs"
	"github.com/callledger/callledger/internal/tlsfiles"
	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
)

// The local API token: on a loopback gRPC address without another
// authentication method, the server makes a token for every scope and
// writes it in the data directory (0600, like the development auth token),
// where local clients (`callledger calls`, tests) find it. Only whoever can
// read the data directory can call the API, rather than every local user.
const (
	localAPITokenFile = "local-api-token"
	// LocalPrincipal is the principal of the local API token, recorded as
	// requested_by of its hang-ups.
	LocalPrincipal = "local"
)

// LocalAPITokenPath is where a server with data directory dataDir keeps
// its local API token.
func LocalAPITokenPath(dataDir string) string { return filepath.Join(dataDir, localAPITokenFile) }

// ReadLocalAPIToken returns the local API token of the server whose data
// directory is dataDir, for calling its gRPC API from the same machine.
func ReadLocalAPIToken(dataDir string) (string, error) {
	b, err := os.ReadFile(LocalAPITokenPath(dataDir))
	if err != nil {
		return "", fmt.Errorf("read the local API token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("local API token file %s is empty", LocalAPITokenPath(dataDir))
	}
	return tok, nil
}

// localAPIToken returns the local API token of dataDir, made once.
func localAPIToken(dataDir string) (string, error) {
	if tok, err := ReadLocalAPIToken(dataDir); err == nil {
		return tok, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make the local API token: %w", err)
	}
	tok := hex.EncodeToString(b[:])
	if err := privatefs.WriteFile(LocalAPITokenPath(dataDir), []byte(tok+"\n")); err != nil {
		return "", fmt.Errorf("write the local API token: %w", err)
	}
	return tok, nil
}

// securityDefaults checks the security settings and fills in the limits'
// defaults.
func (c *Config) securityDefaults() error {
	h, g := &c.HTTP, &c.GRPC
	if (h.TLSCert == "") != (h.TLSKey == "") {
		return errors.New("--http-tls-cert and --http-tls-key go together")
	}
	if (g.TLSCert == "") != (g.TLSKey == "") {
		return errors.New("--grpc-tls-cert and --grpc-tls-key go together")
	}
	if g.ClientCA != "" && g.TLSCert == "" {
		return errors.New("--grpc-client-ca needs TLS: set --grpc-tls-cert and --grpc-tls-key")
	}
	if g.ClientCA != "" && g.APITokens == "" {
		return errors.New(`--grpc-client-ca needs --api-tokens, which maps certificate identities to scopes ({"principal": "<URI SAN, DNS SAN or CN>", "client_cert": true, "scopes": [...]})`)
	}
	switch {
	case h.MaxConns == 0:
		h.MaxConns = DefaultHTTPMaxConns
	case h.MaxConns < 0:
		return fmt.Errorf("--http-max-connections %d: must be positive", h.MaxConns)
	}
	switch {
	case g.HangupRate == 0:
		g.HangupRate = DefaultHangupRate
	case g.HangupRate < 0:
		return fmt.Errorf("--hangup-rate %g: must be positive", g.HangupRate)
	}
	switch {
	case g.HangupBurst == 0:
		g.HangupBurst = DefaultHangupBurst
	case g.HangupBurst < 0:
		return fmt.Errorf("--hangup-burst %d: must be positive", g.HangupBurst)
	}
	switch {
	case g.MaxWatches == 0:
		g.MaxWatches = DefaultMaxWatches
	case g.MaxWatches < 0:
		return fmt.Errorf("--max-watches %d: must be positive", g.MaxWatches)
	}
	switch {
	case g.MaxWatchesPerPrincipal == 0:
		g.MaxWatchesPerPrincipal = DefaultMaxWatchesPerPrincipal
	case g.MaxWatchesPerPrincipal < 0:
		return fmt.Errorf("--max-watches-per-principal %d: must be positive", g.MaxWatchesPerPrincipal)
	}
	if c.Metrics.Addr == "" && !isLoopback(h.Addr) {
		// The listener Twilio reaches does not serve /metrics.
		host, _, err := net.SplitHostPort(h.Addr)
		if err != nil {
			return fmt.Errorf("--http-addr %s: %w", h.Addr, err)
		}
		c.Metrics.Addr = net.JoinHostPort(host, DefaultMetricsPort)
	}
	return nil
}

// checkExposure refuses listeners that would expose the server without
// protection: in development mode (no Twilio auth token) every listener
// must be loopback, and gRPC beyond loopback needs TLS and an
// authentication method unless the operator said --grpc-insecure.
func (s *Server) checkExposure(devMode bool) error {
	c := s.cfg
	if devMode {
		for _, l := range []struct{ flag, addr string }{{"--grpc-addr", c.GRPC.Addr}, {"--metrics-addr", c.Metrics.Addr}} {
			if l.addr == "" || (l.flag == "--grpc-addr" && !s.queries()) {
				continue
			}
			if !isLoopback(l.addr) {
				return fmt.Errorf("development mode (no Twilio auth token) serves loopback addresses only, and %s %s is not one: "+
					"set TWILIO_AUTH_TOKEN (or --auth-token) and --public-url, or bind 127.0.0.1", l.flag, l.addr)
			}
		}
	}
	if err := s.checkAPIExposure(); err != nil {
		return err
	}
	if !s.queries() || isLoopback(c.GRPC.Addr) || c.GRPC.Insecure {
		return nil
	}
	g := c.GRPC
	var missing []string
	if g.TLSCert == "" {
		missing = append(missing, "TLS (--grpc-tls-cert, --grpc-tls-key)")
	}
	if g.APITokens == "" {
		missing = append(missing, "authentication (--api-tokens, and optionally --grpc-client-ca)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("--grpc-addr %s is not a loopback address, and serving the gRPC API beyond this machine needs %s; "+
			"--grpc-insecure serves it without (for networks you trust entirely; never for production). See docs/SECURITY.md",
			g.Addr, strings.Join(missing, " and "))
	}
	return nil
}

// checkAPIExposure refuses an API listener beyond loopback that would serve
// the REST routes in clear or without --api-tokens: the API reaches the same
// services as the gRPC port, so it needs the same protection, and the same
// --grpc-insecure lets it go without. (Development mode refused it already.)
func (s *Server) checkAPIExposure() error {
	a := s.cfg.API
	if !s.queries() || a.Addr == "" || isLoopback(a.Addr) || s.cfg.GRPC.Insecure {
		return nil
	}
	var missing []string
	if a.TLSCert == "" {
		missing = append(missing, "TLS (--api-tls-cert, --api-tls-key)")
	}
	if s.cfg.GRPC.APITokens == "" {
		missing = append(missing, "authentication (--api-tokens)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("--api-addr %s is not a loopback address, and serving the API beyond this machine needs %s; "+
			"--grpc-insecure serves it without (for networks you trust entirely; never for production). See docs/SECURITY.md",
			a.Addr, strings.Join(missing, " and "))
	}
	return nil
}

// grpcSecurity sets up the gRPC listener's TLS and the authorizer of its
// calls, from the configuration (see GRPC).
func (s *Server) grpcSecurity() error {
	g := s.cfg.GRPC
	if g.TLSCert != "" {
		t, err := tlsfiles.New(tlsfiles.Config{CertFile: g.TLSCert, KeyFile: g.TLSKey, ClientCAFile: g.ClientCA, Name: "gRPC", Logger: s.log})
		if err != nil {
			return fmt.Errorf("--grpc-tls-cert, --grpc-tls-key, --grpc-client-ca: %w", err)
		}
		s.grpcTLS = t
	}
	var creds *grpcauth.Credentials
	var how string
	switch {
	case g.APITokens != "":
		c, err := grpcauth.LoadTokensFile(g.APITokens)
		if err != nil {
			return fmt.Errorf("--api-tokens: %w", err)
		}
		creds, how = c, "API tokens file"
	case g.Insecure:
		how = "OFF"
	default: // loopback: checkExposure refused the rest
		tok, err := localAPIToken(s.cfg.DataDir)
		if err != nil {
			return err
		}
		s.localAPIToken = tok
		creds, err = grpcauth.NewCredentials(grpcauth.TokenEntry{Principal: LocalPrincipal, SHA256: grpcauth.HashToken(tok), Scopes: grpcauth.Scopes()})
		if err != nil {
			return err
		}
		how = "local API token"
	}
	auth, err := grpcauth.New(grpcauth.Config{Policy: Policy(), Credentials: creds, Logger: s.log.With("component", "grpcauth")})
	if err != nil {
		return err
	}
	s.auth = auth
	attrs := []any{"tls", s.grpcTLS != nil, "client_certificates", g.ClientCA != "", "authentication", how}
	if creds != nil {
		attrs = append(attrs, "tokens", creds.Tokens(), "certificate_principals", creds.ClientCerts())
	}
	if how == "local API token" {
		attrs = append(attrs, "token_file", LocalAPITokenPath(s.cfg.DataDir))
	}
	s.log.Info("gRPC access", attrs...)
	if what := s.insecureGRPC(); what != "" {
		s.background = append(s.background, s.warnInsecure)
	}
	return nil
}

// insecureGRPC says what the gRPC listener serves without, when
// --grpc-insecure let it: "" when nothing.
func (s *Server) insecureGRPC() string {
	if !s.cfg.GRPC.Insecure {
		return ""
	}
	var missing []string
	if s.grpcTLS == nil {
		missing = append(missing, "TLS")
	}
	if s.auth == nil || !s.auth.Enabled() {
		missing = append(missing, "authentication")
	}
	return strings.Join(missing, " and ")
}

// warnInsecure repeats the warning of --grpc-insecure every hour: an
// insecure listener must not go unnoticed in the logs.
func (s *Server) warnInsecure(ctx context.Context) {
	every := s.cfg.Seams.InsecureWarningInterval
	if every <= 0 {
		every = time.Hour
	}
	warn := func() {
		s.log.Warn("INSECURE: --grpc-insecure: the gRPC API serves without "+s.insecureGRPC()+": anyone who reaches "+
			s.cfg.GRPC.Addr+" can read every call and end calls. Configure --grpc-tls-cert, --grpc-tls-key and --api-tokens (docs/SECURITY.md).",
			"grpc", s.cfg.GRPC.Addr)
	}
	warn()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			warn()
		}
	}
}

// httpSecurity sets up the webhook listener's TLS, when configured.
func (s *Server) httpSecurity() error {
	if h := s.cfg.HTTP; h.TLSCert != "" {
		t, err := tlsfiles.New(tlsfiles.Config{CertFile: h.TLSCert, KeyFile: h.TLSKey, Name: "HTTP", Logger: s.log})
		if err != nil {
			return fmt.Errorf("--http-tls-cert, --http-tls-key: %w", err)
		}
		s.httpTLS = t
	}
	if a := s.cfg.API; a.TLSCert != "" && a.Addr != "" {
		t, err := tlsfiles.New(tlsfiles.Config{CertFile: a.TLSCert, KeyFile: a.TLSKey, Name: "API", Logger: s.log})
		if err != nil {
			return fmt.Errorf("--api-tls-cert, --api-tls-key: %w", err)
		}
		s.apiTLS = t
	}
	return nil
}

// webhookKeyring is the keyring webhooks are checked against: the default
// tokens (--auth-token, --auth-token-secondary, or the development token)
// and the tokens of the accounts of --twilio-accounts.
func (s *Server) webhookKeyring(accounts []rest.Account) (*twilio.Keyring, error) {
	k, err := rest.WebhookKeyring(s.defaultTokens, accounts)
	if err != nil {
		return nil, fmt.Errorf("--twilio-accounts: %w", err)
	}
	return k, nil
}

// loadAccounts reads --twilio-accounts; none when it is not set.
func (s *Server) loadAccounts() ([]rest.Account, error) {
	if s.cfg.Twilio.AccountsFile == "" {
		return nil, nil
	}
	accounts, err := rest.LoadAccountsFile(s.cfg.Twilio.AccountsFile)
	if err != nil {
		return nil, fmt.Errorf("--twilio-accounts: %w", err)
	}
	return accounts, nil
}

// Reload reads again what can change while the server runs, as SIGHUP
// asks: the Twilio accounts file (webhook tokens and REST credentials), the
// API tokens file and the TLS certificates. Each is swapped atomically:
// a request is checked against either the old or the new set, never none,
// so a rotation that goes through a file holding both tokens refuses no
// valid request. Whatever fails to load keeps its previous version; the
// error says what failed.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var errs []error
	var reloaded []string
	if s.cfg.Twilio.AccountsFile != "" {
		if err := s.reloadAccounts(); err != nil {
			errs = append(errs, err)
		} else {
			reloaded = append(reloaded, "twilio-accounts")
		}
	}
	if s.cfg.GRPC.APITokens != "" && s.auth != nil {
		creds, err := grpcauth.LoadTokensFile(s.cfg.GRPC.APITokens)
		if err != nil {
			errs = append(errs, fmt.Errorf("--api-tokens: %w", err))
		} else {
			s.auth.SetCredentials(creds)
			reloaded = append(reloaded, "api-tokens")
		}
	}
	for _, t := range []struct {
		name string
		tls  *tlsfiles.Server
	}{{"grpc-tls", s.grpcTLS}, {"http-tls", s.httpTLS}, {"api-tls", s.apiTLS}} {
		if t.tls == nil {
			continue
		}
		if err := t.tls.Reload(); err != nil {
			errs = append(errs, err)
		} else {
			reloaded = append(reloaded, t.name)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		s.log.Error("reload: some files kept their previous version", "reloaded", reloaded, "err", err)
	} else {
		s.log.Info("reloaded", "files", reloaded)
	}
	return err
}

// reloadAccounts swaps the webhook keyring and the REST credentials for
// the accounts file's new content.
func (s *Server) reloadAccounts() error {
	file, err := s.loadAccounts()
	if err != nil {
		return err
	}
	k, err := s.webhookKeyring(file)
	if err != nil {
		return err
	}
	var restAccounts []rest.Account
	if s.rest != nil {
		if restAccounts, err = s.cfg.Twilio.accounts(file, s.restToken); err != nil {
			return err
		}
		if err := s.rest.SetAccounts(restAccounts); err != nil {
			return fmt.Errorf("--twilio-accounts: %w", err)
		}
	} else if len(file) > 0 && s.queries() {
		s.log.Warn("--twilio-accounts now lists accounts, but REST was off at start: restart to turn hang-ups and reconciliation on")
	}
	s.verifier.SetKeyring(k)
	return nil
}
