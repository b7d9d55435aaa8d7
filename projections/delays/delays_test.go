package delays_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/delays"
)

func TestSummarize(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	w := delays.NewWindow(1000, func() time.Time { return now })
	if got := w.Summarize(time.Minute); got != (delays.Summary{}) {
		t.Errorf("empty window: %+v", got)
	}
	// 100 recent events with delays 1..100 ms, and older ones that a
	// one-minute window leaves out.
	for i := 1; i <= 100; i++ {
		w.Add(now.Add(-30*time.Second), time.Duration(i)*time.Millisecond)
	}
	for range 50 {
		w.Add(now.Add(-10*time.Minute), time.Hour)
	}
	got := w.Summarize(time.Minute)
	want := delays.Summary{Samples: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("one minute: %+v, want %+v", got, want)
	}
	if got := w.Summarize(time.Hour); got.Samples != 150 || got.Max != time.Hour {
		t.Errorf("one hour: %+v", got)
	}
}

func TestRingKeepsNewest(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	w := delays.NewWindow(10, func() time.Time { return now })
	for i := range 25 {
		w.Add(now, time.Duration(i)*time.Second)
	}
	got := w.Summarize(time.Minute)
	if got.Samples != 10 || got.P50 != 19*time.Second || got.Max != 24*time.Second {
		t.Errorf("after overflow: %+v, want the newest 10 (15s..24s)", got)
	}
}

func TestObserve(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	w := delays.NewWindow(10, func() time.Time { return now })
	ev := func(received, reported time.Time) *callledgerv1.Event {
		e := &callledgerv1.Event{ReceivedAt: timestamppb.New(received)}
		if !reported.IsZero() {
			e.ReportedAt = timestamppb.New(reported)
		}
		return e
	}
	w.Observe(ev(now.Add(-time.Second), now.Add(-3*time.Second))) // 2s
	w.Observe(ev(now.Add(-time.Second), time.Time{}))             // no Twilio time
	w.Observe(ev(now.Add(-2*time.Hour), now.Add(-3*time.Hour)))   // older than MaxAge
	w.Observe(ev(now.Add(-time.Second), now.Add(4*time.Second)))  // Twilio's clock ahead: 0
	got := w.Summarize(time.Minute)
	if got.Samples != 2 || got.Max != 2*time.Second || got.P50 != 0 {
		t.Errorf("observed: %+v, want two samples, 0 and 2s", got)
	}
}
