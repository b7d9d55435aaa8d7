package rebuild_test

import (
	"context"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/rebuild"
)

// TestBuildEqualsIncrementalApply folds a loaded ledger both ways: event
// batch by event batch into a live read model (as the runner does), and
// with Build. The records must be equal, one for one, and the rebuilt
// read model must be current at the head of the log.
func TestBuildEqualsIncrementalApply(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := ledgerload.Load(ctx, store, ledgerload.Config{Events: 5000, Seed: 7, CallsPerChunk: 200}); err != nil {
		t.Fatal(err)
	}
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	live, err := callstore.Open(t.TempDir(), callstore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	for from := eventstore.Start; from < head; {
		evs, err := store.ReadAll(ctx, from, 97)
		if err != nil {
			t.Fatal(err)
		}
		from = evs[len(evs)-1].Position
		if err := live.Apply(ctx, eventstore.Batch{Events: evs, Checkpoint: from}); err != nil {
			t.Fatal(err)
		}
	}

	// Small epochs: records are frozen between almost every batch, and
	// thawed when a later batch touches them again.
	dir := filepath.Join(t.TempDir(), "rebuilt")
	var phases []rebuild.Phase
	st, err := rebuild.Build(ctx, store, dir, rebuild.Options{BatchSize: 333, Decoders: 3, EpochEvents: 50, Progress: func(p rebuild.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint != head || st.Events != uint64(head) {
		t.Errorf("rebuilt to %d with %d events, want head %d", st.Checkpoint, st.Events, head)
	}
	if want := []rebuild.Phase{rebuild.PhaseFold, rebuild.PhaseWrite, rebuild.PhaseDone}; !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
	rebuilt, err := callstore.Open(dir, callstore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer rebuilt.Close()
	if cp, _ := rebuilt.Checkpoint(ctx); cp != head {
		t.Errorf("rebuilt checkpoint %d, want %d", cp, head)
	}
	n := compareStores(t, live, rebuilt)
	if n != st.Calls || n < 1000 {
		t.Errorf("%d records compared, rebuild reported %d calls", n, st.Calls)
	}
}

// compareStores checks that two read models hold the same records and
// returns how many.
func compareStores(t *testing.T, a, b *callstore.Store) int {
	t.Helper()
	ctx := context.Background()
	var ra, rb []*statev1.CallRecord
	if err := a.Records(ctx, func(r *statev1.CallRecord) error { ra = append(ra, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Records(ctx, func(r *statev1.CallRecord) error { rb = append(rb, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ra) != len(rb) {
		t.Fatalf("%d records live, %d rebuilt", len(ra), len(rb))
	}
	for i := range ra {
		if !proto.Equal(ra[i], rb[i]) {
			t.Fatalf("record %d differs:\nlive    %v\nrebuilt %v", i, ra[i], rb[i])
		}
	}
	ca, cb := a.Counts(), b.Counts()
	if !maps.Equal(ca.ByStatus, cb.ByStatus) || ca.Active != cb.Active || ca.Total != cb.Total {
		t.Fatalf("counts differ: live %+v, rebuilt %+v", ca, cb)
	}
	return len(ra)
}

// sparse shows a log whose positions are not contiguous (as KurrentDB's
// commit positions are not): position p of the inner log is p·7.
type sparse struct{ inner rebuild.Log }

func (s sparse) ReadAll(ctx context.Context, from eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := s.inner.ReadAll(ctx, from/7, limit)
	for i := range evs {
		evs[i].Position *= 7
	}
	return evs, err
}

func (s sparse) Head(ctx context.Context) (eventstore.Position, error) {
	h, err := s.inner.Head(ctx)
	return h * 7, err
}

// TestFoldSparsePositions: with gaps between positions, every event is
// still folded exactly once, whatever the chunking. The dense fold reads
// through pebblestore's VisitAll, the sparse one through ReadAll: both
// give the same records.
func TestFoldSparsePositions(t *testing.T) {
	ctx := context.Background()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := ledgerload.Load(ctx, store, ledgerload.Config{Events: 3000, Seed: 8, CallsPerChunk: 100}); err != nil {
		t.Fatal(err)
	}
	head, _ := store.Head(ctx)
	dense, err := rebuild.Fold(ctx, store, rebuild.Options{BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, batch := range []int{1, 7, 100, 5000} {
		res, err := rebuild.Fold(ctx, sparse{store}, rebuild.Options{BatchSize: batch, Decoders: 3})
		if err != nil {
			t.Fatal(err)
		}
		if res.Events != uint64(head) || res.Checkpoint != head*7 || len(res.Records) != len(dense.Records) {
			t.Errorf("batch %d: %d events to %d, %d calls; want %d events to %d, %d calls",
				batch, res.Events, res.Checkpoint, len(res.Records), head, head*7, len(dense.Records))
		}
		if batch == 100 {
			if d, s := records(t, dense), records(t, res); !slices.EqualFunc(d, s, func(a, b *statev1.CallRecord) bool {
				// Positions differ by design (·7); everything else must not.
				b = proto.Clone(b).(*statev1.CallRecord)
				b.LastPosition = a.LastPosition
				return proto.Equal(a, b)
			}) {
				t.Errorf("batch %d: records read through ReadAll differ from those read through VisitAll", batch)
			}
		}
	}
}

// records returns the records of res in CallSid order.
func records(t *testing.T, res *rebuild.Result) []*statev1.CallRecord {
	t.Helper()
	var out []*statev1.CallRecord
	if err := res.Calls(func(r *statev1.CallRecord) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestProgressRateAndETA: the rate counts events, the ETA positions (they
// need not be contiguous), and only the fold has an ETA.
func TestProgressRateAndETA(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    rebuild.Progress
		rate float64
		eta  time.Duration
	}{
		{"a quarter of the positions in 10 s", rebuild.Progress{Phase: rebuild.PhaseFold, Events: 500, Position: 1000, Target: 4000, Elapsed: 10 * time.Second}, 50, 30 * time.Second},
		{"not started", rebuild.Progress{Phase: rebuild.PhaseFold, Target: 4000}, 0, 0},
		{"fold done", rebuild.Progress{Phase: rebuild.PhaseFold, Events: 4000, Position: 4000, Target: 4000, Elapsed: time.Second}, 4000, 0},
		{"writing", rebuild.Progress{Phase: rebuild.PhaseWrite, Events: 100, Position: 100, Target: 400, Elapsed: time.Second}, 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.p.Rate(); got != tc.rate {
				t.Errorf("Rate %v, want %v", got, tc.rate)
			}
			if got := tc.p.ETA(); got != tc.eta {
				t.Errorf("ETA %v, want %v", got, tc.eta)
			}
		})
	}
}
