package pebblestore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/eventstore/storetest"
)

// coldOptions make almost every lookup miss the stream cache and reach the
// dedup index with short streams.
func coldOptions() pebblestore.Options {
	return pebblestore.WithScanIDs(pebblestore.Options{StreamCacheSize: 2}, 2)
}

// TestConformanceColdCache runs the suite with a stream cache of two
// streams and a dedup index from the third event on, so that the cold
// paths (index lookups, cache rotations) carry it.
func TestConformanceColdCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func(t *testing.T) eventstore.Store {
			return open(t, dir, coldOptions())
		}
	})
}

// model is what a store should hold, for TestModel.
type model struct {
	streams map[string][]placed // events by revision
	head    uint64
}

type placed struct {
	id  uuid.UUID
	pos uint64
}

// apply returns what Append should answer and updates the model.
func (m *model) apply(stream string, expected eventstore.StreamState, evs []eventstore.EventData) (eventstore.AppendResult, error) {
	cur := m.streams[stream]
	var res eventstore.AppendResult
	var origMax uint64
	var fresh []uuid.UUID
	for i, e := range evs {
		dup := slices.ContainsFunc(evs[:i], func(o eventstore.EventData) bool { return o.ID == e.ID })
		if j := slices.IndexFunc(cur, func(p placed) bool { return p.id == e.ID }); j >= 0 {
			dup = true
			origMax = max(origMax, cur[j].pos)
		}
		if dup {
			res.Duplicates = append(res.Duplicates, e.ID)
		} else {
			fresh = append(fresh, e.ID)
		}
	}
	head := uint64(len(cur)) - 1
	if len(fresh) == 0 {
		res.NextRevision, res.Position = head, eventstore.Position(origMax)
		return res, nil
	}
	if !expected.Check(head, len(cur) > 0) {
		return eventstore.AppendResult{}, eventstore.ErrWrongExpectedVersion
	}
	for _, id := range fresh {
		m.head++
		cur = append(cur, placed{id, m.head})
	}
	m.streams[stream] = cur
	res.NextRevision, res.Position = uint64(len(cur))-1, eventstore.Position(m.head)
	return res, nil
}

// TestModel drives a store with a tiny stream cache through random appends
// (new and repeated IDs, right and wrong expected states), several to a
// group, with reopens and index flushes in between, and checks every answer
// and the final contents against a model. The cache rotates all the time,
// with streams still in the index's memtables and already in its tables.
func TestModel(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			testModel(t, seed)
		})
	}
}

func testModel(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 99))
	dir := t.TempDir()
	tokens := make(chan struct{})
	var groups atomic.Int32
	opts := pebblestore.WithBeforeGroup(coldOptions(), func() {
		groups.Add(1)
		<-tokens
	})
	s := open(t, dir, opts)
	defer func() { s.Close() }()
	ctx := context.Background()
	m := &model{streams: map[string][]placed{}}
	streams := []string{"m-a", "m-b", "m-c", "m-d", "m-e", "m-f", "m-g"}

	randomAppend := func() (string, eventstore.StreamState, []eventstore.EventData) {
		stream := streams[rnd.IntN(len(streams))]
		cur := m.streams[stream]
		evs := make([]eventstore.EventData, 1+rnd.IntN(4))
		for i := range evs {
			id := uuid.New()
			switch r := rnd.IntN(10); {
			case r < 3 && len(cur) > 0:
				id = cur[rnd.IntN(len(cur))].id // an event of the stream
			case r == 3 && i > 0:
				id = evs[rnd.IntN(i)].ID // repeated within the append
			case r == 4:
				if other := m.streams[streams[rnd.IntN(len(streams))]]; len(other) > 0 {
					id = other[rnd.IntN(len(other))].id // another stream's
				}
			}
			evs[i] = eventstore.EventData{ID: id, Type: "Model", Data: []byte(id.String())}
		}
		head := uint64(len(cur)) - 1
		expected := []eventstore.StreamState{
			eventstore.Any(), eventstore.NoStream(), eventstore.StreamExists(),
			eventstore.Revision(head), eventstore.Revision(head + 1), eventstore.Revision(0),
		}[rnd.IntN(6)]
		return stream, expected, evs
	}

	for round := range 120 {
		// The first append is taken alone; the next ones queue behind it
		// and form the following group, in queue order.
		n := 1 + rnd.IntN(6)
		type call struct {
			stream   string
			expected eventstore.StreamState
			evs      []eventstore.EventData
			out      chan appendOutcome
		}
		calls := make([]call, n)
		before := groups.Load()
		for i := range calls {
			c := &calls[i]
			c.stream, c.expected, c.evs = randomAppend()
			c.out = make(chan appendOutcome, 1)
			go func() {
				res, err := s.Append(ctx, c.stream, c.expected, c.evs...)
				c.out <- appendOutcome{res, err}
			}()
			if i == 0 {
				waitFor(t, "committer takes the first append", func() bool { return groups.Load() == before+1 })
			} else {
				waitFor(t, fmt.Sprintf("append %d queued", i), func() bool { return pebblestore.QueueLen(s) == i })
			}
		}
		tokens <- struct{}{}
		if n > 1 {
			tokens <- struct{}{}
		}
		for i, c := range calls {
			want, wantErr := m.apply(c.stream, c.expected, c.evs)
			o := <-c.out
			if wantErr != nil {
				if !errors.Is(o.err, wantErr) {
					t.Fatalf("round %d append %d to %s expecting %v: %+v, %v; want %v", round, i, c.stream, c.expected, o.res, o.err, wantErr)
				}
				continue
			}
			if o.err != nil || o.res.NextRevision != want.NextRevision || o.res.Position != want.Position ||
				fmt.Sprint(o.res.Duplicates) != fmt.Sprint(want.Duplicates) {
				t.Fatalf("round %d append %d to %s expecting %v: %+v, %v; want %+v", round, i, c.stream, c.expected, o.res, o.err, want)
			}
		}

		switch rnd.IntN(8) {
		case 0:
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkModel(t, open(t, dir, pebblestore.Options{}), m, true)
			s = open(t, dir, opts)
		case 1:
			if err := pebblestore.FlushIndex(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkModel(t, s, m, false)
}

// checkModel compares a store's streams and log with the model, closing
// the store if asked.
func checkModel(t *testing.T, s *pebblestore.Store, m *model, closeIt bool) {
	t.Helper()
	if closeIt {
		defer func() {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}()
	}
	all := readAll(t, s)
	if uint64(len(all)) != m.head {
		t.Fatalf("log holds %d events, model %d", len(all), m.head)
	}
	for stream, want := range m.streams {
		got, err := s.ReadStream(context.Background(), stream, 0, 1000)
		if err != nil {
			t.Fatalf("read %s: %v", stream, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s holds %d events, model %d", stream, len(got), len(want))
		}
		for i, e := range got {
			if e.ID != want[i].id || uint64(e.Position) != want[i].pos || e.Revision != uint64(i) || all[e.Position-1].ID != e.ID {
				t.Fatalf("%s@%d is %s at %d, model %s at %d", stream, i, e.ID, e.Position, want[i].id, want[i].pos)
			}
		}
	}
}

// fillStreams appends events to streams of various lengths, some longer
// than scanIDs, and returns them by stream.
func fillStreams(t *testing.T, s eventstore.Store, streams int) map[string][]eventstore.RecordedEvent {
	t.Helper()
	ctx := context.Background()
	for i := range streams {
		stream := fmt.Sprintf("fill-%04d", i)
		n := 1 + i%7
		if i%50 == 0 {
			n = 70 // longer than scanIDs
		}
		for j := 0; j < n; j += 3 {
			evs := make([]eventstore.EventData, min(3, n-j))
			for k := range evs {
				evs[k] = ev(fmt.Sprintf("%s/%d", stream, j+k))
			}
			expected := eventstore.NoStream()
			if j > 0 {
				expected = eventstore.Revision(uint64(j) - 1)
			}
			if _, err := s.Append(ctx, stream, expected, evs...); err != nil {
				t.Fatalf("fill %s: %v", stream, err)
			}
		}
	}
	out := map[string][]eventstore.RecordedEvent{}
	for _, e := range readAll(t, s) {
		out[e.Stream] = append(out[e.Stream], e)
	}
	return out
}

// checkIndexed checks that every stream reads back as written, that
// re-appending each of its events is a duplicate at the original position,
// and that its head is where the writes left it.
func checkIndexed(t *testing.T, s eventstore.Store, streams map[string][]eventstore.RecordedEvent) {
	t.Helper()
	ctx := context.Background()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for stream, want := range streams {
		got, err := s.ReadStream(ctx, stream, 0, 1000)
		if err != nil {
			t.Fatalf("read %s: %v", stream, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s holds %d events, want %d", stream, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || got[i].Position != want[i].Position || got[i].Revision != uint64(i) {
				t.Fatalf("%s@%d is %s at %d, want %s at %d", stream, i, got[i].ID, got[i].Position, want[i].ID, want[i].Position)
			}
			res, err := s.Append(ctx, stream, eventstore.NoStream(), eventstore.EventData{ID: want[i].ID, Type: "Again"})
			if err != nil || len(res.Duplicates) != 1 || res.Position != want[i].Position || res.NextRevision != uint64(len(want)-1) {
				t.Fatalf("re-append of %s@%d: %+v, %v; want a duplicate at %d, head %d", stream, i, res, err, want[i].Position, len(want)-1)
			}
		}
		if _, err := s.Append(ctx, stream, eventstore.Revision(uint64(len(want))), ev("wrong")); !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			t.Fatalf("append to %s at a revision past its head: %v", stream, err)
		}
	}
	if h, _ := s.Head(ctx); h != head {
		t.Fatalf("checking moved the head from %d to %d", head, h)
	}
}

// TestReindexLostIndex deletes the index: Open rebuilds it from the log.
func TestReindexLostIndex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, pebblestore.Options{})
	streams := fillStreams(t, s, 200)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, pebblestore.IndexDir)); err != nil {
		t.Fatal(err)
	}
	var batches atomic.Int32
	s = openClosed(t, dir, pebblestore.WithReindex(pebblestore.Options{}, 100, func(uint64) { batches.Add(1) }))
	if batches.Load() < 2 {
		t.Errorf("re-index ran %d batches, want several", batches.Load())
	}
	checkIndexed(t, s, streams)
}

// TestIndexAheadOfLog: an index that covers more than the log is refused.
func TestIndexAheadOfLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, pebblestore.Options{})
	if _, err := s.Append(context.Background(), "a", eventstore.Any(), ev("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	indexPath := filepath.Join(dir, pebblestore.IndexDir)
	db, err := pebble.Open(indexPath, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("mapplied"), []byte{0, 0, 0, 0, 0, 0, 0, 9}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := pebblestore.Open(dir, pebblestore.Options{Logger: testLogger(t)}); !errors.Is(err, pebblestore.ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open with an index ahead of the log: %v, want ErrCorrupt", err)
	}
	// Deleting the index, as the error advises, recovers the store.
	if err := os.RemoveAll(indexPath); err != nil {
		t.Fatal(err)
	}
	s = openClosed(t, dir, pebblestore.Options{})
	if evs, err := s.ReadStream(context.Background(), "a", 0, 10); err != nil || len(evs) != 1 {
		t.Fatalf("read after rebuilding the index: %d events, %v", len(evs), err)
	}
}

// reindexDirEnv names the store directory of TestCrashReindexChild; the
// child does nothing unless TestCrashDuringReindex sets it.
const reindexDirEnv = "PEBBLESTORE_REINDEX_CHILD_DIR"

// TestCrashReindexChild is the process TestCrashDuringReindex kills: it
// opens a store whose index must be rebuilt, slowly, printing each batch.
func TestCrashReindexChild(t *testing.T) {
	dir := os.Getenv(reindexDirEnv)
	if dir == "" {
		return
	}
	opts := pebblestore.Options{
		// Small memtables, so that part of the re-index reaches the
		// index's tables before the kill.
		Pebble: func(db string, o *pebble.Options) {
			if db == "index" {
				o.MemTableSize = 1 << 20
			}
		},
	}
	opts = pebblestore.WithReindex(opts, 500, func(applied uint64) {
		fmt.Printf("applied %d\n", applied)
	})
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	fmt.Println("open")
	s.Close()
}

// TestCrashDuringReindex kills a process while it rebuilds a lost index,
// then checks that the next Open finishes the job: every event is in its
// stream, deduplicated, at its place.
func TestCrashDuringReindex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, pebblestore.Options{})
	streams := fillStreams(t, s, 3000)
	head, _ := s.Head(context.Background())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, pebblestore.IndexDir)); err != nil {
		t.Fatal(err)
	}
	killed := runUntil(t, []string{"-test.run=^TestCrashReindexChild$", "-test.count=1"}, reindexDirEnv+"="+dir, func(line string) bool {
		var applied uint64
		_, err := fmt.Sscanf(line, "applied %d", &applied)
		return err == nil && applied >= uint64(head)/2
	})
	t.Logf("re-index of %d events killed: %t", head, killed)
	s = openClosed(t, dir, pebblestore.Options{})
	checkIndexed(t, s, streams)
}

// runUntil runs this test binary with args and env added, and kills it
// with SIGKILL at the first line of its output for which kill holds. It
// reports whether it killed the child (false if the child ended first).
func runUntil(t *testing.T, args []string, env string, kill func(line string) bool) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), env)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(storetest.Deadline, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if kill(sc.Text()) {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatalf("kill: %v", err)
			}
			killed = true
			break
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if !killed && err != nil {
		t.Fatalf("child: %v; stderr:\n%s", err, stderr.String())
	}
	return killed
}

// TestScanIDsFixedAtCreation: an index keeps the scan length it was
// created with, whatever later opens ask for, so that dedup of long streams
// finds the i keys where they were written.
func TestScanIDsFixedAtCreation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir, pebblestore.WithScanIDs(pebblestore.Options{}, 2))
	evs := []eventstore.EventData{ev("0"), ev("1"), ev("2"), ev("3"), ev("4")}
	if _, err := s.Append(ctx, "long", eventstore.NoStream(), evs...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(opts pebblestore.Options) {
		t.Helper()
		s := open(t, dir, opts)
		defer s.Close()
		for i, e := range evs {
			res, err := s.Append(ctx, "long", eventstore.NoStream(), e)
			if err != nil || len(res.Duplicates) != 1 || res.Position != eventstore.Position(i+1) {
				t.Fatalf("re-append of event %d: %+v, %v; want a duplicate at %d", i, res, err, i+1)
			}
		}
	}
	check(pebblestore.Options{})
	check(pebblestore.WithScanIDs(pebblestore.Options{}, 3))
	// A rebuilt index takes the scan length of the open that builds it.
	if err := os.RemoveAll(filepath.Join(dir, pebblestore.IndexDir)); err != nil {
		t.Fatal(err)
	}
	check(pebblestore.Options{})
	check(pebblestore.WithScanIDs(pebblestore.Options{}, 2))
}
