// Package keyservice shares one key store between the nodes of a
// deployment on KurrentDB: the node that holds the embedded key store
// (serve --role all) serves it over gRPC (Server), and the other nodes —
// webhook and query replicas — seal and open with keys from it through a
// Client, a keystore.Store. So every node seals with keys every projection
// opens, and an erasure on the key store's node reaches what every replica
// sealed (docs/PRIVACY.md §4).
//
// Data keys travel in the clear inside the RPC: the server answers over
// TLS, or to a loopback peer, only.
package keyservice

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/callledger/callledger/api/callledger/keystore/v1"
	"github.com/callledger/callledger/keystore"
)

// Server serves a key store.
type Server struct {
	keystorev1.UnimplementedKeyServiceServer
	keys keystore.Store
	log  *slog.Logger
}

// NewServer serves keys; log receives the store's failures (subjects, never
// parties, which are personal data).
func NewServer(keys keystore.Store, log *slog.Logger) *Server {
	return &Server{keys: keys, log: log}
}

// Register registers the service on g.
func (s *Server) Register(g grpc.ServiceRegistrar) { keystorev1.RegisterKeyServiceServer(g, s) }

// Key implements keystorev1.KeyServiceServer: the key is synced before it
// is answered, since the replica appends what it seals to KurrentDB, which
// has no commit barrier to sync it before.
func (s *Server) Key(ctx context.Context, req *keystorev1.KeyRequest) (*keystorev1.KeyResponse, error) {
	if err := secureTransport(ctx); err != nil {
		return nil, err
	}
	k, err := s.keys.Key(ctx, req.GetSubject(), req.GetParties()...)
	if err != nil {
		return nil, s.fail(ctx, "Key", req.GetSubject(), err)
	}
	if err := s.keys.Sync(ctx); err != nil {
		return nil, s.fail(ctx, "Key", req.GetSubject(), err)
	}
	return response(k), nil
}

// GetKey implements keystorev1.KeyServiceServer.
func (s *Server) GetKey(ctx context.Context, req *keystorev1.GetKeyRequest) (*keystorev1.GetKeyResponse, error) {
	if err := secureTransport(ctx); err != nil {
		return nil, err
	}
	k, err := s.keys.Get(ctx, req.GetSubject(), req.GetKeyId())
	if err != nil {
		return nil, s.fail(ctx, "GetKey", req.GetSubject(), err)
	}
	return &keystorev1.GetKeyResponse{Subject: k.Subject(), KeyId: k.ID(), Key: k.Secret()}, nil
}

// MaxGetKeys bounds the keys of one GetKeys call.
const MaxGetKeys = 4096

// GetKeys implements keystorev1.KeyServiceServer.
func (s *Server) GetKeys(ctx context.Context, req *keystorev1.GetKeysRequest) (*keystorev1.GetKeysResponse, error) {
	if err := secureTransport(ctx); err != nil {
		return nil, err
	}
	if n := len(req.GetKeys()); n > MaxGetKeys {
		return nil, status.Errorf(codes.InvalidArgument, "%d keys asked for at once, at most %d", n, MaxGetKeys)
	}
	res := &keystorev1.GetKeysResponse{}
	for _, ref := range req.GetKeys() {
		k, err := s.keys.Get(ctx, ref.GetSubject(), ref.GetKeyId())
		switch {
		case errors.Is(err, keystore.ErrDestroyed):
			res.Erased = append(res.Erased, ref.GetSubject())
		case errors.Is(err, keystore.ErrNotFound), errors.Is(err, keystore.ErrInvalidSubject):
			// Left out: GetKey tells the reader which.
		case err != nil:
			return nil, s.fail(ctx, "GetKeys", ref.GetSubject(), err)
		default:
			res.Keys = append(res.Keys, &keystorev1.IssuedKey{Subject: k.Subject(), KeyId: k.ID(), Key: k.Secret()})
		}
	}
	slices.Sort(res.Erased)
	res.Erased = slices.Compact(res.Erased)
	return res, nil
}

func response(k keystore.DataKey) *keystorev1.KeyResponse {
	return &keystorev1.KeyResponse{Subject: k.Subject(), KeyId: k.ID(), Key: k.Secret()}
}

// The key store's errors, which the client maps back: each status carries
// an ErrorInfo of errorDomain whose reason names it, so that no other
// refusal of the same code (an interceptor's) is taken for an erasure.
const (
	errorDomain    = "keystore.callledger"
	reasonErased   = "SUBJECT_ERASED"
	reasonNotFound = "KEY_NOT_FOUND"
)

func keyStatus(code codes.Code, reason, msg string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// reasonOf is the reason of a status of the key service; "" for any other.
func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// fail is the status of a key store error.
func (s *Server) fail(ctx context.Context, method, subject string, err error) error {
	switch {
	case errors.Is(err, keystore.ErrDestroyed):
		return keyStatus(codes.FailedPrecondition, reasonErased, "the subject was erased")
	case errors.Is(err, keystore.ErrNotFound):
		return keyStatus(codes.NotFound, reasonNotFound, "the key store has no such key")
	case errors.Is(err, keystore.ErrInvalidSubject):
		return status.Error(codes.InvalidArgument, "invalid subject")
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	s.log.ErrorContext(ctx, "key service: the key store failed", "method", method, "subject", subject, "err", err)
	return status.Error(codes.Unavailable, "the key store failed; retry")
}

// secureTransport refuses a call that came over plaintext from another
// machine: the answer is a data key.
func secureTransport(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "the key service answers over TLS or loopback only")
	}
	if _, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		return nil
	}
	if a, ok := p.Addr.(*net.TCPAddr); ok && a.IP.IsLoopback() {
		return nil
	}
	return status.Error(codes.PermissionDenied, "the key service answers over TLS or loopback only: serve gRPC with --grpc-tls-cert")
}
