package grpcauth_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/callledger/callledger/internal/grpcauth"
)

// BenchmarkAuthorize is the interceptor's cost on every call of the query
// service: a bearer token among the headers a gRPC client sends.
func BenchmarkAuthorize(b *testing.B) {
	creds, err := grpcauth.NewCredentials(grpcauth.TokenEntry{
		Principal: "reader", SHA256: grpcauth.HashToken("reader-token"), Scopes: []grpcauth.Scope{grpcauth.ScopeCallsRead},
	})
	if err != nil {
		b.Fatal(err)
	}
	const method = "/callledger.v1.CallQueryService/GetCall"
	a, err := grpcauth.New(grpcauth.Config{Policy: grpcauth.Policy{method: grpcauth.Require(grpcauth.ScopeCallsRead)}, Credentials: creds})
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
		"authorization", "Bearer reader-token", ":authority", "127.0.0.1:9090", "content-type", "application/grpc",
		"user-agent", "grpc-go/1.85.0", "te", "trailers", "grpc-accept-encoding", "gzip"))
	info := &grpc.UnaryServerInfo{FullMethod: method}
	intercept := a.Unary()
	handler := func(ctx context.Context, req any) (any, error) { return req, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := intercept(ctx, nil, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}
