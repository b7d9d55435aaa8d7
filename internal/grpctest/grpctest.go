// Package grpctest serves gRPC services on a loopback port for tests and
// benchmarks, so that they exercise the real transport (HTTP/2, protobuf
// encoding, status codes on the wire) rather than calling handlers
// directly. Only _test.go files import it.
package grpctest

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/callledger/callledger/internal/grpcauth"
)

// Serve starts a gRPC server built with opts on a free loopback port,
// lets register add the services, and returns a client connection to it.
// The server stops, and the connection closes, when t ends. More
// connections to the same server: Dial(t, conn.Target()).
func Serve(t testing.TB, register func(grpc.ServiceRegistrar), opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(opts...)
	register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("grpctest: listen: %v", err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return Dial(t, lis.Addr().String())
}

// Token is the dial option that sends token as a bearer token with every
// call, over the plaintext connections of Dial.
func Token(token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: token, AllowPlaintext: true})
}

// Dial opens a plaintext client connection to addr, closed when t ends.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("grpctest: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
