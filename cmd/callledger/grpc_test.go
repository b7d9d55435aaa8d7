package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/traffic"
)

// TestServeAnswersQueries: a running serve lists its services through
// reflection (what `grpcurl -plaintext … list` shows), reports the query
// service healthy once caught up, and serves what simulate sent.
func TestServeAnswersQueries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir, nil)
	conn := srv.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := refl.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"callledger.v1.CallQueryService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}

	health := healthpb.NewHealthClient(conn)
	for {
		h, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "callledger.v1.CallQueryService"})
		if err == nil && h.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("query service never became SERVING: %v %v", h, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if out, err := cli(t, "simulate", "--target", srv.httpURL, "--data-dir", dir, "--calls", "20", "--seed", "4"); err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	queries := callledgerv1.NewCallQueryServiceClient(conn)
	reqs := traffic.Generate(traffic.Config{Calls: 20, Seed: 4, PublicURL: "x", Token: "x"})
	for _, r := range reqs {
		// Everything simulate sent was acknowledged, so it is in the log;
		// the read model may trail it by a moment.
		var got *callledgerv1.GetCallResponse
		for {
			got, err = queries.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: r.CallSid})
			if err == nil && got.GetCall().GetTerminal() {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("GetCall %s: %v, %v; want a terminal call", r.CallSid, got, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	_, err = queries.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: "CA00000000000000000000000000000000"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetCall of an unknown call: %v, want NOT_FOUND", err)
	}
}
