package seal

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/keystore/keystoretest"
)

// The write path seals both parts of every event; the projection opens the
// facts of every event; raw-request readers open the request.
func BenchmarkSeal(b *testing.B) {
	for _, tc := range []struct {
		part Part
		pd   *callledgerv1.PersonalData
	}{{Facts, facts()}, {Request, request()}} {
		b.Run(string(tc.part), func(b *testing.B) {
			keys := keystoretest.Open(b)
			key, err := keys.Key(context.Background(), callA)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(proto.Size(tc.pd)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(key, tc.part, event1, tc.pd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen opens through the key store, its key cached, as the
// projection does for the events of a call it has met.
func BenchmarkOpen(b *testing.B) {
	for _, tc := range []struct {
		part Part
		pd   *callledgerv1.PersonalData
	}{{Facts, facts()}, {Request, request()}} {
		b.Run(string(tc.part), func(b *testing.B) {
			ctx := context.Background()
			keys := keystoretest.Open(b)
			key, err := keys.Key(ctx, callA)
			if err != nil {
				b.Fatal(err)
			}
			s, err := Seal(key, tc.part, event1, tc.pd)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(proto.Size(tc.pd)))
			b.ReportAllocs()
			for b.Loop() {
				var pd callledgerv1.PersonalData
				if err := OpenWith(ctx, keys, tc.part, event1, s, &pd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenInto is the projection's path: the facts merged into the
// stored event, the key cached.
func BenchmarkOpenInto(b *testing.B) {
	ctx := context.Background()
	keys := keystoretest.Open(b)
	key, err := keys.Key(ctx, callA)
	if err != nil {
		b.Fatal(err)
	}
	s, err := Seal(key, Facts, event1, facts())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		k, err := keys.Get(ctx, s.GetSubject(), s.GetKeyId())
		if err != nil {
			b.Fatal(err)
		}
		ev := &callledgerv1.Event{Body: &callledgerv1.Event_CallStatusReported{CallStatusReported: &callledgerv1.CallStatusReported{}}}
		if err := OpenInto(k, Facts, event1, s, ev); err != nil {
			b.Fatal(err)
		}
	}
}
