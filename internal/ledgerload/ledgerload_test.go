package ledgerload_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
)

// TestLoadLandsNearTheSizeAsked: however many workers generate at once,
// a load appends the events asked for and at most a small chunk more, and
// the store holds exactly what Load reports.
func TestLoadLandsNearTheSizeAsked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		events, workers int
	}{
		{3000, 1},
		{3000, 8},
		{500, 8},
	} {
		t.Run(fmt.Sprintf("events=%d/workers=%d", tc.events, tc.workers), func(t *testing.T) {
			t.Parallel()
			store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := ledgerload.Load(ctx, store, ledgerload.Config{Events: tc.events, Seed: 7, Workers: tc.workers, Appenders: 16})
			if err != nil {
				t.Fatal(err)
			}
			// The last chunk holds at least 16 calls of up to ~10 events.
			if st.Events < int64(tc.events) || st.Events > int64(tc.events)+200 {
				t.Errorf("%d events with %d workers: appended %d", tc.events, tc.workers, st.Events)
			}
			stored := int64(0)
			for from := eventstore.Start; ; {
				evs, err := store.ReadAll(ctx, from, 1000)
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) == 0 {
					break
				}
				stored += int64(len(evs))
				from = evs[len(evs)-1].Position
			}
			if stored != st.Events {
				t.Errorf("%d events with %d workers: Load reports %d, the store holds %d", tc.events, tc.workers, st.Events, stored)
			}
		})
	}
}
