package pebblestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/eventstore/storetest"
	"github.com/callledger/callledger/internal/logsink"
)

// faults is an errorfs.Injector whose rule the test changes as it goes.
type faults struct {
	rule     atomic.Pointer[rule]
	injected atomic.Int64
}

// rule decides the fault of one filesystem operation: nil lets it through.
type rule func(errorfs.Op) error

func (f *faults) String() string { return "test faults" }

func (f *faults) MaybeError(op errorfs.Op) error {
	r := f.rule.Load()
	if r == nil {
		return nil
	}
	err := (*r)(op)
	if err != nil {
		f.injected.Add(1)
	}
	return err
}

func (f *faults) set(r rule) {
	if r == nil {
		f.rule.Store(nil)
		return
	}
	f.rule.Store(&r)
}

func isSync(k errorfs.OpKind) bool {
	return k == errorfs.OpFileSync || k == errorfs.OpFileSyncData || k == errorfs.OpFileSyncTo
}

func isWrite(k errorfs.OpKind) bool {
	return k == errorfs.OpFileWrite || k == errorfs.OpFileWriteAt || k == errorfs.OpFilePreallocate
}

func opErr(op errorfs.Op, errno syscall.Errno) error {
	return &fs.PathError{Op: fmt.Sprint(op.Kind), Path: op.Path, Err: errno}
}

// failSyncs is a disk whose writes no longer reach it: every sync fails.
func failSyncs(op errorfs.Op) error {
	if isSync(op.Kind) {
		return opErr(op, syscall.EIO)
	}
	return nil
}

// diskFull fails every write of data.
func diskFull(op errorfs.Op) error {
	if isWrite(op.Kind) {
		return opErr(op, syscall.ENOSPC)
	}
	return nil
}

// tablesFull fails writes of tables (flushes, compactions) only: the WAL
// and the store's write probe still work, as on a disk with a few free
// megabytes.
func tablesFull(op errorfs.Op) error {
	if strings.HasSuffix(op.Path, ".sst") && (isWrite(op.Kind) || isSync(op.Kind) || op.Kind == errorfs.OpCreate) {
		return opErr(op, syscall.ENOSPC)
	}
	return nil
}

// captureLog logs warnings and errors to the test's output and to the
// returned buffer, so that the test can count lines.
func captureLog(t *testing.T) (*slog.Logger, *logsink.Buffer) {
	var buf logsink.Buffer
	return slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &buf), &slog.HandlerOptions{Level: slog.LevelWarn})), &buf
}

// faultyOptions are options of a store on fsys that retries quickly and
// logs a repeated error once an hour, so that a test sees every repeat
// the limiter let through.
func faultyOptions(fsys vfs.FS, log *slog.Logger) pebblestore.Options {
	return pebblestore.WithFaultTiming(pebblestore.Options{FS: fsys, Logger: log}, 5*time.Millisecond, time.Hour)
}

// ledger remembers what a test appended: the streams of the events
// acknowledged, and every append, answered or not, so that it can be
// sent again.
type ledger struct {
	mu    sync.Mutex
	acked map[uuid.UUID]string
	tried []tried
	size  int // payload bytes per event
}

type tried struct {
	stream string
	events []eventstore.EventData
}

func newLedger(size int) *ledger {
	return &ledger{acked: map[uuid.UUID]string{}, size: size}
}

// try appends n new events to stream and records the outcome.
func (l *ledger) try(ctx context.Context, s eventstore.Store, stream string, n int) error {
	evs := make([]eventstore.EventData, n)
	for i := range evs {
		evs[i] = eventstore.EventData{ID: uuid.New(), Type: "Test", Data: bytes.Repeat([]byte{byte(i)}, l.size)}
	}
	l.mu.Lock()
	l.tried = append(l.tried, tried{stream, evs})
	l.mu.Unlock()
	_, err := s.Append(ctx, stream, eventstore.Any(), evs...)
	if err == nil {
		l.mu.Lock()
		for _, e := range evs {
			l.acked[e.ID] = stream
		}
		l.mu.Unlock()
	}
	return err
}

// must appends and fails the test if the store refuses.
func (l *ledger) must(t *testing.T, s eventstore.Store, stream string, n int) {
	t.Helper()
	if err := l.try(context.Background(), s, stream, n); err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
}

// retry sends every append again, which must now succeed: those that
// committed come back as duplicates.
func (l *ledger) retry(t *testing.T, s eventstore.Store) {
	t.Helper()
	l.mu.Lock()
	all := append([]tried(nil), l.tried...)
	l.mu.Unlock()
	for _, a := range all {
		if _, err := s.Append(context.Background(), a.stream, eventstore.Any(), a.events...); err != nil {
			t.Fatalf("append to %s again: %v", a.stream, err)
		}
		l.mu.Lock()
		for _, e := range a.events {
			l.acked[e.ID] = a.stream
		}
		l.mu.Unlock()
	}
}

// check reads the whole log: positions are contiguous, no event is there
// twice, and every acknowledged event is there, in its stream.
func (l *ledger) check(t *testing.T, s eventstore.Store) {
	t.Helper()
	all := readAll(t, s)
	seen := make(map[uuid.UUID]int, len(all))
	for i, e := range all {
		if e.Position != eventstore.Position(i+1) {
			t.Fatalf("event %d at position %d: the log has a gap", i+1, e.Position)
		}
		if seen[e.ID]++; seen[e.ID] == 2 {
			t.Errorf("event %s is in the log twice", e.ID)
		}
		if len(e.Data) != l.size {
			t.Errorf("event %s at %d has %d bytes of data, want %d", e.ID, e.Position, len(e.Data), l.size)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	missing := 0
	for id, stream := range l.acked {
		if seen[id] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged event %s of %s is not in the log", id, stream)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged events missing", missing, len(l.acked))
	}
}

// TestWriteFailureRecovers: when the disk fails a commit, the appends of
// the group and every append after it get ErrUnavailable (never a nil
// error), the readiness check fails saying why, reads go on, and once
// the disk heals the store reopens by itself and takes appends again,
// with every acknowledged event there exactly once.
func TestWriteFailureRecovers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault rule
		cause syscall.Errno
	}{
		{"fsync fails", failSyncs, syscall.EIO},
		{"disk full", diskFull, syscall.ENOSPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var f faults
			log, lines := captureLog(t)
			s := open(t, dir, faultyOptions(errorfs.Wrap(vfs.Default, &f), log))
			ctx := context.Background()
			l := newLedger(64)
			for i := range 12 {
				l.must(t, s, fmt.Sprintf("call-%d", i%3), 1+i%2)
			}

			f.set(tc.fault)
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 5 {
						err := l.try(ctx, s, fmt.Sprintf("call-%d", (w+i)%4), 1+i%3)
						if err == nil {
							t.Errorf("append acknowledged while the disk fails")
						} else if !errors.Is(err, eventstore.ErrUnavailable) {
							t.Errorf("append while the disk fails: %v, want ErrUnavailable", err)
						}
					}
				}()
			}
			wg.Wait()
			if err := s.Ping(ctx); !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, tc.cause) {
				t.Errorf("Ping while the disk fails: %v, want ErrUnavailable caused by %v", err, tc.cause)
			}
			if !pebblestore.Broken(s) {
				t.Error("store not broken after a failed commit")
			}
			if got := readAll(t, s); len(got) != 18 {
				t.Errorf("reads while the disk fails: %d events, want the 18 acknowledged", len(got))
			}

			f.set(nil)
			waitFor(t, "the store recovers", func() bool { return s.Ping(ctx) == nil })
			l.must(t, s, "call-after", 2)
			l.check(t, s)
			l.retry(t, s)
			l.check(t, s)
			if st := s.Stats(); st.Failures != 1 || st.Recoveries != 1 {
				t.Errorf("Stats = %+v, want 1 failure and 1 recovery", st)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("close after recovering: %v", err)
			}
			checkStore(t, dir, nil)
			l.check(t, openClosed(t, dir, pebblestore.Options{}))

			out := lines.String()
			for _, msg := range []string{"group commit failed", "recovery failed"} {
				if n := strings.Count(out, msg); n > 1 {
					t.Errorf("%q logged %d times within the interval, want at most once", msg, n)
				}
			}
		})
	}
}

// TestAcknowledgedSurviveRandomFaults appends from many goroutines while
// the WAL's and the tables' writes and syncs fail at random, then takes
// the disk as a crash would leave it (only what was synced) and opens a
// store on it: every acknowledged event is there exactly once, the log
// has no gap, and sending every append again writes each event once.
func TestAcknowledgedSurviveRandomFaults(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	var f faults
	var rngMu sync.Mutex
	rng := rand.New(rand.NewPCG(13, 42))
	f.set(func(op errorfs.Op) error {
		wal, table := strings.HasSuffix(op.Path, ".log"), strings.HasSuffix(op.Path, ".sst")
		if !(wal || table) || !(isWrite(op.Kind) || isSync(op.Kind)) {
			return nil
		}
		rngMu.Lock()
		x := rng.IntN(100)
		rngMu.Unlock()
		switch {
		case x < 3:
			return opErr(op, syscall.EIO)
		case x < 6:
			return opErr(op, syscall.ENOSPC)
		}
		return nil
	})
	log, _ := captureLog(t)
	// The log stays within one memtable: a fault that meets the close of
	// the previous WAL at a memtable rotation makes Pebble panic with its
	// mutex released, which no process survives (see the package
	// documentation). Table writes still fail, in the flushes of the
	// recoveries.
	s := open(t, "ledger", faultyOptions(errorfs.Wrap(mem, &f), log))
	defer s.Close()

	l := newLedger(2 << 10)
	var acked, refused atomic.Int32
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				ctx, cancel := context.WithTimeout(context.Background(), storetest.Deadline)
				err := l.try(ctx, s, fmt.Sprintf("call-%d", (w*7+i)%23), 1+i%2)
				cancel()
				switch {
				case err == nil:
					acked.Add(1)
				case errors.Is(err, eventstore.ErrUnavailable):
					refused.Add(1)
					// As Twilio would, come back later: here, once the
					// store says it is ready.
					for deadline := time.Now().Add(storetest.Deadline); s.Ping(context.Background()) != nil && time.Now().Before(deadline); {
						time.Sleep(time.Millisecond)
					}
				default:
					t.Errorf("append: %v, want success or ErrUnavailable", err)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d appends acknowledged, %d refused, %d faults injected, %d failures, %d recoveries",
		acked.Load(), refused.Load(), f.injected.Load(), s.Stats().Failures, s.Stats().Recoveries)
	if refused.Load() == 0 || acked.Load() == 0 {
		t.Fatalf("%d acknowledged and %d refused: the faults did not exercise both outcomes", acked.Load(), refused.Load())
	}
	f.set(nil)
	waitFor(t, "the store recovers", func() bool { return s.Ping(context.Background()) == nil })

	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	after := open(t, "ledger", pebblestore.Options{FS: crashed, Logger: log})
	l.check(t, after)
	l.retry(t, after)
	l.check(t, after)
	if err := after.Close(); err != nil {
		t.Fatal(err)
	}
	checkStore(t, "ledger", crashed)
}

// checkStore runs Check on the closed store in dir, which must find
// nothing wrong.
func checkStore(t *testing.T, dir string, fsys vfs.FS) {
	t.Helper()
	r, err := pebblestore.Check(context.Background(), dir, pebblestore.CheckOptions{FS: fsys})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !r.OK() {
		t.Errorf("check found %v", r.Problems)
	}
}

// TestOpenOnFailingDisk: opening a store on a disk that fails tries a
// bounded number of times, logs the failure once, says what the disk did,
// honours its context, and opens normally once the disk heals.
func TestOpenOnFailingDisk(t *testing.T) {
	t.Parallel()
	t.Run("gives up", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		var f faults
		fsys := errorfs.Wrap(vfs.Default, &f)
		l := newLedger(16)
		s := open(t, dir, pebblestore.Options{FS: fsys})
		l.must(t, s, "call-1", 3)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, fault := range []rule{failSyncs, diskFull} {
			f.set(fault)
			log, lines := captureLog(t)
			opts := faultyOptions(fsys, log)
			opts.OpenAttempts = 3
			s, err := pebblestore.OpenContext(context.Background(), dir, opts)
			if err == nil {
				s.Close()
				t.Fatal("open on a failing disk succeeded")
			}
			if !errors.Is(err, eventstore.ErrUnavailable) || !strings.Contains(err.Error(), "3 tries") {
				t.Errorf("open on a failing disk: %v; want ErrUnavailable after 3 tries", err)
			}
			if !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("open on a failing disk: %v; want the disk's error", err)
			}
			if n := strings.Count(lines.String(), "cannot open yet"); n != 1 {
				t.Errorf("the failed tries were logged %d times within the interval, want once", n)
			}
		}
		f.set(nil)
		l.check(t, openClosed(t, dir, pebblestore.Options{FS: fsys}))
	})
	t.Run("honours its context", func(t *testing.T) {
		t.Parallel()
		var f faults
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f.set(func(op errorfs.Op) error {
			err := failSyncs(op)
			if err != nil && f.injected.Load() >= 3 {
				cancel() // a SIGTERM while the store waits for the disk
			}
			return err
		})
		log, _ := captureLog(t)
		opts := faultyOptions(errorfs.Wrap(vfs.Default, &f), log)
		opts.OpenAttempts = -1
		s, err := pebblestore.OpenContext(ctx, t.TempDir(), opts)
		if err == nil {
			s.Close()
			t.Fatal("open on a failing disk succeeded")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("open ended by its context: %v, want context.Canceled", err)
		}
	})
	t.Run("recovery flush fails", func(t *testing.T) {
		t.Parallel()
		// The WAL holds events to recover, the write probe passes, but the
		// tables of the recovery cannot be written: Pebble's open would
		// retry the flush for ever.
		dir := t.TempDir()
		var f faults
		fsys := errorfs.Wrap(vfs.Default, &f)
		l := newLedger(512)
		s := open(t, dir, pebblestore.Options{FS: fsys})
		for i := range 20 {
			l.must(t, s, fmt.Sprintf("call-%d", i%4), 2)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		f.set(tablesFull)
		log, lines := captureLog(t)
		opts := faultyOptions(fsys, log)
		opts.OpenAttempts = 2
		if s, err := pebblestore.OpenContext(context.Background(), dir, opts); err == nil {
			s.Close()
			t.Fatal("open whose recovery cannot be flushed succeeded")
		} else if !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("open whose recovery cannot be flushed: %v, want ErrUnavailable caused by ENOSPC", err)
		}
		if n := strings.Count(lines.String(), "pebble background error"); n != 1 {
			t.Errorf("the failed flushes were logged %d times within the interval, want once", n)
		}
		f.set(nil)
		// The abandoned open finishes once the disk heals, and lets go.
		var healed *pebblestore.Store
		waitFor(t, "the abandoned open lets go of the directory", func() bool {
			var err error
			healed, err = pebblestore.Open(dir, pebblestore.Options{FS: fsys, Logger: log})
			if err != nil && !errors.Is(err, pebblestore.ErrLocked) {
				t.Fatalf("open after the disk healed: %v", err)
			}
			return err == nil
		})
		defer healed.Close()
		l.check(t, healed)
	})
}

// TestTableWritesFail: when the tables of a flush cannot be written, the
// store refuses appends and fails its readiness (Pebble would soon stall
// every commit), logs the repeated failure once, and takes appends again
// by itself once the flush succeeds.
func TestTableWritesFail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var f faults
	log, lines := captureLog(t)
	opts := faultyOptions(errorfs.Wrap(vfs.Default, &f), log)
	opts.Pebble = func(_ string, o *pebble.Options) { o.MemTableSize = 1 << 20 }
	s := open(t, dir, opts)
	ctx := context.Background()
	l := newLedger(16 << 10)
	f.set(tablesFull)
	for i := 0; ; i++ {
		actx, cancel := context.WithTimeout(ctx, storetest.Deadline)
		err := l.try(actx, s, fmt.Sprintf("call-%d", i%5), 1)
		cancel()
		if err != nil {
			if !errors.Is(err, eventstore.ErrUnavailable) {
				t.Fatalf("append %d: %v, want ErrUnavailable", i, err)
			}
			break
		}
		if i == 2000 {
			t.Fatal("2000 appends of 16 KiB accepted while no table can be written")
		}
	}
	if err := s.Ping(ctx); !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Ping while flushes fail: %v, want ErrUnavailable caused by ENOSPC", err)
	}
	f.set(nil)
	waitFor(t, "flushes succeed again", func() bool { return s.Ping(ctx) == nil })
	l.must(t, s, "call-after", 1)
	l.retry(t, s)
	l.check(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	checkStore(t, dir, nil)
	l.check(t, openClosed(t, dir, pebblestore.Options{}))
	if n := strings.Count(lines.String(), "pebble background error"); n > 2 {
		t.Errorf("failed flushes logged %d times within the interval, want at most once per database", n)
	}
}

// TestCloseWhileBroken: a store whose disk still fails closes without
// waiting for it, and a later open on the healed disk has every
// acknowledged event.
func TestCloseWhileBroken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var f faults
	fsys := errorfs.Wrap(vfs.Default, &f)
	log, _ := captureLog(t)
	s := open(t, dir, faultyOptions(fsys, log))
	l := newLedger(32)
	l.must(t, s, "call-1", 2)
	f.set(failSyncs)
	if err := l.try(context.Background(), s, "call-1", 1); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append on a failing disk: %v, want ErrUnavailable", err)
	}
	_ = s.Close() // may report the WAL's failure; it must return
	if err := l.try(context.Background(), s, "call-1", 1); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("append after close: %v, want ErrUnavailable", err)
	}
	f.set(nil)
	after := openClosed(t, dir, pebblestore.Options{FS: fsys})
	l.check(t, after)
	l.retry(t, after)
	l.check(t, after)
}
