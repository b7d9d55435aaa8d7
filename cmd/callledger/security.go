package main

import (
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/callledger/callledger/internal/server"
)

// securityFlags configure who may reach serve's listeners and how much one
// caller may ask of it (docs/SECURITY.md).
type securityFlags struct {
	grpcTLSCert, grpcTLSKey, grpcClientCA string
	apiTokens                             string
	grpcInsecure                          bool
	httpTLSCert, httpTLSKey               string
	apiTLSCert, apiTLSKey                 string
	httpMaxConns                          int
	hangupRate                            float64
	hangupBurst                           int
	maxWatches, maxWatchesPerPrincipal    int
}

func (s *securityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.grpcTLSCert, "grpc-tls-cert", "", "certificate chain (PEM) of the gRPC listener, which then serves TLS 1.2 or later; reloaded when it changes and on SIGHUP")
	fs.StringVar(&s.grpcTLSKey, "grpc-tls-key", "", "private key (PEM, mode 0600) of --grpc-tls-cert")
	fs.StringVar(&s.grpcClientCA, "grpc-client-ca", "", "CA bundle (PEM): gRPC clients must present a certificate it signed, whose identity (URI SAN, else DNS SAN, else CN) is a principal of --api-tokens")
	fs.StringVar(&s.apiTokens, "api-tokens", "", `API tokens file (JSON, mode 0600; re-read on SIGHUP): {"tokens":[{"principal":"ops-board","sha256":"<hex SHA-256 of the token>","scopes":["calls:read","calls:hangup"]}, {"principal":"spiffe://…","client_cert":true,"scopes":["calls:read"]}]}; scopes: calls:read, calls:hangup, projections:admin. Empty on a loopback --grpc-addr: a local token for every scope is written to <data-dir>/local-api-token`)
	fs.BoolVar(&s.grpcInsecure, "grpc-insecure", false, "serve gRPC beyond loopback without TLS and/or authentication, whichever is not configured (a warning at start and every hour); never for production")
	fs.StringVar(&s.httpTLSCert, "http-tls-cert", "", "certificate chain (PEM) of the webhook listener, for deployments without a TLS-terminating proxy (Twilio requires a certificate of a public CA); reloaded when it changes and on SIGHUP")
	fs.StringVar(&s.httpTLSKey, "http-tls-key", "", "private key (PEM, mode 0600) of --http-tls-cert")
	fs.StringVar(&s.apiTLSCert, "api-tls-cert", "", "certificate chain (PEM) of the API listener (--api-addr), which then serves HTTPS; required with --api-tokens beyond loopback unless --grpc-insecure; reloaded when it changes and on SIGHUP")
	fs.StringVar(&s.apiTLSKey, "api-tls-key", "", "private key (PEM, mode 0600) of --api-tls-cert")
	fs.IntVar(&s.httpMaxConns, "http-max-connections", server.DefaultHTTPMaxConns, "connections the webhook listener holds open at once; more wait to be accepted")
	fs.Float64Var(&s.hangupRate, "hangup-rate", server.DefaultHangupRate, "RequestHangup calls per second per principal (token bucket); beyond it RESOURCE_EXHAUSTED")
	fs.IntVar(&s.hangupBurst, "hangup-burst", server.DefaultHangupBurst, "RequestHangup calls a principal may make at once")
	fs.IntVar(&s.maxWatches, "max-watches", server.DefaultMaxWatches, "WatchCalls streams open at once, in all")
	fs.IntVar(&s.maxWatchesPerPrincipal, "max-watches-per-principal", server.DefaultMaxWatchesPerPrincipal, "WatchCalls streams open at once per principal")
}

// reloadOnSIGHUP has srv re-read its files (accounts, API tokens, TLS) on
// every SIGHUP, until the returned func is called. Here rather than in the
// server: the signal is the process's, and tests run several servers in
// one process.
func reloadOnSIGHUP(srv *server.Server) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				_ = srv.Reload() // it logs what it reloaded and what failed
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
