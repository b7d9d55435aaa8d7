package freespace_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/freespace"
	"github.com/callledger/callledger/eventstore/instrument"
	"github.com/callledger/callledger/eventstore/pebblestore"
)

// disk is an injected statfs: its free space is set by hand.
type disk struct {
	mu    sync.Mutex
	sp    freespace.Space
	err   error
	calls int
}

func (d *disk) stat(string) (freespace.Space, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	return d.sp, d.err
}

func (d *disk) set(free uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sp.Free = free
}

const mib = 1 << 20

func TestDefaultMin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		total, want uint64
	}{
		{100 << 30, 1 << 30},  // 5 % is 5 GiB: capped at 1 GiB
		{10 << 30, 512 * mib}, // 5 % of 10 GiB
		{1 << 30, 128 * mib},  // 5 % is 51 MiB: Pebble's headroom
		{10 * mib, 128 * mib}, // a filesystem smaller than the headroom is always low
		{20 << 30, 1 << 30},
	} {
		if got := freespace.DefaultMin(tc.total); got != tc.want {
			t.Errorf("DefaultMin(%d) = %d, want %d", tc.total, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{
		"0": 0, "512MiB": 512 * mib, "2GB": 2_000_000_000, "1GiB": 1 << 30, "1.5GiB": 3 << 29,
		"4096": 4096, "100 MB": 100_000_000, "64kib": 64 << 10,
	} {
		got, err := freespace.ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1GB", "1XB", "GB"} {
		if n, err := freespace.ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "512MiB", "2GB", "1.5 GiB", "-3", "9999999999999999999999EB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := freespace.ParseSize(s)
		if err != nil {
			if !strings.Contains(err.Error(), "want bytes") {
				t.Errorf("error %q does not say what is wanted", err)
			}
			return
		}
		if back, err := freespace.ParseSize(freespace.FormatSize(n)); err != nil && n < 1<<60 {
			t.Errorf("FormatSize(%d) = %q does not parse back: %v", n, freespace.FormatSize(n), err)
		} else if err == nil && n < 1<<40 && (back > n+n/10+1 || back+back/10+1 < n) {
			t.Errorf("%d formatted and parsed back is %d", n, back)
		}
	})
}

// TestGuardTripsAndResumes: below the watermark the guard refuses with an
// error that is ErrUnavailable and says how much is free; it lets appends
// through again only a little above the watermark, so that it does not flip
// at every reading.
func TestGuardTripsAndResumes(t *testing.T) {
	t.Parallel()
	d := &disk{sp: freespace.Space{Free: 500 * mib, Total: 1 << 30}}
	g, err := freespace.New(freespace.Options{Dir: "/data", Min: 100 * mib, Stat: d.stat})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Err(); err != nil {
		t.Fatalf("500 MiB free: %v", err)
	}
	steps := []struct {
		free uint64
		low  bool
	}{
		{100 * mib, false},  // at the watermark: still room
		{100*mib - 1, true}, // below it
		{50 * mib, true},    //
		{103 * mib, true},   // back above, within the margin: still refused
		{105 * mib, false},  // past the margin (5 %)
		{104 * mib, false},  // within the margin from above: room
		{10 * mib, true},    //
		{900 * mib, false},  //
	}
	for i, st := range steps {
		d.set(st.free)
		g.Check()
		err := g.Err()
		if (err != nil) != st.low {
			t.Fatalf("step %d (%d MiB free): Err = %v, want low %v", i, st.free/mib, err, st.low)
		}
		if s := g.State(); s.Low != st.low || s.Free != st.free || s.Min != 100*mib || s.Total != 1<<30 {
			t.Errorf("step %d: State %+v", i, s)
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, freespace.ErrLowSpace) {
			t.Errorf("step %d: %v is not ErrUnavailable and ErrLowSpace", i, err)
		}
		if !strings.Contains(err.Error(), "--min-free-space") || !strings.Contains(err.Error(), "100 MiB") {
			t.Errorf("step %d: %q does not name the watermark", i, err)
		}
	}
}

// TestGuardKeepsLastReading: a failed statfs keeps what was last read.
func TestGuardKeepsLastReading(t *testing.T) {
	t.Parallel()
	d := &disk{sp: freespace.Space{Free: 10 * mib, Total: 1 << 30}}
	g, err := freespace.New(freespace.Options{Dir: "/data", Min: 100 * mib, Stat: d.stat})
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.err, d.sp.Free = errors.New("EIO"), 900*mib
	d.mu.Unlock()
	g.Check()
	if g.Err() == nil {
		t.Error("a failed reading let appends through")
	}
	if _, err := freespace.New(freespace.Options{Dir: "/data", Stat: d.stat}); err == nil {
		t.Error("New with a failing statfs succeeded")
	}
}

// TestGuardDefaultFromFilesystem: with no watermark set it is DefaultMin
// of the filesystem's size.
func TestGuardDefaultFromFilesystem(t *testing.T) {
	t.Parallel()
	d := &disk{sp: freespace.Space{Free: 600 * mib, Total: 10 << 30}}
	g, err := freespace.New(freespace.Options{Dir: "/data", Stat: d.stat})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.State().Min; got != 512*mib {
		t.Errorf("watermark %d MiB, want 512", got/mib)
	}
}

// TestRunPolls: Run reads the free space every interval, not per append.
func TestRunPolls(t *testing.T) {
	t.Parallel()
	d := &disk{sp: freespace.Space{Free: 900 * mib, Total: 1 << 30}}
	g, err := freespace.New(freespace.Options{Dir: "/data", Min: 100 * mib, Stat: d.stat, Interval: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	d.set(mib)
	for g.Err() == nil {
		// Run sees the new reading; the test's timeout bounds the wait.
	}
	cancel()
	<-done
}

// TestGuardedStore: on a real store, appends below the watermark are
// refused before the store (its head does not move), Ping fails, reads go
// on, and appends resume with space; VisitAll and Unwrap are kept.
func TestGuardedStore(t *testing.T) {
	t.Parallel()
	inner, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	d := &disk{sp: freespace.Space{Free: 900 * mib, Total: 1 << 30}}
	g, err := freespace.New(freespace.Options{Dir: "/data", Min: 100 * mib, Stat: d.stat})
	if err != nil {
		t.Fatal(err)
	}
	s := freespace.Guarded(inner, g)
	if instrument.Unwrap(s) != inner {
		t.Error("Unwrap does not reach the store")
	}
	if _, ok := s.(interface {
		VisitAll(context.Context, eventstore.Position, eventstore.Position, func(*eventstore.RecordedEvent) error) error
	}); !ok {
		t.Error("VisitAll lost")
	}
	ping := s.(interface{ Ping(context.Context) error }).Ping
	ctx := context.Background()
	ev := func() eventstore.EventData { return eventstore.EventData{ID: uuid.New(), Type: "T", Data: []byte("x")} }
	if _, err := s.Append(ctx, "s-1", eventstore.Any(), ev()); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx); err != nil {
		t.Fatalf("Ping with room: %v", err)
	}

	d.set(mib)
	g.Check()
	if _, err := s.Append(ctx, "s-1", eventstore.Any(), ev()); !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, freespace.ErrLowSpace) {
		t.Fatalf("append with the disk full: %v", err)
	}
	if head, _ := inner.Head(ctx); head != 1 {
		t.Errorf("head %d after a refused append, want 1", head)
	}
	if err := ping(ctx); !errors.Is(err, freespace.ErrLowSpace) {
		t.Errorf("Ping with the disk full: %v", err)
	}
	if evs, err := s.ReadStream(ctx, "s-1", 0, 10); err != nil || len(evs) != 1 {
		t.Errorf("read with the disk full: %d events, %v", len(evs), err)
	}

	d.set(900 * mib)
	g.Check()
	if _, err := s.Append(ctx, "s-1", eventstore.Any(), ev()); err != nil {
		t.Fatalf("append once space is back: %v", err)
	}
	if err := ping(ctx); err != nil {
		t.Errorf("Ping once space is back: %v", err)
	}
}
