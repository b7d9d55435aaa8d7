package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/server"
)

// TestBackupUnderLoad backs up a server that keeps acknowledging
// webhooks: the backup holds every event acknowledged before it started
// (its ledger is gap-free up to at least the highest position answered
// by then), passes callledger's check, and a server started on it serves
// the calls it holds.
func TestBackupUnderLoad(t *testing.T) {
	t.Parallel()
	reqs, _, _ := mustCorpus(t)
	s := newStack(t)
	admin := callledgerv1.NewAdminServiceClient(dialServer(t, s.srv))
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()

	s.deliverAll(t, reqs[:len(reqs)/3])
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		during  atomic.Int64
		sends   = shuffledWithRetries(t, reqs)
		started = make(chan struct{})
	)
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			if i == len(sends)/4 {
				close(started)
			}
			r := sends[i%len(sends)]
			code, _, err := s.send(r)
			if err != nil || code != r.ExpectHTTP {
				t.Errorf("seq %d during the backup: %d %v, want %d", r.Seq, code, err, r.ExpectHTTP)
				return
			}
			during.Add(1)
		}
	})
	<-started
	before := s.seen() // every position answered before the backup starts
	dir := filepath.Join(t.TempDir(), "backup")
	resp, err := admin.Backup(ctx, &callledgerv1.BackupRequest{TargetDir: dir})
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if resp.GetPosition() < uint64(before) || resp.GetReadModel() == "" || resp.GetReadModelCheckpoint() > resp.GetPosition() {
		t.Errorf("Backup answered %v; %d was acknowledged before it started", resp, before)
	}
	if during.Load() == 0 {
		t.Error("no webhook was acknowledged during the backup")
	}

	report, err := pebblestore.Check(ctx, filepath.Join(dir, "ledger"), pebblestore.CheckOptions{})
	if err != nil || !report.OK() {
		t.Fatalf("check of the backup: %v %+v", err, report)
	}
	if report.Head < uint64(before) {
		t.Errorf("the backup ends at %d; %d was acknowledged before it started", report.Head, before)
	}

	// Restore: serve on the backup.
	restored := runServer(t, server.Config{DataDir: dir})
	head, err := restored.Store().Head(ctx)
	if err != nil || uint64(head) != report.Head {
		t.Fatalf("restored head %d %v, want %d", head, err, report.Head)
	}
	if err := restored.Projection().WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	page, err := callledgerv1.NewCallQueryServiceClient(dialServer(t, restored)).
		ListCalls(ctx, &callledgerv1.ListCallsRequest{PageSize: 1000})
	if err != nil || len(page.GetCalls()) == 0 {
		t.Fatalf("ListCalls on the restored server: %d calls, %v", len(page.GetCalls()), err)
	}
	// The personal data in the log is sealed: the backup holds the key
	// store (and, in development mode, the KEK), or the restored server
	// could not open a call's events.
	opened := 0
	for _, c := range page.GetCalls() {
		if c.GetFrom() == "" || opened >= 5 {
			continue
		}
		evs, err := callledgerv1.NewCallQueryServiceClient(dialServer(t, restored)).
			ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: c.GetCallSid()})
		if err != nil {
			t.Fatalf("ListCallEvents %s on the restored server: %v", c.GetCallSid(), err)
		}
		for _, se := range evs.GetEvents() {
			if se.GetEvent().GetRequest().GetBody() != nil || se.GetEvent().GetCloudEvent().GetRaw() != nil {
				opened++
				break
			}
		}
	}
	if opened == 0 {
		t.Error("no call's events open on the restored server: the backup lost the keys that seal them")
	}
}

// TestBackupRefusals: the target must be absolute and absent or empty;
// on KurrentDB the answer points at KurrentDB's own backups.
func TestBackupRefusals(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	s := newStack(t)
	admin := callledgerv1.NewAdminServiceClient(dialServer(t, s.srv))
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		want codes.Code
	}{
		{"", codes.InvalidArgument},
		{"relative/dir", codes.InvalidArgument},
		{full, codes.AlreadyExists},
		{filepath.Join(full, "keep"), codes.InvalidArgument},
	} {
		_, err := admin.Backup(ctx, &callledgerv1.BackupRequest{TargetDir: tc.dir})
		if status.Code(err) != tc.want {
			t.Errorf("Backup to %q: %v, want %v", tc.dir, err, tc.want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(full, "keep")); err != nil || string(b) != "x" {
		t.Errorf("a refused backup touched the target: %q %v", b, err)
	}
	empty := t.TempDir()
	if _, err := admin.Backup(ctx, &callledgerv1.BackupRequest{TargetDir: empty}); err != nil {
		t.Errorf("Backup to an empty directory: %v", err)
	}

	k := newStackOn(t, kurrentDB)
	_, err := callledgerv1.NewAdminServiceClient(dialServer(t, k.srv)).
		Backup(ctx, &callledgerv1.BackupRequest{TargetDir: t.TempDir()})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "deploy-kurrentdb.md") {
		t.Errorf("Backup on KurrentDB: %v, want FAILED_PRECONDITION pointing at docs/deploy-kurrentdb.md", err)
	}
}
