package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/traffic"
)

// crashCyclesEnv overrides how many times TestCrashCycles kills the server
// (`make chaos` sets it to 100).
const crashCyclesEnv = "CALLLEDGER_CRASH_CYCLES"

// TestCrashCycles runs serve as a child process (this test binary is the
// callledger binary, built once by go test) and kills it with SIGKILL,
// again and again, while eight senders deliver signed webhooks as Twilio
// does, redelivering whatever was not acknowledged. After the last cycle
// a server that runs to the end takes the remaining redeliveries; then
// every acknowledged webhook must be in the ledger exactly once, no event
// twice, and every call's GetCall must equal the fold of the ledger.
func TestCrashCycles(t *testing.T) {
	t.Parallel()
	cycles := 10
	if v := os.Getenv(crashCyclesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", crashCyclesEnv, v)
		}
		cycles = n
	}
	const (
		token     = "crash-cycles-token"
		publicURL = "https://hooks.example.com"
		senders   = 8
	)
	dir := t.TempDir()
	env := []string{"TWILIO_AUTH_TOKEN=" + token}
	reqs := traffic.Generate(traffic.Config{Calls: 40 * cycles, Seed: 21, PublicURL: publicURL, Token: token})

	var (
		mu      sync.Mutex
		acked   = map[int]bool{}    // requests acknowledged with a 2xx
		pending []int               // requests not acknowledged, for redelivery
		maxPos  eventstore.Position // highest Callledger-Position answered
		next    atomic.Int64        // next request never sent
	)
	// take returns a request to send: a redelivery first, else a new one.
	take := func() (int, bool) {
		mu.Lock()
		if n := len(pending); n > 0 {
			i := pending[n-1]
			pending = pending[:n-1]
			mu.Unlock()
			return i, true
		}
		mu.Unlock()
		i := int(next.Add(1)) - 1
		return i, i < len(reqs)
	}
	send := func(url string, i int) bool {
		r := reqs[i]
		req, _ := http.NewRequest(r.Method, url+r.URI(), bytes.NewReader(r.Body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		ok := err == nil && resp.StatusCode/100 == 2
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if !ok && resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("request %d: HTTP %d, want a 2xx (or 503)", i, resp.StatusCode)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			pending = append(pending, i)
			return false
		}
		acked[i] = true
		if p, err := strconv.ParseUint(resp.Header.Get(webhook.PositionHeader), 10, 64); err == nil {
			maxPos = max(maxPos, eventstore.Position(p))
		}
		return true
	}

	for c := range cycles {
		srv := startServer(t, dir, env, "--public-url", publicURL)
		var sent atomic.Int64
		target := int64(40 + 13*(c%5)) // kill after a varying number of acknowledgements
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range senders {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					i, ok := take()
					if !ok {
						return
					}
					if send(srv.httpURL, i) {
						sent.Add(1)
					}
				}
			})
		}
		for sent.Load() < target && next.Load() < int64(len(reqs)) {
			time.Sleep(time.Millisecond)
		}
		if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = srv.cmd.Wait()
		close(stop)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}

	// The last server runs to the end: Twilio's redeliveries all succeed.
	srv := startServer(t, dir, env, "--public-url", publicURL)
	for {
		i, ok := take()
		if !ok {
			break
		}
		if !send(srv.httpURL, i) {
			t.Fatalf("request %d refused by a healthy server", i)
		}
	}
	if len(acked) != len(reqs) {
		t.Fatalf("%d of %d requests acknowledged", len(acked), len(reqs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := server.ReadLocalAPIToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	queries := callledgerv1.NewCallQueryServiceClient(grpctest.Dial(t, srv.grpcAddr, grpctest.Token(tok)))
	served := map[string]*callledgerv1.Call{}
	for _, r := range reqs {
		if _, done := served[r.CallSid]; done || r.CallSid == "" {
			continue
		}
		resp, err := queries.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: r.CallSid, MinPosition: uint64(maxPos)})
		if err != nil {
			t.Fatalf("GetCall %s: %v", r.CallSid, err)
		}
		served[r.CallSid] = resp.GetCall()
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}

	// The ledger: every acknowledged event once, nothing twice; the fold
	// of it is what GetCall answered.
	store, err := pebblestore.Open(dir+"/ledger", pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// The server sealed personal data with the development key it made.
	keys, err := server.OpenKeys(dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	personal := seal.NewEvents(keys)
	decoder := callstore.Decoder{Log: slog.New(slog.DiscardHandler), Personal: personal}
	stored := map[string]int{}
	mem := callstate.NewMemory()
	var events, sealed int
	for from := eventstore.Start; ; {
		batch, err := store.ReadAll(ctx, from, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		for i := range batch {
			rec := &batch[i]
			stored[rec.Stream+"/"+rec.ID.String()]++
			events++
			// Every sealed event opens: its key was durable before it was,
			// whenever the process was killed (the commit barrier).
			if whole, err := eventcodec.Decode(*rec); err == nil && (whole.GetSealed() != nil || whole.GetSealedRequest() != nil) {
				sealed++
				if _, err := personal.Open(ctx, whole); err != nil {
					t.Errorf("event %s of %s at %d does not open after the crashes: %v", rec.ID, rec.Stream, rec.Position, err)
				}
			}
			if ev, ok := decoder.Decode(rec); ok {
				if err := callstate.Apply(mem, ev, uint64(rec.Position)); err != nil {
					t.Fatal(err)
				}
			}
		}
		from = batch[len(batch)-1].Position
	}
	for key, n := range stored {
		if n != 1 {
			t.Errorf("event %s stored %d times", key, n)
		}
	}
	for i := range acked {
		r := reqs[i]
		for _, id := range expectedIDs(r) {
			if stored["call-"+r.CallSid+"/"+id] != 1 {
				t.Errorf("acknowledged request %d (%s): event %s stored %d times, want 1", i, r.CallSid, id, stored["call-"+r.CallSid+"/"+id])
			}
		}
	}
	for sid, got := range served {
		rec, _ := mem.Get(sid)
		if want := callstate.View(rec); rec == nil || !proto.Equal(got, want) {
			t.Errorf("GetCall %s after %d crashes differs from the fold of the ledger:\n got %v\nwant %v", sid, cycles, got, want)
		}
	}
	if sealed == 0 {
		t.Error("no sealed event in the ledger: the server did not seal, and the barrier went untested")
	}
	t.Logf("%d crash cycles: %d requests acknowledged, %d events in the ledger (%d sealed, all opened), %d calls equal to the fold",
		cycles, len(acked), events, sealed, len(served))
}
