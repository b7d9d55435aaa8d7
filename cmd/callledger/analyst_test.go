package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/projections/callexport"
	"github.com/callledger/callledger/projections/callstore"
)

// rebuiltLine is what rebuild prints; the read model is of the code's
// projection version.
var rebuiltLine = regexp.MustCompile(fmt.Sprintf(`^rebuilt (v%d-\d+): (\d+) events, (\d+) calls, checkpoint (\d+)`, callstore.Version))

// TestLoadRebuildExport drives the analyst's commands on a data directory:
// load history, rebuild it offline, and export it from the read model and
// from the ledger, which must agree.
func TestLoadRebuildExport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := cli(t, "load", "--data-dir", dir, "--events", "3000", "--seed", "5"); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	out, err := cli(t, "rebuild", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	m := rebuiltLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rebuild printed %q", out)
	}
	calls, _ := strconv.Atoi(m[3])
	if events, _ := strconv.Atoi(m[2]); events < 3000 || calls == 0 || m[4] != m[2] {
		t.Errorf("rebuild: %q", out)
	}
	entries, err := os.ReadDir(server.ProjectionRoot(dir))
	if err != nil || len(entries) != 1 || entries[0].Name() != m[1] {
		t.Errorf("read models after rebuild: %v (%v), want only %s", entries, err, m[1])
	}
	// A second rebuild replaces the first.
	if out, err := cli(t, "rebuild", "--data-dir", dir); err != nil || !regexp.MustCompile(fmt.Sprintf(`^rebuilt v%d-2:`, callstore.Version)).MatchString(out) {
		t.Fatalf("second rebuild: %q, %v", out, err)
	}

	pq := filepath.Join(dir, "calls.parquet")
	if _, err := cli(t, "export", "--data-dir", dir, "--format", "parquet", "--out", pq); err != nil {
		t.Fatal(err)
	}
	rows, err := parquet.ReadFile[callexport.Row](pq)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != calls {
		t.Errorf("parquet holds %d rows, want one per call: %d", len(rows), calls)
	}
	for _, r := range rows {
		if r.CallSid == "" || r.RootCallSid == "" || r.Status == "" || r.StartTime == nil {
			t.Fatalf("incomplete row %+v", r)
		}
	}
	fromModel, fromLedger := filepath.Join(dir, "model.csv"), filepath.Join(dir, "ledger.csv")
	if _, err := cli(t, "export", "--data-dir", dir, "--format", "csv", "--out", fromModel); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "export", "--data-dir", dir, "--format", "csv", "--out", fromLedger, "--from-ledger"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(fromModel)
	b, _ := os.ReadFile(fromLedger)
	if len(a) == 0 || string(a) != string(b) {
		t.Errorf("export from the read model (%d bytes) and from the ledger (%d bytes) differ", len(a), len(b))
	}
	if _, err := cli(t, "export", "--data-dir", dir, "--format", "xml", "--out", fromModel); err == nil {
		t.Error("export --format xml: no error")
	}
}

// TestRebuildRefusesAHeldStore: a server holds the store, so the offline
// rebuild must refuse, saying why.
func TestRebuildRefusesAHeldStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	held, err := pebblestore.Open(filepath.Join(dir, "ledger"), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = cli(t, "rebuild", "--data-dir", dir)
	if !errors.Is(err, pebblestore.ErrLocked) {
		t.Fatalf("rebuild of a held store: %v, want ErrLocked", err)
	}
	if _, err := cli(t, "export", "--data-dir", dir, "--out", filepath.Join(dir, "x.csv"), "--format", "csv", "--from-ledger"); !errors.Is(err, pebblestore.ErrLocked) {
		t.Fatalf("export --from-ledger of a held store: %v, want ErrLocked", err)
	}
}

// TestServeRebuildsOnline: a running server reports its projection's
// status and rebuilds it on request, streaming progress to the switch.
func TestServeRebuildsOnline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := cli(t, "load", "--data-dir", dir, "--events", "2000"); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, dir, nil)
	conn := srv.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := callledgerv1.NewProjectionServiceClient(conn)
	queries := callledgerv1.NewCallQueryServiceClient(conn)

	var (
		st  *callledgerv1.GetProjectionStatusResponse
		err error
	)
	for {
		st, err = client.GetProjectionStatus(ctx, &callledgerv1.GetProjectionStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetCheckpoint()+st.GetLagEvents() != st.GetHead() {
			t.Errorf("checkpoint %d + lag %d != head %d", st.GetCheckpoint(), st.GetLagEvents(), st.GetHead())
		}
		if st.GetCaughtUp() && st.GetLagEvents() == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the catch-up, bounded by ctx
	}
	if st.GetVersion() != callstore.Version || st.GetCodeVersion() != callstore.Version || st.GetHead() < 2000 || st.GetReadModel() != fmt.Sprintf("v%d", callstore.Version) {
		t.Errorf("status %v", st)
	}
	if st.GetLag().AsDuration() != 0 {
		t.Errorf("caught up with a lag of %s", st.GetLag().AsDuration())
	}
	list, err := queries.ListCalls(ctx, &callledgerv1.ListCallsRequest{PageSize: 1})
	if err != nil || len(list.GetCalls()) != 1 {
		t.Fatalf("ListCalls: %v", err)
	}

	stream, err := client.RebuildProjection(ctx, &callledgerv1.RebuildProjectionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var last *callledgerv1.RebuildProjectionResponse
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if last != nil && msg.GetPhase() < last.GetPhase() {
			t.Errorf("phase went back from %v to %v", last.GetPhase(), msg.GetPhase())
		}
		last = msg
	}
	if last.GetPhase() != callledgerv1.RebuildPhase_REBUILD_PHASE_SWITCHED || last.GetEvents() != last.GetTarget() || last.GetCalls() == 0 {
		t.Errorf("last progress %v, want switched after every event", last)
	}
	st, err = client.GetProjectionStatus(ctx, &callledgerv1.GetProjectionStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("v%d-1", callstore.Version); st.GetReadModel() != want || st.GetRebuilding() {
		t.Errorf("status after the rebuild %v, want read model %s", st, want)
	}
	got, err := queries.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: list.GetCalls()[0].GetCallSid(), MinPosition: st.GetHead()})
	if err != nil || !got.GetCall().GetTerminal() {
		t.Errorf("GetCall after the rebuild: %v, %v", got, err)
	}
}
