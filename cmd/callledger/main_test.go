package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/stuckreport"
	"github.com/callledger/callledger/traffic"
	"github.com/callledger/callledger/twilio"
)

// TestMain lets the test binary act as the callledger binary: the tests
// start it as a child process to kill it like a real server. The tests
// run under a watchdog that reports where a stuck one waits.
func TestMain(m *testing.M) {
	if os.Getenv("CALLLEDGER_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(stuckreport.Run(m))
}

// serveProcess is a `callledger serve` child process.
type serveProcess struct {
	cmd      *exec.Cmd
	httpURL  string
	grpcAddr string
	dataDir  string
}

var servingLine = regexp.MustCompile(`msg="callledger serving" http=(\S+) grpc=(\S+)`)

// startServer runs `serve` in a child process on ephemeral ports and waits
// until it listens. env adds to the environment.
func startServer(t *testing.T, dataDir string, env []string, args ...string) *serveProcess {
	t.Helper()
	args = append([]string{"serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(cleanEnv(), "CALLLEDGER_TEST_MAIN=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m
			}
		}
		close(addr)
	}()
	select {
	case m, ok := <-addr:
		if !ok {
			t.Fatal("server exited before listening")
		}
		return &serveProcess{cmd: cmd, httpURL: "http://" + m[1], grpcAddr: m[2], dataDir: dataDir}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start within 30s")
	}
	return nil
}

// dial opens a gRPC connection to the server that authenticates with its
// local API token, as a client on the same machine does.
func (p *serveProcess) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	tok, err := server.ReadLocalAPIToken(p.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return grpctest.Dial(t, p.grpcAddr, grpctest.Token(tok))
}

// cleanEnv is the environment without Twilio or callledger settings, so a
// developer's shell does not change what the tests see.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TWILIO_") || strings.HasPrefix(kv, envPrefix+"_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// cli runs the CLI in-process and returns its standard output.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, args, &stdout, &stderr)
	if err != nil {
		t.Logf("callledger %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

// eventIDs reads `callledger events <sid>` of a stopped server's data.
func eventIDs(t *testing.T, dataDir, sid string) map[string]int {
	t.Helper()
	out, err := cli(t, "events", sid, "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("events %s: %v", sid, err)
	}
	ids := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			EventID    string            `json:"event_id"`
			Stream     string            `json:"stream"`
			Parameters map[string]string `json:"parameters"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events %s printed %q: %v", sid, line, err)
		}
		if ev.Stream != "call-"+sid || ev.Parameters["AccountSid"] == "" {
			t.Errorf("events %s: line %s lacks its stream or verbatim parameters", sid, line)
		}
		ids[ev.EventID]++
	}
	return ids
}

// expectedIDs derives the event IDs a request must be stored under.
func expectedIDs(r traffic.Request) []string {
	var ids []string
	for _, d := range twilio.Derive(r.Kind, &twilio.Request{
		Method: r.Method, RawQuery: r.Query, Body: r.Body, Header: r.Header,
		ContentType: r.Header.Get("Content-Type"), ReceivedAt: time.Now(),
	}) {
		ids = append(ids, d.Event.GetEventId())
	}
	return ids
}

// TestDevServeSimulateEvents is the quick start: `serve` without a token,
// `simulate` finding the development token on its own, `events` showing
// what was stored, after a graceful stop.
func TestDevServeSimulateEvents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir, nil)
	out, err := cli(t, "simulate", "--target", srv.httpURL, "--data-dir", dir, "--calls", "40", "--concurrency", "4", "--seed", "3")
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	if !strings.Contains(out, "for 40 call trees") {
		t.Errorf("simulate printed %q", out)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}

	checkStoredOnce(t, dir, traffic.Generate(traffic.Config{Calls: 40, Seed: 3, PublicURL: srv.httpURL, Token: "any", RetryRate: 0.05}))
}

// checkStoredOnce checks that dir's ledger holds every distinct request
// of reqs exactly once and their retries not at all. The same seed gives
// the same calls; only Twilio's timestamps, and so the event IDs, differ
// between runs, so the comparison is per call.
func checkStoredOnce(t *testing.T, dir string, reqs []traffic.Request) {
	t.Helper()
	want := map[string]int{}
	for _, r := range reqs {
		if !r.Retry {
			want[r.CallSid]++
		}
	}
	for sid, n := range want {
		got := eventIDs(t, dir, sid)
		if len(got) != n {
			t.Errorf("call %s: %d distinct events stored, want %d", sid, len(got), n)
		}
		for id, c := range got {
			if c != 1 {
				t.Errorf("call %s: event %s stored %d times", sid, id, c)
			}
		}
	}
}

// TestAcknowledgedWebhooksSurviveKill9 kills the server with SIGKILL while
// webhooks are in flight; every webhook it acknowledged must be stored once.
func TestAcknowledgedWebhooksSurviveKill9(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const token = "kill9-test-token"
	srv := startServer(t, dir, []string{"TWILIO_AUTH_TOKEN=" + token}, "--public-url", "https://hooks.example.com")
	reqs := traffic.Generate(traffic.Config{Calls: 400, Seed: 9, PublicURL: "https://hooks.example.com", Token: token, RetryRate: -1})

	type ack struct {
		r  traffic.Request
		ok bool
	}
	acks := make(chan ack, len(reqs))
	work := make(chan traffic.Request)
	for range 8 {
		go func() {
			for r := range work {
				req, _ := http.NewRequest(r.Method, srv.httpURL+r.URI(), bytes.NewReader(r.Body))
				req.Header = r.Header.Clone()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					acks <- ack{r: r}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				acks <- ack{r: r, ok: resp.StatusCode/100 == 2}
			}
		}()
	}
	go func() {
		defer close(work)
		for _, r := range reqs {
			work <- r
		}
	}()
	var acked []traffic.Request
	for len(acked) < 600 {
		a := <-acks
		if a.ok {
			acked = append(acked, a.r)
		}
	}
	if err := srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = srv.cmd.Wait()
	for range 8 { // let the senders see the dead server and stop
		go func() {
			for a := range acks {
				if a.ok {
					t.Logf("late ack of %s", a.r.CallSid)
				}
			}
		}()
	}

	bySid := map[string][]string{}
	for _, r := range acked {
		bySid[r.CallSid] = append(bySid[r.CallSid], expectedIDs(r)...)
	}
	for sid, ids := range bySid {
		got := eventIDs(t, dir, sid)
		for _, id := range ids {
			if got[id] != 1 {
				t.Errorf("acknowledged event %s of %s: stored %d times after kill -9, want 1", id, sid, got[id])
			}
		}
	}
	t.Logf("%d acknowledged webhooks of %d calls all present after SIGKILL", len(acked), len(bySid))
}

func TestServeRefusesUnsafeConfigurations(t *testing.T) {
	dir := t.TempDir()
	for _, env := range []string{"TWILIO_AUTH_TOKEN", "TWILIO_AUTH_TOKEN_SECONDARY", "CALLLEDGER_HTTP_ADDR", "CALLLEDGER_PUBLIC_URL", "CALLLEDGER_AUTH_TOKEN"} {
		t.Setenv(env, "")
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no token on a public address", nil, []string{"--http-addr", "0.0.0.0:0"}, "no Twilio auth token"},
		{"no token on a public address from the environment", map[string]string{"CALLLEDGER_HTTP_ADDR": "0.0.0.0:0"}, nil, "no Twilio auth token"},
		{"token without public URL", map[string]string{"TWILIO_AUTH_TOKEN": "tok"}, []string{"--http-addr", "127.0.0.1:0"}, "--public-url is required"},
		{"public URL with a query", map[string]string{"TWILIO_AUTH_TOKEN": "tok"}, []string{"--http-addr", "127.0.0.1:0", "--public-url", "https://h/?a=1"}, "--public-url"},
		{"bad log format", nil, []string{"--log-format", "xml"}, "--log-format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"serve", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0"}, tc.args...)
			_, err := cli(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve %v: error %v, want one mentioning %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestStoreFlagsHelp: every command that reads or writes the ledger shows
// --data-dir and --store with the same default and help.
func TestStoreFlagsHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"serve", "events", "rebuild", "export", "load"} {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if err := run(context.Background(), []string{cmd, "--help"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("%s --help: %v, want flag.ErrHelp", cmd, err)
			}
			for _, want := range []*regexp.Regexp{
				regexp.MustCompile(`(?m)^\s+-data-dir \./data\s+` + regexp.QuoteMeta(dataDirFlagUsage) + `$`),
				regexp.MustCompile(`(?m)^\s+-store string\s+` + regexp.QuoteMeta(storeFlagUsage) + `$`),
			} {
				if !want.MatchString(stderr.String()) {
					t.Errorf("%s --help lacks a line matching %s:\n%s", cmd, want, stderr.String())
				}
			}
		})
	}
}

func TestEventsErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := cli(t, "events", "not-a-sid", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "not a CallSid") {
		t.Errorf("events with a bad SID: %v", err)
	}
	if _, err := cli(t, "events", "CA00000000000000000000000000000000", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("events of an unknown call: %v", err)
	}
	startServer(t, dir, nil)
	if _, err := cli(t, "events", "CA00000000000000000000000000000000", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("events on a running server's directory: %v", err)
	}
}

func TestSimulateReportsRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir, nil)
	out, err := cli(t, "simulate", "--target", srv.httpURL, "--token", "wrong-token", "--calls", "2")
	if err == nil || !strings.Contains(out, "got 403") {
		t.Errorf("simulate with the wrong token: err %v, output %q; want a failure naming the 403s", err, out)
	}
}

// TestServeWebhooksRole: with --role webhooks, serve stores every webhook
// as usual but keeps no projection and serves no gRPC: a stateless webhook
// replica.
func TestServeWebhooksRole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startServer(t, dir, nil, "--role", "webhooks")
	if srv.grpcAddr != "off" {
		t.Errorf("gRPC at %s, want off", srv.grpcAddr)
	}
	out, err := cli(t, "simulate", "--target", srv.httpURL, "--data-dir", dir, "--calls", "5", "--concurrency", "2", "--seed", "5")
	if err != nil {
		t.Fatalf("simulate: %v\n%s", err, out)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	checkStoredOnce(t, dir, traffic.Generate(traffic.Config{Calls: 5, Seed: 5, PublicURL: srv.httpURL, Token: "any", RetryRate: 0.05}))
	if _, err := os.Stat(filepath.Join(dir, "projections")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("projections directory: %v, want none", err)
	}
	if _, err := cli(t, "serve", "--data-dir", dir, "--role", "queries"); err == nil || !strings.Contains(err.Error(), "--role") {
		t.Errorf("serve --role queries: %v, want an error naming --role", err)
	}
}
