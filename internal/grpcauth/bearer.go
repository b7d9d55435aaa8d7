package grpcauth

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// Bearer is a client's per-call credential: it sends "authorization:
// Bearer <Token>" with every call. It refuses to send the token over a
// connection without TLS unless AllowPlaintext is set, which only a client
// of a loopback address should set (the local token of a development
// server, say).
type Bearer struct {
	Token          string
	AllowPlaintext bool
}

var _ credentials.PerRPCCredentials = Bearer{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b Bearer) RequireTransportSecurity() bool { return !b.AllowPlaintext }
