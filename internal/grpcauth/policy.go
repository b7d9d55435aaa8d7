// Package grpcauth authenticates and authorizes every gRPC call: a bearer
// token in the "authorization" metadata, or a client certificate verified
// by the TLS handshake, names a principal; the principal's scopes, from an
// API tokens file, must include the one the method's rule asks for. The
// rules are one Policy (a table of full method names), and the server
// refuses to start when a method it registered has none, so that a new RPC
// cannot ship open.
//
// Refusals: no credential, or one that matches nothing, is UNAUTHENTICATED;
// a valid credential without the scope is PERMISSION_DENIED. Each refusal
// is logged once with the method and the principal, never a token.
package grpcauth

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/grpc"
)

// Scope is a permission a principal holds.
type Scope string

// The scopes of callledger's API.
const (
	// ScopeCallsRead reads calls and their events (CallQueryService).
	ScopeCallsRead Scope = "calls:read"
	// ScopeCallsHangup asks for calls to be hung up (CallCommandService).
	ScopeCallsHangup Scope = "calls:hangup"
	// ScopeProjectionsAdmin manages the read model and the ledger
	// (ProjectionService, AdminService but Erase).
	ScopeProjectionsAdmin Scope = "projections:admin"
	// ScopePersonalErase erases personal data (AdminService.Erase): an
	// irreversible act, granted apart from the administration of the
	// ledger, so that who may erase is a decision of its own (a data
	// protection officer's tool, not every operator's).
	ScopePersonalErase Scope = "personal:erase"
	// ScopeKeysUse fetches data keys from the key service
	// (keystore.v1.KeyService): the webhook replicas' scope, which opens
	// every call's personal data, so it is granted to those nodes alone.
	ScopeKeysUse Scope = "keys:use"
)

// Scopes returns every scope, for help texts and validation.
func Scopes() []Scope {
	return []Scope{ScopeCallsRead, ScopeCallsHangup, ScopeProjectionsAdmin, ScopePersonalErase, ScopeKeysUse}
}

func knownScope(s Scope) bool { return slices.Contains(Scopes(), s) }

// access is what a Rule asks of a caller.
type access int

const (
	accessScope access = iota // the zero Rule asks for a scope it names
	accessOpen
	accessAuthenticated
)

// Rule is what calling one method takes.
type Rule struct {
	access access
	scope  Scope
}

// Open is the rule of a method anyone may call without a credential:
// health checks, which load balancers and orchestrators make.
func Open() Rule { return Rule{access: accessOpen} }

// Authenticated is the rule of a method any valid principal may call,
// whatever its scopes: reflection, which lists the API without data.
func Authenticated() Rule { return Rule{access: accessAuthenticated} }

// Require is the rule of a method that needs scope.
func Require(scope Scope) Rule { return Rule{access: accessScope, scope: scope} }

// String describes the rule, for logs and tests.
func (r Rule) String() string {
	switch r.access {
	case accessOpen:
		return "open"
	case accessAuthenticated:
		return "any principal"
	}
	return "scope " + string(r.scope)
}

// Policy maps full method names ("/callledger.v1.CallQueryService/GetCall",
// as grpc.UnaryServerInfo.FullMethod spells them) to their rules. A method
// that is not in it is refused to everyone (PERMISSION_DENIED).
type Policy map[string]Rule

// Method is the full method name of method of service, as a Policy key.
func Method(service, method string) string { return "/" + service + "/" + method }

// Missing returns, sorted, the full name of every method of services (as
// grpc.Server.GetServiceInfo returns them) that p has no rule for.
func (p Policy) Missing(services map[string]grpc.ServiceInfo) []string {
	var out []string
	for svc, info := range services {
		for _, m := range info.Methods {
			if _, ok := p[Method(svc, m.Name)]; !ok {
				out = append(out, Method(svc, m.Name))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Check returns an error naming every method of services without a rule.
func (p Policy) Check(services map[string]grpc.ServiceInfo) error {
	if missing := p.Missing(services); len(missing) > 0 {
		return fmt.Errorf("gRPC methods without an authorization rule (add them to the policy): %v", missing)
	}
	return nil
}

// Principal is who makes a call.
type Principal struct {
	// Name is the principal as the API tokens file names it: the token's
	// principal, or the client certificate's identity.
	Name string
	// Scopes it holds.
	Scopes []Scope
	// Via is how it was authenticated: "token" or "client-certificate".
	Via string
}

// Has reports whether p holds scope.
func (p Principal) Has(scope Scope) bool { return slices.Contains(p.Scopes, scope) }

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the authenticated principal of a call, and false
// when the call was not authenticated (an open method, or a server that
// runs without authentication).
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
