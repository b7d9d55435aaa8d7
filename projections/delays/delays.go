// Package delays keeps Twilio's delivery delays of recently received
// events in memory, for percentiles over a recent window (GetStats). It is
// fed by the call-state projection, so it sees every event of the log —
// whichever server received it — and not only this server's webhooks. It
// is disposable like any projection: after a restart it refills as events
// arrive (a catch-up replays older events, which fall outside any window
// and are skipped).
package delays

import (
	"slices"
	"sync"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

// Limits of a Window.
const (
	// DefaultCapacity is how many delays a window keeps: at 1 MiB of
	// memory, the newest 65,536 events.
	DefaultCapacity = 1 << 16
	// MaxAge is the longest window a query may ask for; older samples are
	// never kept.
	MaxAge = time.Hour
)

type sample struct {
	received int64 // Unix nanoseconds, server clock
	delay    time.Duration
}

// Window is a bounded ring of the newest delays. It is safe for
// concurrent use.
type Window struct {
	now  func() time.Time
	mu   sync.Mutex
	ring []sample
	next int
	full bool
}

// NewWindow returns a window of capacity samples (DefaultCapacity when not
// positive); now is the clock (time.Now when nil).
func NewWindow(capacity int, now func() time.Time) *Window {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	if now == nil {
		now = time.Now
	}
	return &Window{now: now, ring: make([]sample, capacity)}
}

// Observe adds the delay of one applied event when it carries both times
// and was received within MaxAge. Its signature fits the read model's
// per-event hook.
func (w *Window) Observe(ev *callledgerv1.Event) {
	rec, rep := ev.GetReceivedAt(), ev.GetReportedAt()
	if rec == nil || rep == nil {
		return
	}
	received := rec.AsTime()
	if w.now().Sub(received) > MaxAge {
		return
	}
	w.Add(received, received.Sub(rep.AsTime()))
}

// Add records one delay of an event received at received. A negative
// delay (Twilio's clock ahead of ours) counts as zero.
func (w *Window) Add(received time.Time, delay time.Duration) {
	s := sample{received: received.UnixNano(), delay: max(delay, 0)}
	w.mu.Lock()
	w.ring[w.next] = s
	w.next++
	if w.next == len(w.ring) {
		w.next, w.full = 0, true
	}
	w.mu.Unlock()
}

// Summary describes the delays of a window.
type Summary struct {
	Samples            int
	P50, P90, P99, Max time.Duration
}

// Summarize returns the percentiles (nearest rank) of the delays of events
// received within the last window (clamped to MaxAge).
func (w *Window) Summarize(window time.Duration) Summary {
	window = min(window, MaxAge)
	since := w.now().Add(-window).UnixNano()
	w.mu.Lock()
	n := w.next
	if w.full {
		n = len(w.ring)
	}
	ds := make([]time.Duration, 0, n)
	for _, s := range w.ring[:n] {
		if s.received >= since {
			ds = append(ds, s.delay)
		}
	}
	w.mu.Unlock()
	if len(ds) == 0 {
		return Summary{}
	}
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(ds))+0.999999999) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return Summary{Samples: len(ds), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: ds[len(ds)-1]}
}
