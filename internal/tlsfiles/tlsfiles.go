// Package tlsfiles serves TLS from PEM files that are replaced while the
// server runs: a certificate and its key, and optionally the CA that client
// certificates must be signed by. The files are read again when they change
// (they are polled) or when Reload is called (on SIGHUP), and every new
// handshake uses what was read last, through tls.Config.GetConfigForClient;
// connections already open keep theirs, so nothing is dropped. A reload
// that fails (a key that does not match its certificate, which happens
// between the writes of a rotation) keeps the previous files in use.
package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callledger/callledger/internal/secretfile"
)

// MinVersion is the oldest protocol served.
const MinVersion = tls.VersionTLS12

// DefaultPollInterval is how often the files are checked for changes.
const DefaultPollInterval = 10 * time.Second

// maxPEM bounds a PEM file read.
const maxPEM = 1 << 20

// Config names the files of a Server.
type Config struct {
	// CertFile is the certificate chain (PEM), leaf first; KeyFile its
	// private key (PEM), which must be readable by its owner only. Flag
	// names, for errors: CertFlag and KeyFlag.
	CertFile, KeyFile string
	// ClientCAFile, when set, is the CA bundle (PEM) that every client's
	// certificate must chain to: a client without one is refused in the
	// handshake.
	ClientCAFile string
	// Name names the listener in logs and errors ("gRPC", "HTTP").
	Name string
	// Logger gets reloads and their failures; default discard.
	Logger *slog.Logger
}

// Server is the TLS configuration of one listener. It is safe for
// concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	state atomic.Pointer[state]
	// mu serializes reloads (a poll and a SIGHUP may meet).
	mu sync.Mutex
	// failed are the stamps of the files when a reload last failed, so
	// that a poll logs one failure per change, not one per poll.
	failed stamps
}

// state is what was read last.
type state struct {
	cert   *tls.Certificate
	cas    *x509.CertPool
	stamps stamps
}

// stamps identify the versions of the files: a replaced file has another
// inode, an edited one another time or size.
type stamps [3]os.FileInfo

// New reads the files and returns the Server, or an error that says what
// is wrong with them.
func New(cfg Config) (*Server, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, fmt.Errorf("%s TLS: a certificate and a key are both needed", cfg.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "tls", "listener", cfg.Name)}
	st, err := s.read()
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	s.logLoaded("TLS certificate loaded", st)
	return s, nil
}

// ClientCAs reports whether client certificates are required.
func (s *Server) ClientCAs() bool { return s.cfg.ClientCAFile != "" }

// TLSConfig returns the configuration to serve with, negotiating
// nextProtos over ALPN ("h2" for gRPC; "h2", "http/1.1" for HTTP). Every
// handshake takes the certificate and client CAs read last.
func (s *Server) TLSConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: MinVersion,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			st := s.state.Load()
			c := &tls.Config{
				MinVersion:   MinVersion,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*st.cert},
			}
			if st.cas != nil {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = st.cas
			}
			return c, nil
		},
	}
}

// Reload reads the files again now. On failure the previous ones stay in
// use and the error says why.
func (s *Server) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reload()
}

func (s *Server) reload() error {
	st, err := s.read()
	if err != nil {
		s.failed = s.stat()
		return err
	}
	s.state.Store(st)
	s.failed = stamps{}
	s.logLoaded("TLS certificate reloaded", st)
	return nil
}

// Watch polls the files every interval (DefaultPollInterval when 0) until
// ctx ends, and reloads them when one changed.
func (s *Server) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.poll()
	}
}

// poll reloads the files when they changed since they were read, unless a
// reload of these very versions failed already.
func (s *Server) poll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.stat()
	if now.same(s.state.Load().stamps) || now.same(s.failed) {
		return
	}
	if err := s.reload(); err != nil {
		s.log.Error("TLS files changed but cannot be used; serving with the previous ones", "err", err)
	}
}

func (s *Server) files() [3]string {
	return [3]string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.ClientCAFile}
}

func (s *Server) stat() stamps {
	var out stamps
	for i, f := range s.files() {
		if f != "" {
			out[i], _ = os.Stat(f) // a missing file has no stamp: a change
		}
	}
	return out
}

func (a stamps) same(b stamps) bool {
	for i := range a {
		switch {
		case a[i] == nil || b[i] == nil:
			if a[i] != b[i] {
				return false
			}
		case !os.SameFile(a[i], b[i]) || !a[i].ModTime().Equal(b[i].ModTime()) || a[i].Size() != b[i].Size():
			return false
		}
	}
	return true
}

// read reads and checks the files.
func (s *Server) read() (*state, error) {
	st := &state{stamps: s.stat()}
	cert, err := keyPair(s.cfg.Name+" TLS certificate", s.cfg.Name+" TLS key", s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	st.cert = &cert
	if s.cfg.ClientCAFile != "" {
		caPEM, err := os.ReadFile(s.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%s client CA: %w", s.cfg.Name, err)
		}
		st.cas = x509.NewCertPool()
		if !st.cas.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("%s client CA %s: no PEM certificate in it", s.cfg.Name, s.cfg.ClientCAFile)
		}
	}
	return st, nil
}

func (s *Server) logLoaded(msg string, st *state) {
	leaf := st.cert.Leaf
	if leaf == nil {
		return
	}
	s.log.Info(msg, "subject", leaf.Subject.String(), "dns_names", leaf.DNSNames, "not_after", leaf.NotAfter,
		"client_certificates", s.ClientCAs())
	if left := time.Until(leaf.NotAfter); left < 14*24*time.Hour {
		s.log.Warn("TLS certificate expires soon", "not_after", leaf.NotAfter, "left", left.Round(time.Minute))
	}
}

// keyPair reads a certificate and its private key, the key as a secret
// file: refused when others may read it. certName and keyName name them in
// errors.
func keyPair(certName, keyName, certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", certName, err)
	}
	keyPEM, err := secretfile.Read(keyName, keyFile, maxPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors quote no key material.
		return tls.Certificate{}, fmt.Errorf("%s %s and %s %s: %w", certName, certFile, keyName, keyFile, err)
	}
	return cert, nil
}
