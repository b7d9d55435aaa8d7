package e2e_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/freespace"
	"github.com/callledger/callledger/internal/server"
)

// These tests fill the ledger's disk past the free-space watermark under
// the whole service: webhooks get 503 with Retry-After (never a 2xx), the
// process stays up, /readyz fails, commands are UNAVAILABLE, queries go
// on; once space is freed, the same process takes webhooks again.

// fakeDisk is an injected statfs whose free space the test sets.
type fakeDisk struct {
	mu   sync.Mutex
	free uint64
}

func (d *fakeDisk) stat(string) (freespace.Space, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return freespace.Space{Free: d.free, Total: 100 << 30}, nil
}

func (d *fakeDisk) set(free uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.free = free
}

// TestDiskFullInjected runs the disk-full scenario on an injected statfs.
func TestDiskFullInjected(t *testing.T) {
	t.Parallel()
	disk := &fakeDisk{free: 50 << 30}
	s := newStackWith(t, embedded, server.Config{
		Disk:  server.Disk{MinFreeBytes: 1 << 30, CheckInterval: 10 * time.Millisecond},
		Seams: server.Seams{Statfs: disk.stat},
	})
	diskFullScenario(t, s, func() { disk.set(100 << 20) }, func() { disk.set(50 << 30) })
}

// TestDiskFullTmpfs runs the scenario on a real 256 MiB filesystem (a
// tmpfs mounted for the test), filled with a file past the watermark and
// freed by deleting it. Mounting needs root (CI runs as root); the test is
// skipped only where mounting is impossible.
func TestDiskFullTmpfs(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("tmpfs mounts are a Linux test")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=256m,mode=0700"); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("cannot mount a tmpfs here (%v): the injected-statfs test covers the logic", err)
		}
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	const watermark = 96 << 20
	s := newStackWith(t, embedded, server.Config{
		DataDir: filepath.Join(mnt, "data"),
		// The default interval (1 s): the recovery time logged is serve's.
		Disk: server.Disk{MinFreeBytes: watermark},
	})
	filler := filepath.Join(mnt, "filler")
	fill := func() {
		sp, err := freespace.Stat(mnt)
		if err != nil {
			t.Fatal(err)
		}
		// Leave 32 MiB: well below the watermark, room for Pebble.
		if sp.Free <= 32<<20 {
			t.Fatalf("only %d bytes free on the test filesystem before filling it", sp.Free)
		}
		f, err := os.Create(filler)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(sp.Free-32<<20)); err != nil {
			t.Fatalf("fill the disk: %v", err)
		}
	}
	free := func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
	diskFullScenario(t, s, fill, free)
}

// diskFullScenario delivers half the corpus, fills the disk, checks what
// Twilio, probes, commands and queries see, frees the disk, and delivers
// everything (Twilio's retries and the rest): the read model must end as
// if nothing had happened.
func diskFullScenario(t *testing.T, s *stack, fill, free func()) {
	reqs, exp, abs := mustCorpus(t)
	half := len(reqs) / 2
	s.deliverAll(t, reqs[:half])
	if t.Failed() {
		t.FailNow()
	}
	s.waitReady(t)
	if got := s.metric(t, "callledger_disk_full"); got != "0" {
		t.Errorf("callledger_disk_full %s with room, want 0", got)
	}
	// Served beside it: nothing in flight, nothing waiting.
	if got := s.metric(t, "callledger_webhook_oldest_append_wait_seconds"); got != "0" {
		t.Errorf("callledger_webhook_oldest_append_wait_seconds %s with nothing in flight, want 0", got)
	}

	fill()
	s.waitStatus(t, "/readyz", http.StatusServiceUnavailable)
	refused := 0
	for _, r := range reqs[half:] {
		if r.ExpectHTTP/100 != 2 {
			continue
		}
		resp, err := s.post(r)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("seq %d with the disk full: HTTP %d, Retry-After %q; want 503 with Retry-After",
				r.Seq, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if refused++; refused == 5 {
			break
		}
	}
	if code, err := s.get("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz with the disk full: %d %v: the process must stay up", code, err)
	}
	if got := s.metric(t, "callledger_disk_full"); got != "1" {
		t.Errorf("callledger_disk_full %s with the disk full, want 1", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	cmds := callledgerv1.NewCallCommandServiceClient(dialServer(t, s.srv))
	_, err := cmds.RequestHangup(ctx, &callledgerv1.RequestHangupRequest{
		CallSid: exp[0].CallSid, RequestId: "disk-full-1",
	})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("RequestHangup with the disk full: %v, want UNAVAILABLE", err)
	}
	if _, err := s.getCall(ctx, exp[0].CallSid); err != nil && status.Code(err) != codes.NotFound {
		t.Errorf("GetCall with the disk full: %v; queries must keep working", err)
	}

	freed := time.Now()
	free()
	s.waitReady(t)
	r := reqs[half]
	for r.ExpectHTTP/100 != 2 {
		half++
		r = reqs[half]
	}
	for {
		code, _, err := s.send(r)
		if err != nil {
			t.Fatal(err)
		}
		if code/100 == 2 {
			break
		}
	}
	t.Logf("space freed: webhooks acknowledged again after %v", time.Since(freed).Round(time.Millisecond))
	s.deliverAll(t, reqs)
	if t.Failed() {
		t.FailNow()
	}
	s.checkCorpus(t, exp, abs)
}

// get returns the status code of GET path on the HTTP listener.
func (s *stack) get(path string) (int, error) {
	resp, err := s.httpc.Get(s.url + path)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitStatus waits until GET path answers code; reaching failBound fails.
func (s *stack) waitStatus(t *testing.T, path string, code int) {
	t.Helper()
	deadline := time.Now().Add(failBound)
	for {
		got, err := s.get(path)
		if err == nil && got == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s still %d %v after %v, want %d", path, got, err, failBound, code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric returns the value of an unlabelled metric on /metrics, as written.
func (s *stack) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := s.httpc.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("%s not on /metrics", name)
	return ""
}
