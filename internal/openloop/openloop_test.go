package openloop_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/callledger/callledger/internal/openloop"
)

var errOdd = errors.New("refused")

// TestRunSendsEachOnce: every request is sent exactly once, from a caller
// in range; failures are counted, not fatal; each request has a latency
// and a lateness, sorted.
func TestRunSendsEachOnce(t *testing.T) {
	t.Parallel()
	const n, callers = 600, 8
	var mu sync.Mutex
	seen := make([]int, n)
	res, err := openloop.Run(context.Background(), openloop.Config{Rate: 5000, Requests: n, Callers: callers},
		func(_ context.Context, caller, i int) error {
			if caller < 0 || caller >= callers {
				t.Errorf("request %d from caller %d of %d", i, caller, callers)
			}
			mu.Lock()
			seen[i]++
			mu.Unlock()
			if i%10 == 3 {
				return errOdd
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range seen {
		if c != 1 {
			t.Errorf("request %d sent %d times", i, c)
		}
	}
	if res.Requests != n || len(res.Latency) != n || len(res.Late) != n {
		t.Errorf("Requests %d, %d latencies, %d lateness; want %d each", res.Requests, len(res.Latency), len(res.Late), n)
	}
	if res.Errors != n/10 || !errors.Is(res.FirstErr, errOdd) {
		t.Errorf("Errors %d (first %v), want %d (%v)", res.Errors, res.FirstErr, n/10, errOdd)
	}
	if !slices.IsSorted(res.Latency) || !slices.IsSorted(res.Late) {
		t.Error("Latency or Late not sorted")
	}
	if res.SendSpan <= 0 || res.Elapsed < res.SendSpan || res.SentPerSecond() <= 0 {
		t.Errorf("SendSpan %v, Elapsed %v, SentPerSecond %v", res.SendSpan, res.Elapsed, res.SentPerSecond())
	}
	if _, ok := res.CPUPerRequest(); ok != res.CPUMeasured {
		t.Errorf("CPUPerRequest known %v, CPUMeasured %v", ok, res.CPUMeasured)
	}
}

// TestRunLateWhenBehind: with one caller held up by the first request,
// the next one is sent long after it was due, and both show it: a stall is
// not hidden as a closed loop would hide it.
func TestRunLateWhenBehind(t *testing.T) {
	t.Parallel()
	const stall = 50 * time.Millisecond
	res, err := openloop.Run(context.Background(), openloop.Config{Rate: 1000, Requests: 3, Callers: 1},
		func(_ context.Context, _, i int) error {
			if i == 0 {
				time.Sleep(stall)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	// Request 1 was due 1 ms after the start and could not be sent before
	// request 0 answered, at least stall after the start.
	if late := openloop.Quantile(res.Late, 1); late < stall-time.Millisecond {
		t.Errorf("most late %v, want at least %v", late, stall-time.Millisecond)
	}
	if slowest := openloop.Quantile(res.Latency, 1); slowest < stall {
		t.Errorf("slowest %v, want at least %v", slowest, stall)
	}
}

// TestRunStopsWithContext: once ctx ends no more requests go out and Run
// says why, with what it measured so far.
func TestRunStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 1_000_000 // 1000 s at this rate, unless stopped
	res, err := openloop.Run(ctx, openloop.Config{Rate: 1000, Requests: n, Callers: 4},
		func(ctx context.Context, _, i int) error {
			if i == 5 {
				cancel()
			}
			return ctx.Err()
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if res.Requests < 6 || res.Requests >= n || len(res.Late) != res.Requests {
		t.Errorf("Requests %d (%d lateness), want from 6 to fewer than %d", res.Requests, len(res.Late), n)
	}
}

// TestRunRefusesNonsense: the config is checked before anything is sent.
func TestRunRefusesNonsense(t *testing.T) {
	t.Parallel()
	for _, cfg := range []openloop.Config{
		{Rate: 0, Requests: 1},
		{Rate: 2_000_000, Requests: 1},
		{Rate: 10, Requests: 0},
		{Rate: 10, Requests: 1, Callers: -1},
	} {
		_, err := openloop.Run(context.Background(), cfg, func(context.Context, int, int) error {
			t.Errorf("%+v: sent", cfg)
			return nil
		})
		if err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

// TestQuantile: the element at ⌊len·q⌋, exactly for the usual quantiles.
func TestQuantile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i)
	}
	for _, tc := range []struct {
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{nil, 0.5, 0},
		{hundred, 0, time.Millisecond},
		{hundred, 0.5, 51 * time.Millisecond},
		{hundred, 0.9, 91 * time.Millisecond},
		{hundred, 0.99, 100 * time.Millisecond}, // index 99: 0.99*100 is 98.999… in floating point
		{hundred, 1, 100 * time.Millisecond},
		{hundred, 2, 100 * time.Millisecond},
		{hundred, -1, time.Millisecond},
		{thousand, 0.999, 999},
		{thousand, 0.99, 990},
		{[]time.Duration{7}, 0.99, 7},
	} {
		if got := openloop.Quantile(tc.sorted, tc.q); got != tc.want {
			t.Errorf("Quantile(%d durations, %v) = %v, want %v", len(tc.sorted), tc.q, got, tc.want)
		}
	}
}
