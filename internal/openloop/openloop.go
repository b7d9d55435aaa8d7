// Package openloop sends requests at a fixed rate, open loop: each request
// is due at its own time whether or not earlier ones have answered. A slow
// answer then does not hold back the requests after it, as it would in a
// closed loop (where a stall slows the callers down and so hides itself),
// and the latencies are those a client sees at that rate. Latency counts
// from when a request was sent; how far behind its due time the sender was
// ("late") grows once the server, or the sender, cannot keep up.
//
// The GetCall benchmarks use it, in one process with the server
// (e2e.BenchmarkGetCallAtRate) and from a process of their own
// (`ingestbench getcall`), so that both send alike.
package openloop

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/callledger/callledger/internal/cputime"
)

// DefaultCallers is enough callers that a request never waits for a free
// one unless the server is behind: at 20,000/s and 1 ms each, about 20 are
// busy.
const DefaultCallers = 256

// Config says what to send.
type Config struct {
	// Rate is the requests due per second (at most a million).
	Rate int
	// Requests is how many to send: they take Requests / Rate seconds.
	Requests int
	// Callers send concurrently (default DefaultCallers).
	Callers int
}

// Send sends request i (0 ≤ i < Requests) from caller (0 ≤ caller <
// Callers), and returns its error. Callers may pick a connection by their
// index; many run at once.
type Send func(ctx context.Context, caller, i int) error

// Result is what a run measured.
type Result struct {
	// Requests is how many were sent (all of them, unless ctx ended).
	Requests int
	// Latency holds every request's time from send to answer, sorted.
	Latency []time.Duration
	// Late holds, for every request, how long after its due time it was
	// sent, sorted.
	Late []time.Duration
	// Errors counts the requests that failed; FirstErr is one of them.
	Errors   int
	FirstErr error
	// SendSpan runs from the first request's due time to the last send;
	// Elapsed to the last answer.
	SendSpan, Elapsed time.Duration
	// CPU is what the whole process used from the first send to the last
	// answer (senders and whatever else it runs); CPUMeasured is false
	// where the system does not say.
	CPU         time.Duration
	CPUMeasured bool
}

// SentPerSecond is the rate the requests went out at: the requests after
// the first per second of SendSpan (0 for fewer than two).
func (r Result) SentPerSecond() float64 {
	if r.Requests < 2 || r.SendSpan <= 0 {
		return 0
	}
	return float64(r.Requests-1) / r.SendSpan.Seconds()
}

// CPUPerRequest is CPU divided by the requests sent; false when either is
// unknown or zero.
func (r Result) CPUPerRequest() (time.Duration, bool) {
	if !r.CPUMeasured || r.Requests == 0 {
		return 0, false
	}
	return r.CPU / time.Duration(r.Requests), true
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted: the element at
// index ⌊len·q⌋, the last for q = 1, and 0 when sorted is empty. q is
// taken in millionths, so that 0.99 of 100 is index 99, not the 98 that
// floating point would give.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	ppm := int(math.Round(min(max(q, 0), 1) * 1e6))
	return sorted[min(len(sorted)*ppm/1_000_000, len(sorted)-1)]
}

// Run sends cfg.Requests requests through send at cfg.Rate per second,
// the first at once, and waits for the last answer. A failed request is
// counted, not fatal. When ctx ends it stops sending, waits for the
// requests in flight and returns what it measured with ctx's error.
func Run(ctx context.Context, cfg Config, send Send) (Result, error) {
	callers := cmp.Or(cfg.Callers, DefaultCallers)
	switch {
	case cfg.Rate <= 0 || cfg.Rate > 1_000_000:
		return Result{}, fmt.Errorf("openloop: rate %d per second: want 1 to 1,000,000", cfg.Rate)
	case cfg.Requests <= 0:
		return Result{}, fmt.Errorf("openloop: %d requests: want at least one", cfg.Requests)
	case callers < 0:
		return Result{}, fmt.Errorf("openloop: %d callers: want at least one", callers)
	}
	type job struct {
		i   int
		due time.Time
	}
	type tally struct {
		latency, late []time.Duration
		errors        int
		firstErr      error
		lastSent      time.Time
	}
	jobs := make(chan job, callers)
	tallies := make([]tally, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			t := tally{
				latency: make([]time.Duration, 0, cfg.Requests/callers+1),
				late:    make([]time.Duration, 0, cfg.Requests/callers+1),
			}
			for j := range jobs {
				sent := time.Now()
				t.late = append(t.late, sent.Sub(j.due))
				if err := send(ctx, c, j.i); err != nil {
					t.errors++
					if t.firstErr == nil {
						t.firstErr = err
					}
				}
				t.latency = append(t.latency, time.Since(sent))
				t.lastSent = sent
			}
			tallies[c] = t
		})
	}

	interval := time.Second / time.Duration(cfg.Rate)
	cpu0, cpuOK := cputime.Process()
	start := time.Now()
	var err error
	for i := 0; i < cfg.Requests; {
		if err = ctx.Err(); err != nil {
			break
		}
		dueNow := min(cfg.Requests, int(time.Since(start)/interval)+1)
		for ; i < dueNow; i++ {
			jobs <- job{i: i, due: start.Add(time.Duration(i) * interval)}
		}
		time.Sleep(100 * time.Microsecond)
	}
	close(jobs)
	wg.Wait()
	res := Result{Elapsed: time.Since(start)}
	if cpu1, ok := cputime.Process(); ok && cpuOK {
		res.CPU, res.CPUMeasured = cpu1-cpu0, true
	}

	var latency, late [][]time.Duration
	for _, t := range tallies {
		latency, late = append(latency, t.latency), append(late, t.late)
		res.Errors += t.errors
		if res.FirstErr == nil {
			res.FirstErr = t.firstErr
		}
		if len(t.late) > 0 {
			res.SendSpan = max(res.SendSpan, t.lastSent.Sub(start))
		}
	}
	res.Latency, res.Late = slices.Concat(latency...), slices.Concat(late...)
	slices.Sort(res.Latency)
	slices.Sort(res.Late)
	res.Requests = len(res.Latency)
	if err != nil {
		return res, fmt.Errorf("openloop: stopped after %d of %d requests: %w", res.Requests, cfg.Requests, err)
	}
	return res, nil
}
