package readmodelload_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/readmodelload"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/server/servertest"
)

// TestLoadServes: a server started on the data directory answers GetCall
// for every call loaded, from its read model, with both legs of a tree (a
// last call without its child alone), and ListCalls lists them all.
func TestLoadServes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	const n = 5
	if err := readmodelload.Load(ctx, dir, n); err != nil {
		t.Fatal(err)
	}
	srv, _ := servertest.Start(t, server.Config{DataDir: dir})
	tok, err := server.ReadLocalAPIToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	client := callledgerv1.NewCallQueryServiceClient(grpctest.Dial(t, srv.Addrs().GRPC, grpctest.Token(tok)))
	for i := range n {
		resp, err := client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: readmodelload.SID(i)})
		if err != nil {
			t.Fatalf("GetCall %s: %v", readmodelload.SID(i), err)
		}
		want := 2
		if i == n-1 {
			want = 1 // its child would be call n
		}
		if len(resp.GetLegs()) != want {
			t.Errorf("GetCall %s: %d legs, want %d", readmodelload.SID(i), len(resp.GetLegs()), want)
		}
		if resp.GetPosition() < n {
			t.Errorf("GetCall %s: position %d, want at least the read model's checkpoint %d", readmodelload.SID(i), resp.GetPosition(), n)
		}
	}
	if err := readmodelload.Load(ctx, dir, 1); err == nil {
		t.Error("Load into a data directory with a read model: no error")
	}
	list, err := client.ListCalls(ctx, &callledgerv1.ListCallsRequest{PageSize: 100})
	if err != nil || len(list.GetCalls()) != n {
		t.Fatalf("ListCalls: %d calls, %v; want %d", len(list.GetCalls()), err, n)
	}
}

// TestLoadRefusesNone: an empty read model is no benchmark, and the
// refusal leaves no read model behind for a server to open.
func TestLoadRefusesNone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := readmodelload.Load(context.Background(), dir, 0); err == nil {
		t.Fatal("Load of 0 calls: no error")
	}
	if _, err := os.Stat(readmodelload.Dir(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after the refusal, %s: %v, want none", readmodelload.Dir(dir), err)
	}
}
