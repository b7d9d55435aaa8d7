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
	grpcOverHTTP := s.httpServer("in-memory grpc", mem, g, &http.Server{Protocols: &inner, ReadHeaderTimeout: 5 * time.Second})

	// No ReadTimeout or WriteTimeout: they would cut the watch streams;
	// the API bounds each unary answer itself (httpapi.UnaryWriteTimeout)
	// and each body (httpapi.MaxBodyBytes).
	front := s.httpServer("api", ln, mux, &http.Server{
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
