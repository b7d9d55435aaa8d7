package projections_test

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/projections"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/traffic"
	"github.com/callledger/callledger/twilio"
)

var callFilter = eventstore.Filter{StreamPrefixes: []string{eventcodec.CallStreamPrefix}}

// fill appends the events of calls simulated call trees to the log, the
// way the webhook would (concurrently, so group commit batches them), and
// returns the head position.
func fill(t testing.TB, store eventstore.Store, calls int, seed uint64) eventstore.Position {
	t.Helper()
	return fillSome(t, store, calls, seed, 1)
}

// fillSome is fill with only the first share of the requests delivered, so
// that calls are left in progress.
func fillSome(t testing.TB, store eventstore.Store, calls int, seed uint64, share float64) eventstore.Position {
	t.Helper()
	reqs := traffic.Generate(traffic.Config{Calls: calls, Seed: seed, PublicURL: "https://h", Token: "t",
		Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})
	reqs = reqs[:int(float64(len(reqs))*share)]
	var (
		mu   sync.Mutex
		head eventstore.Position
		wg   sync.WaitGroup
		work = make(chan int)
		errs = make(chan error, 1)
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := reqs[i]
				for _, d := range twilio.Derive(r.Kind, &twilio.Request{Method: r.Method, URL: "https://h" + r.URI(), Body: r.Body,
					Header: r.Header, ReceivedAt: time.Date(2026, 3, 1, 0, 0, i, 0, time.UTC)}) {
					rec, err := eventcodec.Encode(d.Event)
					if err == nil {
						var res eventstore.AppendResult
						if res, err = store.Append(context.Background(), d.Stream, eventstore.Any(), rec); err == nil {
							mu.Lock()
							head = max(head, res.Position)
							mu.Unlock()
						}
					}
					if err != nil {
						select {
						case errs <- err:
						default:
						}
					}
				}
			}
		}()
	}
	for i := range reqs {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	return head
}

// rebuild folds the whole log in memory: what any projection of it must
// equal.
func rebuild(t testing.TB, store eventstore.Store) *callstate.Memory {
	t.Helper()
	mem := callstate.NewMemory()
	for from := eventstore.Start; ; {
		recs, err := store.ReadAll(context.Background(), from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return mem
		}
		for _, rec := range recs {
			from = rec.Position
			if _, ok := eventcodec.CallSidOf(rec.Stream); !ok {
				continue
			}
			ev, err := eventcodec.Decode(rec)
			if err != nil {
				t.Fatal(err)
			}
			if err := callstate.Apply(mem, ev, uint64(rec.Position)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// sameRecords fails unless the read model holds exactly the records of mem.
func sameRecords(t testing.TB, cs *callstore.Store, mem *callstate.Memory) {
	t.Helper()
	n := 0
	err := cs.Records(context.Background(), func(rec *statev1.CallRecord) error {
		n++
		want, _ := mem.Get(rec.GetCallSid())
		if !proto.Equal(rec, want) {
			return fmt.Errorf("call %s differs from a rebuild:\nprojected: %v\nrebuilt:   %v", rec.GetCallSid(), rec, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != mem.Len() {
		t.Fatalf("read model holds %d calls, a rebuild %d", n, mem.Len())
	}
	sameCounts(t, cs)
}

// sameCounts fails unless the read model's maintained counts equal a count
// of its records.
func sameCounts(t testing.TB, cs *callstore.Store) {
	t.Helper()
	want := callstore.Counts{ByStatus: map[callledgerv1.CallStatus]int64{}}
	err := cs.Records(context.Background(), func(rec *statev1.CallRecord) error {
		c := callstate.View(rec)
		want.ByStatus[c.GetStatus()]++
		want.Total++
		if callstate.Active(c) {
			want.Active++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := cs.Counts()
	got.Position = 0
	if !maps.Equal(got.ByStatus, want.ByStatus) || got.Active != want.Active || got.Total != want.Total {
		t.Fatalf("maintained counts %+v, counted %+v", got, want)
	}
}

func runUntil(t testing.TB, store eventstore.Store, cs *callstore.Store, head eventstore.Position) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- projections.NewRunner(store, cs, callFilter, nil).Run(ctx) }()
	waitCtx, cancelWait := context.WithTimeout(ctx, time.Minute)
	defer cancelWait()
	if err := cs.WaitFor(waitCtx, head); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
}

func TestLiveProjectionEqualsRebuild(t *testing.T) {
	t.Parallel()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cs, err := callstore.Open(t.TempDir(), callstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	// Half the log exists before the projection starts, half arrives live.
	fill(t, store, 150, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = projections.NewRunner(store, cs, callFilter, nil).Run(ctx) }()
	head := fill(t, store, 150, 2)
	waitCtx, cancelWait := context.WithTimeout(ctx, time.Minute)
	defer cancelWait()
	if err := cs.WaitFor(waitCtx, head); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, cs, rebuild(t, store))
}

// TestCrashWhileProjecting kills a projecting process with SIGKILL, restarts
// the projection, and requires the result to equal a rebuild from zero:
// records and checkpoint are written together, so nothing is applied twice
// or skipped.
func TestCrashWhileProjecting(t *testing.T) {
	if dir := os.Getenv("CALLLEDGER_PROJECTION_CRASH_CHILD"); dir != "" {
		crashChild(t, dir)
		return
	}
	t.Parallel()
	dir := t.TempDir()
	store, err := pebblestore.Open(filepath.Join(dir, "ledger"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	head := fill(t, store, 2000, 3)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWhileProjecting$")
	cmd.Env = append(os.Environ(), "CALLLEDGER_PROJECTION_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill the child once it reports having applied a good part of the log.
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "applied "); ok {
			if n, _ := strconv.ParseUint(p, 10, 64); n >= uint64(head)/3 {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
				break
			}
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("the child ended before it was killed (head %d)", head)
	}

	store, err = pebblestore.Open(filepath.Join(dir, "ledger"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cs, err := callstore.Open(filepath.Join(dir, "calls"), callstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	cp, _ := cs.Checkpoint(context.Background())
	if cp == 0 || cp >= head {
		t.Fatalf("after the kill the checkpoint is %d of %d: the kill did not land mid-projection", cp, head)
	}
	runUntil(t, store, cs, head)
	sameRecords(t, cs, rebuild(t, store))
}

// crashChild projects the log in dir, printing its progress, until killed.
func crashChild(t *testing.T, dir string) {
	store, err := pebblestore.Open(filepath.Join(dir, "ledger"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := callstore.Open(filepath.Join(dir, "calls"), callstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	go func() { _ = projections.NewRunner(store, slowSink{cs}, callFilter, nil).Run(context.Background()) }()
	for {
		cp, _ := cs.Checkpoint(context.Background())
		fmt.Fprintf(w, "applied %d\n", cp)
		w.Flush()
		time.Sleep(time.Millisecond)
	}
}

// slowSink applies small batches, so that the kill lands between many
// commits rather than after one big one.
type slowSink struct{ *callstore.Store }

func (s slowSink) Apply(ctx context.Context, b eventstore.Batch) error {
	for len(b.Events) > 16 {
		part := eventstore.Batch{Events: b.Events[:16], Checkpoint: b.Events[15].Position}
		if err := s.Store.Apply(ctx, part); err != nil {
			return err
		}
		b.Events = b.Events[16:]
	}
	return s.Store.Apply(ctx, b)
}
