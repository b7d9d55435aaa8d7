package grpcauth

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Config wires an Authorizer.
type Config struct {
	// Policy has the rule of every method; required.
	Policy Policy
	// Credentials are the principals accepted. Nil means the server runs
	// without authentication (an explicit choice of the operator's): every
	// call is let through, with no principal.
	Credentials *Credentials
	// Logger gets one line per refusal; default discard. (The metrics of
	// the gRPC server count refusals by code.)
	Logger *slog.Logger
}

// Authorizer checks every call against the Policy. It is safe for
// concurrent use, and its Credentials can be replaced while calls are
// checked.
type Authorizer struct {
	policy Policy
	creds  atomic.Pointer[Credentials]
	off    bool
	log    *slog.Logger
}

// New builds an Authorizer.
func New(cfg Config) (*Authorizer, error) {
	if cfg.Policy == nil {
		return nil, errors.New("grpcauth: no policy")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authorizer{policy: cfg.Policy, off: cfg.Credentials == nil, log: cfg.Logger}
	if cfg.Credentials != nil {
		a.creds.Store(cfg.Credentials)
	}
	return a, nil
}

// Enabled reports whether calls are authenticated.
func (a *Authorizer) Enabled() bool { return !a.off }

// SetCredentials replaces the principals accepted, atomically: a check in
// progress finishes with the Credentials it started with. It is ignored by
// an Authorizer built without Credentials, which authenticates nothing.
func (a *Authorizer) SetCredentials(c *Credentials) {
	if a.off || c == nil {
		return
	}
	a.creds.Store(c)
}

// Unary is the interceptor of unary calls.
func (a *Authorizer) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.Authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream is the interceptor of streaming calls.
func (a *Authorizer) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.Authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// Authorize checks a call of method whose incoming context is ctx, and
// returns ctx with the caller's principal (see PrincipalFrom), or the
// refusal as a status error.
func (a *Authorizer) Authorize(ctx context.Context, method string) (context.Context, error) {
	rule, ok := a.policy[method]
	if !ok {
		// Unreachable for registered methods: the server checks the policy
		// covers them before it serves.
		return ctx, a.refuse(ctx, method, codes.PermissionDenied, "", "no rule for this method", "method not allowed")
	}
	if rule.access == accessOpen || a.off {
		return ctx, nil
	}
	p, err := a.authenticate(ctx, method)
	if err != nil {
		return ctx, err
	}
	if rule.access == accessScope && !p.Has(rule.scope) {
		return ctx, a.refuse(ctx, method, codes.PermissionDenied, p.Name, "missing scope "+string(rule.scope),
			"principal "+p.Name+" lacks scope "+string(rule.scope))
	}
	return WithPrincipal(ctx, p), nil
}

// authenticate finds the principal of a call: its bearer token when it
// sends one (which then must match), else its verified client
// certificate.
func (a *Authorizer) authenticate(ctx context.Context, method string) (Principal, error) {
	creds := a.creds.Load()
	// The one key, not a copy of every header (FromIncomingContext).
	switch auth := metadata.ValueFromIncomingContext(ctx, "authorization"); len(auth) {
	case 0:
	case 1:
		scheme, token, ok := strings.Cut(auth[0], " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
			return Principal{}, a.refuse(ctx, method, codes.Unauthenticated, "", "authorization is not a bearer token",
				`authorization metadata must be "Bearer <token>"`)
		}
		p, ok := creds.token(strings.TrimSpace(token))
		if !ok {
			return Principal{}, a.refuse(ctx, method, codes.Unauthenticated, "", "unknown token", "invalid token")
		}
		return p, nil
	default:
		return Principal{}, a.refuse(ctx, method, codes.Unauthenticated, "", "several authorization values",
			"send one authorization metadata value")
	}
	if id, ok := certIdentity(ctx); ok {
		if p, ok := creds.cert(id); ok {
			return p, nil
		}
		// Verified by the client CA but not mapped: a principal without
		// scopes.
		return Principal{Name: id, Via: "client-certificate"}, nil
	}
	return Principal{}, a.refuse(ctx, method, codes.Unauthenticated, "", "no credential",
		"no credential: send authorization: Bearer <token>, or a client certificate")
}

// refuse logs a refusal once and returns the status the client gets.
func (a *Authorizer) refuse(ctx context.Context, method string, code codes.Code, principal, why, msg string) error {
	attrs := []any{"method", method, "code", code.String(), "principal", principal, "reason", why}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, "peer", p.Addr.String())
	}
	a.log.WarnContext(ctx, "gRPC call refused", attrs...)
	return status.Error(code, msg)
}

// certIdentity is the identity of the call's client certificate, when the
// TLS handshake verified one: its first URI SAN (a SPIFFE ID, say), else its
// first DNS SAN, else its subject's common name.
func certIdentity(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	id := CertIdentity(info.State.VerifiedChains[0][0])
	return id, id != ""
}

// CertIdentity is the principal a client certificate names: its first URI
// SAN, else its first DNS SAN, else its subject's common name; "" when it
// has none of them.
func CertIdentity(cert *x509.Certificate) string {
	switch {
	case len(cert.URIs) > 0:
		return cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	}
	return cert.Subject.CommonName
}
