package instrument

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/callledger/callledger/eventstore"
)

// scope is the instrumentation scope of the store's spans.
const scope = "github.com/callledger/callledger/eventstore/instrument"

// Tracing returns s with a span around every append and stream read, the
// operations a request waits for, as children of the request's span. With
// tp nil it returns s itself: tracing that is off costs nothing.
func Tracing(s eventstore.Store, tp trace.TracerProvider) eventstore.Store {
	if tp == nil {
		return s
	}
	return decorate(&traced{Store: s, tracer: tp.Tracer(scope)}, s)
}

type traced struct {
	eventstore.Store
	tracer trace.Tracer
}

func (t *traced) Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	ctx, span := t.tracer.Start(ctx, "eventstore.Append", trace.WithAttributes(
		attribute.String("eventstore.stream", stream), attribute.Int("eventstore.events", len(events))))
	defer span.End()
	res, err := t.Store.Append(ctx, stream, expected, events...)
	if err != nil {
		fail(span, err)
		return res, err
	}
	span.SetAttributes(attribute.Int("eventstore.duplicates", len(res.Duplicates)),
		attribute.Int64("eventstore.position", int64(res.Position)))
	return res, nil
}

func (t *traced) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	ctx, span := t.tracer.Start(ctx, "eventstore.ReadStream", trace.WithAttributes(attribute.String("eventstore.stream", stream)))
	defer span.End()
	evs, err := t.Store.ReadStream(ctx, stream, from, limit)
	if err != nil {
		fail(span, err)
		return evs, err
	}
	span.SetAttributes(attribute.Int("eventstore.events", len(evs)))
	return evs, nil
}

// fail marks span failed with err, which names the stream and the store's
// reason, never an event's data.
func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}
