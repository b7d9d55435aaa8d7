package pebblestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
)

// TestVisitAll checks that VisitAll lends exactly what ReadAll copies, for
// any range, and refuses ranges past the head.
func TestVisitAll(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), pebblestore.Options{})
	for i := range 50 {
		stream := fmt.Sprintf("s-%d", i%7)
		if _, err := s.Append(ctx, stream, eventstore.Any(), ev(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	all := readAll(t, s)
	for _, r := range [][2]eventstore.Position{{0, 50}, {0, 1}, {10, 37}, {49, 50}, {20, 20}} {
		var got []eventstore.RecordedEvent
		err := s.VisitAll(ctx, r[0], r[1], func(e *eventstore.RecordedEvent) error {
			c := *e
			c.Data, c.Metadata = bytes.Clone(e.Data), bytes.Clone(e.Metadata)
			got = append(got, c)
			return nil
		})
		if err != nil {
			t.Fatalf("visit %v: %v", r, err)
		}
		want := all[r[0]:r[1]]
		if len(got) != len(want) {
			t.Fatalf("visit %v: %d events, want %d", r, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.ID != w.ID || g.Stream != w.Stream || g.Type != w.Type || g.Revision != w.Revision ||
				g.Position != w.Position || !g.Created.Equal(w.Created) || !bytes.Equal(g.Data, w.Data) || !bytes.Equal(g.Metadata, w.Metadata) {
				t.Fatalf("visit %v: event %d is %+v, want %+v", r, i, g, w)
			}
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := s.VisitAll(ctx, 0, 50, func(*eventstore.RecordedEvent) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("visit stopped by fn: %v after %d events", err, n)
	}
	if err := s.VisitAll(ctx, 0, 51, func(*eventstore.RecordedEvent) error { return nil }); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Fatalf("visit past the head: %v", err)
	}
}
