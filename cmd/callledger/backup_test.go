package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBackupCommand: `callledger backup` against a running serve writes a
// backup that `callledger check` passes and `serve` starts on with the
// calls simulate sent before it; a second backup into the same directory
// is refused.
func TestBackupCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir, nil)
	if out, err := cli(t, "simulate", "--target", srv.httpURL, "--data-dir", dir, "--calls", "20", "--concurrency", "4", "--seed", "5"); err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	to := filepath.Join(t.TempDir(), "backup")
	// The CLI calls with the local API token the server keeps in dir.
	out, err := cli(t, "backup", "--addr", srv.grpcAddr, "--data-dir", dir, "--to", to)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if !strings.Contains(out, "backup in "+to) || !strings.Contains(out, "callledger serve --data-dir "+to) {
		t.Errorf("backup printed %q", out)
	}
	if _, err := cli(t, "backup", "--addr", srv.grpcAddr, "--to", t.TempDir()+"/other"); err == nil || !strings.Contains(err.Error(), "requires a token") {
		t.Errorf("a backup without a token: %v, want one saying a token is required", err)
	}
	if _, err := cli(t, "backup", "--addr", srv.grpcAddr, "--data-dir", dir, "--to", to); err == nil || !strings.Contains(err.Error(), "backup target is not empty") {
		t.Errorf("a second backup into %s: %v, want one saying the target is not empty", to, err)
	}
	if _, err := cli(t, "backup", "--addr", "192.0.2.1:9090", "--to", "relative"); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf("a relative --to for a remote server: %v", err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if out, err := cli(t, "check", "--data-dir", to); err != nil || !strings.Contains(out, "no problems") {
		t.Fatalf("check of the backup: %v\n%s", err, out)
	}
	if out, err := cli(t, "check", "--data-dir", dir); err != nil {
		t.Fatalf("check of the original: %v\n%s", err, out)
	}
	restored := startServer(t, to, nil)
	if err := restored.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := restored.cmd.Wait(); err != nil {
		t.Fatalf("serve on the backup: %v", err)
	}
}
