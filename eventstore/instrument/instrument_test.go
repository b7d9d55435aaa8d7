package instrument_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/instrument"
	"github.com/callledger/callledger/eventstore/kurrentdb"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/eventstore/storetest"
	"github.com/callledger/callledger/metrics"
)

var quiet = slog.New(slog.DiscardHandler)

// openPebble opens an embedded store in dir, closed by the caller or the
// suite.
func openPebble(t testing.TB, dir string) *pebblestore.Store {
	t.Helper()
	s, err := pebblestore.Open(dir, pebblestore.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decorated is an embedded store under every decorator, as serve stacks
// them, with the registry and span recorder they report to.
func decorated(t testing.TB) (eventstore.Store, *prometheus.Registry, *tracetest.SpanRecorder) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.NewStore(reg)
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	inner := openPebble(t, t.TempDir())
	t.Cleanup(func() { inner.Close() })
	return instrument.Tracing(instrument.Metrics(inner, m), tp), reg, spans
}

// TestConformance: the decorators change nothing a caller of the port can
// see; the suite runs on an embedded store under all of them.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func(t *testing.T) eventstore.Store {
			m, err := metrics.NewStore(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
			s := instrument.Metrics(openPebble(t, dir), m)
			s = instrument.Tracing(s, tp)
			return instrument.Subscriptions(s, func(sub eventstore.Subscription) eventstore.Subscription { return sub })
		}
	})
}

func event() eventstore.EventData {
	return eventstore.EventData{ID: uuid.New(), Type: "Test", Data: []byte("x")}
}

// TestMetricsCountAppends: appends, failures, written events and
// duplicates are counted, and every append is timed.
func TestMetricsCountAppends(t *testing.T) {
	t.Parallel()
	s, reg, _ := decorated(t)
	ctx := context.Background()
	a, b := event(), event()
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), a, event()); err != nil { // one duplicate, one new
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "call-1", eventstore.Any()); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Fatalf("append without events: %v", err)
	}
	for name, want := range map[string]float64{
		"callledger_store_appends_total":          3,
		"callledger_store_append_errors_total":    1,
		"callledger_store_events_total":           3,
		"callledger_store_duplicate_events_total": 1,
	} {
		if got := counter(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n := testutil.CollectAndCount(reg, "callledger_store_append_seconds"); n != 1 {
		t.Fatalf("append_seconds: %d series", n)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "callledger_store_append_seconds" {
			if got := f.GetMetric()[0].GetHistogram().GetSampleCount(); got != 3 {
				t.Errorf("append_seconds counted %d appends, want 3", got)
			}
		}
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}

// TestTracingSpans: an append and a stream read leave a span each, child
// of the caller's, with what was written; a failed append is marked so.
func TestTracingSpans(t *testing.T) {
	t.Parallel()
	s, _, spans := decorated(t)
	tp := sdktrace.NewTracerProvider()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	a := event()
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadStream(ctx, "call-1", 0, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "", eventstore.Any(), event()); !errors.Is(err, eventstore.ErrInvalidArgument) {
		t.Fatalf("append to no stream: %v", err)
	}
	parent.End()

	ended := spans.Ended()
	var names []string
	for _, sp := range ended {
		names = append(names, sp.Name())
		if sp.Parent().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("%s is not in the caller's trace", sp.Name())
		}
	}
	if want := []string{"eventstore.Append", "eventstore.Append", "eventstore.ReadStream", "eventstore.Append"}; !slices.Equal(names, want) {
		t.Fatalf("spans %q, want %q", names, want)
	}
	attr := func(sp sdktrace.ReadOnlySpan, key string) attribute.Value {
		for _, kv := range sp.Attributes() {
			if string(kv.Key) == key {
				return kv.Value
			}
		}
		return attribute.Value{}
	}
	if first := ended[0]; attr(first, "eventstore.stream").AsString() != "call-1" || attr(first, "eventstore.events").AsInt64() != 1 ||
		attr(first, "eventstore.duplicates").AsInt64() != 0 || attr(first, "eventstore.position").AsInt64() != 1 {
		t.Errorf("first append's attributes: %v", first.Attributes())
	}
	if retry := ended[1]; attr(retry, "eventstore.duplicates").AsInt64() != 1 {
		t.Errorf("retried append's attributes: %v", retry.Attributes())
	}
	if read := ended[2]; attr(read, "eventstore.events").AsInt64() != 1 {
		t.Errorf("read's attributes: %v", read.Attributes())
	}
	if failed := ended[3]; failed.Status().Code != codes.Error || len(failed.Events()) == 0 {
		t.Errorf("failed append: status %v, events %v; want an error recorded", failed.Status(), failed.Events())
	}
	for _, sp := range ended[:3] {
		if sp.Status().Code == codes.Error {
			t.Errorf("%s failed: %v", sp.Name(), sp.Status())
		}
	}
}

// TestTracingOffWrapsNothing: without a tracer provider the store is
// returned as it is.
func TestTracingOffWrapsNothing(t *testing.T) {
	t.Parallel()
	s := openPebble(t, t.TempDir())
	defer s.Close()
	if got := instrument.Tracing(s, nil); got != eventstore.Store(s) {
		t.Errorf("Tracing(s, nil) = %T, want s itself", got)
	}
}

type pinger interface {
	Ping(context.Context) error
}

type visitor interface {
	VisitAll(ctx context.Context, from, to eventstore.Position, fn func(*eventstore.RecordedEvent) error) error
}

// TestEmbeddedCapabilities: under the decorators the embedded store still
// lends its events to rebuilds, answers readiness through the adapter's
// Ping, and Unwrap reaches it.
func TestEmbeddedCapabilities(t *testing.T) {
	t.Parallel()
	s, _, _ := decorated(t)
	ctx := context.Background()
	for range 3 {
		if _, err := s.Append(ctx, "call-1", eventstore.Any(), event()); err != nil {
			t.Fatal(err)
		}
	}
	p, ok := s.(pinger)
	if !ok {
		t.Fatal("the decorators hide the embedded store's Ping")
	}
	if err := p.Ping(ctx); err != nil {
		t.Errorf("Ping of a healthy embedded store: %v", err)
	}
	v, ok := s.(visitor)
	if !ok {
		t.Fatal("the decorators hide VisitAll")
	}
	var seen []eventstore.Position
	if err := v.VisitAll(ctx, 0, 3, func(e *eventstore.RecordedEvent) error { seen = append(seen, e.Position); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []eventstore.Position{1, 2, 3}) {
		t.Errorf("VisitAll saw %v", seen)
	}
	if _, ok := instrument.Unwrap(s).(*pebblestore.Store); !ok {
		t.Errorf("Unwrap = %T, want the adapter", instrument.Unwrap(s))
	}
}

// TestKurrentDBCapabilities: under the decorators KurrentDB keeps its Ping
// (and gets no VisitAll), and Unwrap reaches its Stats.
func TestKurrentDBCapabilities(t *testing.T) {
	t.Parallel()
	srv, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), storetest.Deadline)
	defer cancel()
	inner, err := kurrentdb.Open(ctx, srv.ConnString(), kurrentdb.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inner.Close() })
	m, err := metrics.NewStore(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := instrument.Tracing(instrument.Metrics(inner, m), sdktrace.NewTracerProvider())
	p, ok := s.(pinger)
	if !ok {
		t.Fatal("the decorators hide Ping")
	}
	if err := p.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if _, ok := s.(visitor); ok {
		t.Error("the decorated KurrentDB store has a VisitAll its adapter lacks")
	}
	k, ok := instrument.Unwrap(s).(*kurrentdb.Store)
	if !ok {
		t.Fatalf("Unwrap = %T, want the adapter", instrument.Unwrap(s))
	}
	_ = k.Stats()
}

// TestSubscriptionsHook: every subscription the store opens goes through
// the hook, and delivers what it would without it.
func TestSubscriptionsHook(t *testing.T) {
	t.Parallel()
	inner := openPebble(t, t.TempDir())
	defer inner.Close()
	var mu sync.Mutex
	var batches []eventstore.Batch
	s := instrument.Subscriptions(inner, func(sub eventstore.Subscription) eventstore.Subscription {
		return recording{sub, func(b eventstore.Batch) { mu.Lock(); batches = append(batches, b); mu.Unlock() }}
	})
	ctx, cancel := context.WithTimeout(context.Background(), storetest.Deadline)
	defer cancel()
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), event(), event()); err != nil {
		t.Fatal(err)
	}
	sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var got int
	for got < 2 {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got += len(b.Events)
	}
	mu.Lock()
	defer mu.Unlock()
	recorded := 0
	for _, b := range batches {
		recorded += len(b.Events)
	}
	if recorded != 2 {
		t.Errorf("the hook saw %d events of the 2 delivered", recorded)
	}
	if _, ok := s.(visitor); !ok {
		t.Error("the hook hides VisitAll")
	}
}

type recording struct {
	eventstore.Subscription
	saw func(eventstore.Batch)
}

func (r recording) Next(ctx context.Context) (eventstore.Batch, error) {
	b, err := r.Subscription.Next(ctx)
	if err == nil {
		r.saw(b)
	}
	return b, err
}

// Every combination of the optional capabilities survives decoration, and
// nothing is added; shown on stores that are nothing but their shape.
func TestCapabilityCombinations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		store        eventstore.Store
		ping, visits bool
	}{
		{"neither", bare{}, false, false},
		{"ping", withPing{}, true, false},
		{"visit", withVisit{}, false, true},
		{"both", withBoth{}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := metrics.NewStore(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			s := instrument.Tracing(instrument.Metrics(tc.store, m), sdktrace.NewTracerProvider())
			if _, ok := s.(pinger); ok != tc.ping {
				t.Errorf("Ping offered: %v, want %v", ok, tc.ping)
			}
			if _, ok := s.(visitor); ok != tc.visits {
				t.Errorf("VisitAll offered: %v, want %v", ok, tc.visits)
			}
			if instrument.Unwrap(s) != tc.store {
				t.Errorf("Unwrap = %T, want the store", instrument.Unwrap(s))
			}
		})
	}
}

type bare struct{ eventstore.Store }

type withPing struct{ eventstore.Store }

func (withPing) Ping(context.Context) error { return nil }

type withVisit struct{ eventstore.Store }

func (withVisit) VisitAll(context.Context, eventstore.Position, eventstore.Position, func(*eventstore.RecordedEvent) error) error {
	return nil
}

type withBoth struct{ eventstore.Store }

func (withBoth) Ping(context.Context) error { return nil }
func (withBoth) VisitAll(context.Context, eventstore.Position, eventstore.Position, func(*eventstore.RecordedEvent) error) error {
	return nil
}
