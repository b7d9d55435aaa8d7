package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEraseCommand: `callledger erase --call` against a running serve
// erases the call's tree, which then lists as redacted; the journal the
// server wrote replays with --replay (finding nothing new); what is not
// one request is refused before anything is sent.
func TestEraseCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	journal := filepath.Join(t.TempDir(), "erasures.jsonl")
	srv := startServer(t, dir, nil, "--erasure-journal", journal)
	if out, err := cli(t, "simulate", "--target", srv.httpURL, "--data-dir", dir, "--calls", "6", "--concurrency", "2", "--seed", "4"); err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	addr := []string{"--addr", srv.grpcAddr, "--data-dir", dir}
	// ListCalls has no min_position: wait for the projection to show a call.
	var out string
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if out, err = cli(t, append([]string{"calls", "list", "--output", "json"}, addr...)...); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "callSid") || time.Now().After(deadline) {
			break
		}
	}
	var first struct {
		CallSid string `json:"callSid"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first); err != nil || first.CallSid == "" {
		t.Fatalf("calls list: %q: %v", out, err)
	}
	out, err = cli(t, append([]string{"erase", "--call", first.CallSid}, addr...)...)
	if err != nil || !strings.Contains(out, "erasure ") || !strings.Contains(out, first.CallSid) {
		t.Fatalf("erase --call: %q, %v", out, err)
	}
	out, err = cli(t, append([]string{"calls", "get", first.CallSid, "--output", "json"}, addr...)...)
	if err != nil || !strings.Contains(out, `"redacted":true`) {
		t.Errorf("calls get after the erasure: %q, %v", out, err)
	}
	out, err = cli(t, append([]string{"erase", "--replay", journal}, addr...)...)
	if err != nil || !strings.Contains(out, "0 of 1 entries found keys again") {
		t.Errorf("erase --replay: %q, %v", out, err)
	}
	for _, args := range [][]string{{"erase"}, {"erase", "--call", first.CallSid, "--number", "+15555550100"}} {
		if _, err := cli(t, append(args, addr...)...); err == nil || !strings.Contains(err.Error(), "exactly one") {
			t.Errorf("%v: %v, want a refusal", args, err)
		}
	}
	if _, err := cli(t, append([]string{"erase", "--replay", filepath.Join(dir, "nope")}, addr...)...); err == nil {
		t.Error("erase --replay of a missing file succeeded")
	}
}
