package seal_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/keystore/keystoretest"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/traffic"
	"github.com/callledger/callledger/twilio"
)

// BenchmarkSealOwned is the webhook's sealing of the events it derived
// from generated traffic (about four webhooks a call leg, so a new key for
// one event in four), a new key's sync deferred as the server defers it.
// Clones of the events are made before the timer starts.
func BenchmarkSealOwned(b *testing.B) {
	reqs := traffic.Generate(traffic.Config{
		Calls: 5000, Seed: 1, PublicURL: "https://hooks.example.com", Token: "tok", RetryRate: -1,
		Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	})
	var events []*callledgerv1.Event
	for _, r := range reqs {
		for _, d := range twilio.Derive(r.Kind, &twilio.Request{
			Method: r.Method, URL: "https://hooks.example.com" + r.URI(), RawQuery: r.Query,
			ContentType: r.Header.Get("Content-Type"), Header: r.Header, Body: r.Body,
			RemoteAddr: "192.0.2.1:5060", ReceivedAt: time.Date(2026, 3, 1, 0, 0, 1, 0, time.UTC),
		}) {
			events = append(events, d.Event)
		}
	}
	keys := keystoretest.Open(b)
	sealer := seal.NewEvents(keys, seal.DeferSync())
	ctx := context.Background()
	owned := make([]*callledgerv1.Event, b.N)
	for i := range owned {
		owned[i] = proto.Clone(events[i%len(events)]).(*callledgerv1.Event)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, ev := range owned {
		if i%len(events) == 0 && i > 0 {
			b.StopTimer()
			// The same calls again would find their keys: a fresh store
			// keeps one new key in four events.
			keys = keystoretest.Open(b)
			sealer = seal.NewEvents(keys, seal.DeferSync())
			b.StartTimer()
		}
		if _, err := sealer.SealOwned(ctx, ev); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			if err := keys.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
}
