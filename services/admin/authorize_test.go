package admin_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/services/admin"
)

func TestLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		addr net.Addr
		ok   bool
	}{
		{"IPv4 loopback", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, true},
		{"IPv6 loopback", &net.TCPAddr{IP: net.IPv6loopback, Port: 5000}, true},
		{"another machine", &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5000}, false},
		{"unspecified", &net.TCPAddr{IP: net.IPv4zero, Port: 5000}, false},
		{"unix socket", &net.UnixAddr{Name: "/tmp/s", Net: "unix"}, false},
	} {
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: tc.addr})
		err := admin.LoopbackOnly(ctx)
		if (err == nil) != tc.ok || (err != nil && status.Code(err) != codes.PermissionDenied) {
			t.Errorf("%s: %v, want allowed %v (else PERMISSION_DENIED)", tc.name, err, tc.ok)
		}
	}
	if err := admin.LoopbackOnly(context.Background()); status.Code(err) != codes.PermissionDenied {
		t.Errorf("no peer: %v, want PERMISSION_DENIED", err)
	}
}

// TestBackupAuthorizedFirst: a refused caller learns nothing else, not
// even that the server has no backup of its own.
func TestBackupAuthorizedFirst(t *testing.T) {
	t.Parallel()
	s := admin.New(admin.Config{})
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 1}})
	if _, err := s.Backup(ctx, &callledgerv1.BackupRequest{TargetDir: "/tmp/x"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Backup from another machine: %v, want PERMISSION_DENIED", err)
	}
}
