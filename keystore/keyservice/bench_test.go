package keyservice

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/keystore/keystoretest"
)

// BenchmarkClientKey is what a webhook replica pays for the key of an
// event: new, a call leg's first event (a round trip over loopback gRPC,
// the key made and synced on the key store's node); known, a later event
// of the same leg (the replica's cache).
func BenchmarkClientKey(b *testing.B) {
	ctx := context.Background()
	conn := grpctest.Serve(b, NewServer(keystoretest.Open(b), slog.New(slog.DiscardHandler)).Register)
	c, err := NewClient(conn, ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64 // across the runs of "new": every subject new
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16) // webhooks arrive concurrently: their syncs are shared
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if _, err := c.Key(ctx, fmt.Sprintf("CA%032x", i), fmt.Sprintf("+1555%07d", i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("known", func(b *testing.B) {
		if _, err := c.Key(ctx, callA, "+15555550100"); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Key(ctx, callA, "+15555550100"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
