// Package tracing exports OpenTelemetry traces of serve's requests over
// OTLP/gRPC. It is off unless asked for, so a default deployment pays
// nothing for it: serve wraps its handlers only when Enabled.
package tracing

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ServiceName is the service.name of every span, unless OTEL_SERVICE_NAME
// or OTEL_RESOURCE_ATTRIBUTES says otherwise.
const ServiceName = "callledger"

// Enabled reports whether traces are to be exported: an endpoint was
// given, or the standard OTLP endpoint variables are set.
func Enabled(endpoint string) bool {
	return endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Propagator reads and writes W3C trace context, so that a client's trace
// continues through callledger.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Start returns a tracer provider that batches spans to the OTLP/gRPC
// collector at endpoint (a URL such as http://collector:4317; http means
// no TLS), or, with endpoint empty, where the standard OTEL_EXPORTER_OTLP_*
// variables say. Its Shutdown flushes what is buffered; call it on exit.
func Start(ctx context.Context, endpoint string) (*sdktrace.TracerProvider, error) {
	var opts []otlptracegrpc.Option
	if endpoint != "" {
		opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.Merge(resource.NewSchemaless(attribute.String("service.name", ServiceName)), resource.Environment())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
