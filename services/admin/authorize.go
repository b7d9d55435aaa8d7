package admin

import (
	"context"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// LoopbackOnly admits calls from the server's own machine only: the
// administrator's authorization until AdminService is guarded by the
// projections:admin scope like every other RPC.
func LoopbackOnly(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if ok {
		if a, isTCP := p.Addr.(*net.TCPAddr); isTCP && a.IP.IsLoopback() {
			return nil
		}
	}
	return status.Error(codes.PermissionDenied, "AdminService answers only on the server's own machine (a loopback address)")
}
