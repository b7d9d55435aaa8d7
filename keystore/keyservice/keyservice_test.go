package keyservice

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/callledger/callledger/api/callledger/keystore/v1"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/keystore/keystoretest"
)

const (
	callA = "CA00000000000000000000000000000001"
	callB = "CA00000000000000000000000000000002"
)

// served serves keys over loopback gRPC and returns a client of it, with a
// clock the test moves, and the number of calls the service answered.
func served(t *testing.T, keys keystore.Store) (*Client, *time.Time, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	count := grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		return h(ctx, req)
	})
	conn := grpctest.Serve(t, NewServer(keys, slog.New(slog.DiscardHandler)).Register, count)
	now := time.Unix(1_800_000_000, 0)
	c, err := NewClient(conn, ClientOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return c, &now, &calls
}

func sealOpen(t *testing.T, seal, open keystore.DataKey) {
	t.Helper()
	nonce := make([]byte, 12)
	ct := seal.AEAD().Seal(nil, nonce, []byte("From=+15555550100"), []byte("ad"))
	if pt, err := open.AEAD().Open(nil, nonce, ct, []byte("ad")); err != nil || string(pt) != "From=+15555550100" {
		t.Fatalf("a ciphertext of key %016x does not open with key %016x: %v", seal.ID(), open.ID(), err)
	}
}

// TestKeyDurableWhenAnswered: a key the service answered survives a crash
// of the store's node, with its party index entries.
func TestKeyDurableWhenAnswered(t *testing.T) {
	ctx := context.Background()
	kek := keystoretest.KEK(t)
	fs := vfs.NewCrashableMem()
	keys, err := keystore.Open("keys", kek, keystore.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	c, _, _ := served(t, keys)
	k, err := c.Key(ctx, callA, "+15555550100", "+15555550199")
	if err != nil {
		t.Fatal(err)
	}
	crashed, err := keystore.Open("keys", kek, keystore.Options{FS: fs.CrashClone(vfs.CrashCloneCfg{})})
	if err != nil {
		t.Fatal(err)
	}
	defer crashed.Close()
	got, err := crashed.Get(ctx, callA, k.ID())
	if err != nil {
		t.Fatalf("the key after a crash of the store's node: %v", err)
	}
	sealOpen(t, k, got)
	if subs, err := crashed.Subjects(ctx, "+15555550100"); err != nil || len(subs) != 1 || subs[0] != callA {
		t.Errorf("the party index after a crash: %v, %v", subs, err)
	}
}

// TestClient: a replica's keys are the key store's — opened by the store's
// node, indexed by party — and a call's later events cost no call to the
// service until the TTL, after which an erasure on the store's node
// reaches the replica.
func TestClient(t *testing.T) {
	ctx := context.Background()
	keys := keystoretest.Open(t)
	c, now, calls := served(t, keys)
	k, err := c.Key(ctx, callA, "+15555550100", "+15555550199")
	if err != nil {
		t.Fatal(err)
	}
	got, err := keys.Get(ctx, callA, k.ID())
	if err != nil {
		t.Fatal(err)
	}
	sealOpen(t, k, got)
	if subs, err := keys.Subjects(ctx, "+15555550100"); err != nil || len(subs) != 1 || subs[0] != callA {
		t.Errorf("the party index: %v, %v", subs, err)
	}

	n := calls.Load()
	for range 3 {
		if again, err := c.Key(ctx, callA, "+15555550199"); err != nil || again.ID() != k.ID() {
			t.Fatalf("Key again: %016x, %v", again.ID(), err)
		}
		if again, err := c.Get(ctx, callA, k.ID()); err != nil || again.ID() != k.ID() {
			t.Fatalf("Get: %016x, %v", again.ID(), err)
		}
	}
	if calls.Load() != n {
		t.Errorf("a known call's keys cost %d calls to the service", calls.Load()-n)
	}
	if _, err := c.Key(ctx, callA, "client:alice"); err != nil || calls.Load() != n+1 {
		t.Fatalf("a new party: %v, %d calls", err, calls.Load()-n)
	}
	if subs, err := keys.Subjects(ctx, "client:alice"); err != nil || len(subs) != 1 {
		t.Errorf("a new party is not indexed: %v, %v", subs, err)
	}

	// Erased on the store's node: the cached key serves until the TTL.
	if _, err := keys.Destroy(ctx, callA); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Key(ctx, callA); err != nil {
		t.Fatalf("within the TTL: %v", err)
	}
	*now = now.Add(DefaultTTL)
	if _, err := c.Key(ctx, callA); !errors.Is(err, keystore.ErrDestroyed) {
		t.Errorf("Key of an erased subject after the TTL: %v, want ErrDestroyed", err)
	}
	// The erasure is remembered: the erased call's later events cost no
	// call until the TTL.
	n = calls.Load()
	if _, err := c.Get(ctx, callA, k.ID()); !errors.Is(err, keystore.ErrDestroyed) {
		t.Errorf("Get of an erased subject after the TTL: %v, want ErrDestroyed", err)
	}
	if _, err := c.Key(ctx, callA); !errors.Is(err, keystore.ErrDestroyed) || calls.Load() != n {
		t.Errorf("Key of a subject the service said erased: %v, after %d calls, want ErrDestroyed and none", err, calls.Load()-n)
	}
	if _, err := c.Get(ctx, callB, 42); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Get of a key the store never had: %v, want ErrNotFound", err)
	}
	if _, err := c.Key(ctx, "bad\x00subject"); err == nil || errors.Is(err, keystore.ErrDestroyed) {
		t.Errorf("an invalid subject: %v", err)
	}
	if _, err := c.Subjects(ctx, "+15555550100"); !errors.Is(err, ErrNotHere) {
		t.Errorf("Subjects: %v", err)
	}
	if _, err := c.Destroy(ctx, callB); !errors.Is(err, ErrNotHere) {
		t.Errorf("Destroy: %v", err)
	}
}

// TestOnlyTheServiceSaysErased: another refusal of the same code (an
// interceptor's) is not taken for an erasure, which would store a call's
// personal fields nowhere.
func TestOnlyTheServiceSaysErased(t *testing.T) {
	refuse := grpc.UnaryInterceptor(func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		return nil, status.Error(codes.FailedPrecondition, "something else")
	})
	conn := grpctest.Serve(t, NewServer(keystoretest.Open(t), slog.New(slog.DiscardHandler)).Register, refuse)
	c, err := NewClient(conn, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Key(context.Background(), callA); err == nil || errors.Is(err, keystore.ErrDestroyed) {
		t.Errorf("another FAILED_PRECONDITION: %v", err)
	}
}

// TestPlaintextOnlyOverLoopback: a data key is never answered over a
// plaintext connection from another machine.
func TestPlaintextOnlyOverLoopback(t *testing.T) {
	s := NewServer(keystoretest.Open(t), slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		name string
		peer *peer.Peer
		ok   bool
	}{
		{"loopback", &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}}, true},
		{"IPv6 loopback", &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv6loopback, Port: 5000}}, true},
		{"TLS", &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 5000}, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{}}}, true},
		{"plaintext from another machine", &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 5000}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := peer.NewContext(context.Background(), tc.peer)
			res, err := s.Key(ctx, &keystorev1.KeyRequest{Subject: callA})
			if tc.ok != (err == nil) {
				t.Fatalf("Key: %v", err)
			}
			if !tc.ok && (status.Code(err) != codes.PermissionDenied || len(res.GetKey()) != 0) {
				t.Errorf("refused with %v and a key of %d bytes", err, len(res.GetKey()))
			}
			if _, err := s.GetKey(ctx, &keystorev1.GetKeyRequest{Subject: callA, KeyId: 1}); !tc.ok && status.Code(err) != codes.PermissionDenied {
				t.Errorf("GetKey: %v", err)
			}
		})
	}
}

// TestUnavailable: a key service out of reach is keystore.ErrUnavailable,
// which readers retry, never an erasure or a missing key.
func TestUnavailable(t *testing.T) {
	g := grpc.NewServer()
	NewServer(keystoretest.Open(t), slog.New(slog.DiscardHandler)).Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	c, err := NewClient(grpctest.Dial(t, lis.Addr().String()), ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k, err := c.Key(ctx, callA)
	if err != nil {
		t.Fatal(err)
	}
	g.Stop()
	if _, err := c.Get(ctx, callB, k.ID()); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("Get with the service down: %v, want ErrUnavailable", err)
	}
	if _, err := c.Key(ctx, callB); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("Key with the service down: %v, want ErrUnavailable", err)
	}
}

// TestPrefetch: the keys of a batch of events come in one call per
// MaxGetKeys; then opening them costs no call; an erased subject is known
// from the same call, and a key the store never had is left for Get to
// report.
func TestPrefetch(t *testing.T) {
	ctx := context.Background()
	keys := keystoretest.Open(t)
	c, _, calls := served(t, keys)
	var refs []keystore.KeyRef
	for i := range MaxGetKeys + 10 {
		sub := fmt.Sprintf("CA%032x", i+100)
		k, err := keys.Key(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, keystore.KeyRef{Subject: sub, ID: k.ID()}, keystore.KeyRef{Subject: sub, ID: k.ID()})
	}
	if _, err := keys.Destroy(ctx, refs[0].Subject); err != nil {
		t.Fatal(err)
	}
	refs = append(refs, keystore.KeyRef{Subject: callB, ID: 7})
	if err := c.Prefetch(ctx, refs); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d distinct keys prefetched in %d calls, want 2", MaxGetKeys+11, n)
	}
	for _, r := range refs[2 : len(refs)-1] {
		if _, err := c.Get(ctx, r.Subject, r.ID); err != nil {
			t.Fatalf("%s: %v", r.Subject, err)
		}
	}
	if _, err := c.Get(ctx, refs[0].Subject, refs[0].ID); !errors.Is(err, keystore.ErrDestroyed) {
		t.Errorf("an erased subject: %v, want ErrDestroyed", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("opening prefetched keys made %d more calls", n-2)
	}
	if _, err := c.Get(ctx, callB, 7); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("a key the store never had: %v, want ErrNotFound", err)
	}
	if err := c.Prefetch(ctx, refs[2:4]); err != nil || calls.Load() != 3 {
		t.Errorf("prefetching cached keys: %v, %d calls", err, calls.Load())
	}
}

// TestStaleKeysAreAskedAgain: a key older than the TTL is asked for again,
// once, and then served from the cache again.
func TestStaleKeysAreAskedAgain(t *testing.T) {
	ctx := context.Background()
	keys := keystoretest.Open(t)
	c, now, calls := served(t, keys)
	k, err := keys.Key(ctx, callB)
	if err != nil {
		t.Fatal(err)
	}
	get := func() {
		t.Helper()
		if _, err := c.Get(ctx, callB, k.ID()); err != nil {
			t.Fatal(err)
		}
	}
	get()
	get()
	*now = now.Add(DefaultTTL)
	get()
	get()
	if n := calls.Load(); n != 2 {
		t.Errorf("%d calls for a key got twice, then twice after its TTL; want 2", n)
	}
}

// TestFromStatus: only the service's own answers (erased, no such key) and
// a malformed request are final; any other failure, a refusal of this
// node's credentials included, is ErrUnavailable, which readers retry
// rather than fold an event without its personal fields for good.
func TestFromStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error // nil: neither of the errors below
	}{
		{keyStatus(codes.FailedPrecondition, reasonErased, "erased"), keystore.ErrDestroyed},
		{keyStatus(codes.NotFound, reasonNotFound, "no such key"), keystore.ErrNotFound},
		{status.Error(codes.InvalidArgument, "bad subject"), nil},
		{status.Error(codes.FailedPrecondition, "an interceptor's"), keystore.ErrUnavailable},
		{status.Error(codes.Unavailable, "down"), keystore.ErrUnavailable},
		{status.Error(codes.DeadlineExceeded, "slow"), keystore.ErrUnavailable},
		{status.Error(codes.PermissionDenied, "no keys:use"), keystore.ErrUnavailable},
		{status.Error(codes.Unauthenticated, "token"), keystore.ErrUnavailable},
		{status.Error(codes.Internal, "oops"), keystore.ErrUnavailable},
	} {
		got := fromStatus(tc.err)
		for _, e := range []error{keystore.ErrDestroyed, keystore.ErrNotFound, keystore.ErrUnavailable} {
			if errors.Is(got, e) != (e == tc.want) {
				t.Errorf("fromStatus(%v) = %v, want %v", tc.err, got, tc.want)
			}
		}
	}
}
