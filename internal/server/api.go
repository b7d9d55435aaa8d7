package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/callledger/callledger/board"
	"github.com/callledger/callledger/services/httpapi"
)

// The API listener (--api-addr) serves browsers and scripts: the REST
// routes of the gRPC services (services/httpapi), the OpenAPI document and
// the call board (board). The REST routes reach the services through the
// server's own *grpc.Server, over an in-memory HTTP/2 connection to its
// ServeHTTP: every request passes the interceptors grpcOptions assembles,
// exactly like a call on the gRPC port, while the port's transport
// credentials stay the port's (the in-memory connection cannot be reached
// from outside the process).

// checkAPIAddr refuses an API listener beyond loopback in development
// mode, as for the webhooks.
func (c Config) checkAPIAddr(devMode bool) error {
	if devMode && c.API.Addr != "" && !isLoopback(c.API.Addr) {
		return fmt.Errorf("no Twilio auth token: without one, serve only binds loopback addresses, and --api-addr %s is not one", c.API.Addr)
	}
	return httpapi.ValidateOrigins(c.API.CORSOrigins)
}

// apiServers builds the API listener's server on ln over the gRPC server
// g, and the in-memory server that carries its calls into g. They are
// returned in the order they shut down: the API first (its watch streams
// end at once, its unary requests finish), then the in-memory connection.
func (s *Server) apiServers(ln net.Listener, g *grpc.Server) ([]*listener, error) {
	mem := bufconn.Listen(1 << 20)
	s.onClose("in-memory gRPC listener", func() error {
		if err := mem.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	conn, err := grpc.NewClient("passthrough:///callledger",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return mem.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("in-memory gRPC connection: %w", err)
	}
	s.onClose("in-memory gRPC connection", conn.Close)

	api, err := httpapi.New(httpapi.Config{Conn: conn, CORSOrigins: s.cfg.API.CORSOrigins, Logger: s.log})
	if err != nil {
		return nil, err
	}
	ui, err := board.New(board.Config{HangupAfter: s.cfg.Reconcile.HangupAfter, EndCalls: s.restOn})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mux.Handle("/openapi.json", api)
	mux.Handle("/", ui)

	var inner http.Protocols
	inner.SetUnencryptedHTTP2(true)
	grpcOverHTTP := s.httpServer("in-memory grpc", mem, g, nil, &http.Server{Protocols: &inner, ReadHeaderTimeout: 5 * time.Second})

	// No ReadTimeout or WriteTimeout: they would cut the watch streams;
	// the API bounds each unary answer itself (httpapi.UnaryWriteTimeout)
	// and each body (httpapi.MaxBodyBytes).
	var handler http.Handler = mux
	if s.devMode && s.localAPIToken != "" {
		handler = localAccess(mux, s.localAPIToken)
		s.log.Warn("DEVELOPMENT MODE: the API listener takes requests from this machine without a token, as the local principal " +
			"(loopback peer and Host, not sent by another site's page); with a Twilio auth token it asks for one")
	}
	front := s.httpServer("api", ln, handler, s.apiTLS, &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	})
	shutdown := front.shutdown
	front.shutdown = func(ctx context.Context) error {
		api.Stop()
		return shutdown(ctx)
	}
	return []*listener{front, grpcOverHTTP}, nil
}

// localAccess lets a development server's own machine use the API without
// a token, as `make run` lets it send webhooks without Twilio: a request
// that carries no Authorization is given the local API token when it comes
// from a loopback peer, names a loopback Host (so a page of another site
// that rebinds its name to 127.0.0.1 is refused), and is not sent by
// another site's page (Sec-Fetch-Site and Origin, which browsers set and
// pages cannot forge). Only in development mode: every listener is then
// loopback, and a server with a Twilio auth token always asks for a token.
func localAccess(next http.Handler, token string) http.Handler {
	bearer := "Bearer " + token
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" && fromThisMachine(r) {
			r.Header.Set("Authorization", bearer)
		}
		next.ServeHTTP(w, r)
	})
}

// fromThisMachine reports whether r is a request of a program or a page of
// this server's own origin on the server's machine (see localAccess).
func fromThisMachine(r *http.Request) bool {
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(peer); err != nil || ip == nil || !ip.IsLoopback() {
		return false
	}
	if !isLoopback(r.Host) && !isLoopback(net.JoinHostPort(r.Host, "0")) {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		return false
	}
	return true
}
