package e2e_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/rebuild"
)

// TestRebuildEqualsLive ingests the capture corpus, shuffled and with
// duplicates, through the running service (HTTP webhooks, the versioned
// read model, gRPC, as serve builds them); then rebuilds the projection from
// position 0, offline into a directory of its own and online through
// ProjectionService, and both equal the live read model record for
// record.
func TestRebuildEqualsLive(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	srv := runServer(t, server.Config{})
	events, calls := srv.Store(), srv.Projection()
	conn := dialServer(t, srv)
	s := &stack{url: "http://" + srv.Addrs().HTTP, httpc: &http.Client{Timeout: failBound}, client: callledgerv1.NewCallQueryServiceClient(conn)}

	reqs, exp, _ := mustCorpus(t)
	s.deliverAll(t, shuffledWithRetries(t, reqs))
	if t.Failed() {
		t.FailNow()
	}
	// Read-your-writes over gRPC: the live read model has applied every
	// acknowledged request.
	if _, err := s.getCall(ctx, exp[0].CallSid); err != nil {
		t.Fatal(err)
	}
	head, err := events.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := calls.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	live := records(t, calls.Current())
	if len(live) < len(exp) {
		t.Fatalf("live read model holds %d calls, corpus expects %d", len(live), len(exp))
	}

	// Offline: from zero into a directory of its own.
	dir := filepath.Join(t.TempDir(), "rebuilt")
	// The log's personal data is sealed: the rebuild opens it with the
	// server's key store, as the server's own rebuilds do.
	if _, err := rebuild.Build(ctx, events, dir, rebuild.Options{BatchSize: 64, Personal: srv.Personal()}); err != nil {
		t.Fatal(err)
	}
	rebuilt, err := callstore.Open(dir, callstore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rebuilt.Close()
	sameRecords(t, "offline rebuild", live, records(t, rebuilt))

	// Online: ProjectionService rebuilds and switches.
	stream, err := callledgerv1.NewProjectionServiceClient(conn).RebuildProjection(ctx, &callledgerv1.RebuildProjectionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if msg.GetPhase() == callledgerv1.RebuildPhase_REBUILD_PHASE_SWITCHED && msg.GetTarget() != uint64(head) {
			t.Errorf("rebuilt up to %d, head is %d", msg.GetTarget(), head)
		}
	}
	if calls.CurrentName() != fmt.Sprintf("v%d-1", callstore.Version) {
		t.Fatalf("serving %s after the online rebuild", calls.CurrentName())
	}
	sameRecords(t, "online rebuild", live, records(t, calls.Current()))
	for _, e := range exp {
		resp, err := s.getCall(ctx, e.CallSid)
		if err != nil {
			t.Errorf("%s after the online rebuild: %v", e.CallSid, err)
			continue
		}
		checkExpected(t, e, resp.GetCall())
	}
}

type recordSource interface {
	Records(ctx context.Context, fn func(*statev1.CallRecord) error) error
}

func records(t *testing.T, src recordSource) []*statev1.CallRecord {
	t.Helper()
	var out []*statev1.CallRecord
	if err := src.Records(context.Background(), func(r *statev1.CallRecord) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameRecords(t *testing.T, what string, live, rebuilt []*statev1.CallRecord) {
	t.Helper()
	if len(live) != len(rebuilt) {
		t.Fatalf("%s: %d records, live has %d", what, len(rebuilt), len(live))
	}
	for i := range live {
		if !proto.Equal(live[i], rebuilt[i]) {
			t.Errorf("%s: record %s differs:\nlive    %v\nrebuilt %v", what, live[i].GetCallSid(), live[i], rebuilt[i])
		}
	}
}
