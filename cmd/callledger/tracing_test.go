package main

import (
	"context"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpctest"
)

// collector is an OTLP/gRPC trace collector that keeps what it receives.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracev1.Span
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.spans {
		out = append(out, s.GetName())
	}
	return out
}

// TestServeExportsTraces: with --otlp-endpoint, a webhook and a gRPC call
// each leave a span at the collector by the time serve has stopped, and
// the gRPC span continues the trace its client sent.
func TestServeExportsTraces(t *testing.T) {
	t.Setenv("TWILIO_AUTH_TOKEN", "")
	t.Setenv("TWILIO_AUTH_TOKEN_SECONDARY", "")
	col := &collector{}
	conn := grpctest.Serve(t, func(g grpc.ServiceRegistrar) { collectortrace.RegisterTraceServiceServer(g, col) })
	dir := t.TempDir()
	srv := serveInProcess(t, "--data-dir", dir, "--otlp-endpoint", "http://"+conn.Target())
	// Traced, the webhooks answer as they do untraced.
	if out, err := runCLI(t, "simulate", "--target", srv.httpURL, "--data-dir", dir, "--calls", "5", "--seed", "2"); err != nil {
		t.Fatalf("simulate through the traced handler: %v\n%s", err, out)
	}

	resp, err := http.Post(srv.httpURL+"/twilio/voice/status", "application/x-www-form-urlencoded", strings.NewReader("CallSid=CA00000000000000000000000000000001"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	client := callledgerv1.NewCallQueryServiceClient(srv.dial(t))
	if _, err := client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: "CA00000000000000000000000000000002"}); err == nil {
		t.Fatal("GetCall of an unknown call succeeded")
	}
	if err := srv.stop(); err != nil { // flushes the spans
		t.Fatalf("serve: %v", err)
	}

	names := col.names()
	if !slices.Contains(names, "POST /twilio/voice/status") {
		t.Errorf("no span of the webhook among %q", names)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	var found bool
	for _, s := range col.spans {
		if s.GetName() == "callledger.v1.CallQueryService/GetCall" {
			found = true
			if got := hex.EncodeToString(s.GetTraceId()); got != traceID {
				t.Errorf("GetCall span in trace %s, want the client's %s", got, traceID)
			}
		}
	}
	if !found {
		t.Errorf("no span of GetCall among %q", names)
	}
}
