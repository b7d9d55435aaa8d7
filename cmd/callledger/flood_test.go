package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/traffic"
)

// floodEnv runs TestFloodMemory (make bench-floods): it measures, it does
// not assert timings.
const floodEnv = "CALLLEDGER_BENCH_FLOODS"

// TestFloodMemory floods a serve child process with webhooks, with
// WatchCalls streams that never read, and with ListCallEvents, each for a
// while on a server preloaded with signed traffic, and reports the
// process's peak RSS and what each kind of request was answered: queries
// and watchers must be shed (RESOURCE_EXHAUSTED) before a single valid
// webhook is refused.
func TestFloodMemory(t *testing.T) {
	if os.Getenv(floodEnv) == "" {
		t.Skipf("set %s=1 (make bench-floods) to measure", floodEnv)
	}
	const (
		token     = "flood-token"
		publicURL = "https://hooks.example.com"
		clients   = 2000
		duration  = 15 * time.Second
	)
	for _, flood := range []string{"idle", "webhooks", "watchcalls", "listcallevents"} {
		t.Run(flood, func(t *testing.T) {
			dir := t.TempDir()
			srv := startServer(t, dir, []string{"TWILIO_AUTH_TOKEN=" + token}, "--public-url", publicURL)
			pid := srv.cmd.Process.Pid
			reqs := traffic.Generate(traffic.Config{Calls: 5000, Seed: 1, PublicURL: publicURL, Token: token, RetryRate: -1})
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: 0}, Timeout: 30 * time.Second}
			codes503 := map[int]*atomic.Int64{}
			var cmu sync.Mutex
			count := func(code int) {
				cmu.Lock()
				c := codes503[code]
				if c == nil {
					c = &atomic.Int64{}
					codes503[code] = c
				}
				cmu.Unlock()
				c.Add(1)
			}
			post := func(r traffic.Request) {
				req, _ := http.NewRequest(r.Method, srv.httpURL+r.URI(), bytes.NewReader(r.Body))
				req.Header = r.Header.Clone()
				resp, err := hc.Do(req)
				if err != nil {
					count(-1)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				count(resp.StatusCode)
			}
			// Preload: every call of the traffic, 64 at a time.
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					for i := next.Add(1) - 1; i < int64(len(reqs)); i = next.Add(1) - 1 {
						post(reqs[i])
					}
				})
			}
			wg.Wait()
			cmu.Lock()
			codes503 = map[int]*atomic.Int64{}
			cmu.Unlock()

			ctx, cancel := context.WithTimeout(context.Background(), duration)
			defer cancel()
			var peak atomic.Int64
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for ctx.Err() == nil {
					peak.Store(max(peak.Load(), rssKiB(pid)))
					time.Sleep(50 * time.Millisecond)
				}
			}()
			// Webhooks go on in every flood (32 senders, Twilio-like), or are
			// the flood (clients senders).
			senders := 32
			if flood == "webhooks" {
				senders = clients
			}
			if flood != "idle" {
				for w := range senders {
					wg.Go(func() {
						for i := w; ctx.Err() == nil; i += senders {
							post(reqs[i%len(reqs)])
						}
					})
				}
			}
			grpcCodes := map[codes.Code]int64{}
			var gmu sync.Mutex
			gcount := func(err error) {
				gmu.Lock()
				grpcCodes[status.Code(err)]++
				gmu.Unlock()
			}
			if flood == "watchcalls" || flood == "listcallevents" {
				conns := make([]callledgerv1.CallQueryServiceClient, 16)
				for i := range conns {
					conns[i] = callledgerv1.NewCallQueryServiceClient(grpctest.Dial(t, srv.grpcAddr))
				}
				for c := range clients {
					client := conns[c%len(conns)]
					wg.Go(func() {
						for i := c; ctx.Err() == nil; i += clients {
							if flood == "watchcalls" {
								w, err := client.WatchCalls(ctx, &callledgerv1.WatchCallsRequest{})
								if err == nil {
									_, err = w.Recv()
								}
								gcount(err)
								if err == nil {
									<-ctx.Done() // never read again: a slow consumer
								} else {
									time.Sleep(100 * time.Millisecond)
								}
								continue
							}
							_, err := client.ListCallEvents(ctx, &callledgerv1.ListCallEventsRequest{CallSid: reqs[i%len(reqs)].CallSid, PageSize: 1000})
							gcount(err)
						}
					})
				}
			}
			<-ctx.Done()
			wg.Wait()
			<-sampled
			var parts []string
			cmu.Lock()
			for code, n := range codes503 {
				parts = append(parts, fmt.Sprintf("HTTP %d: %d", code, n.Load()))
			}
			cmu.Unlock()
			for code, n := range grpcCodes {
				if code != codes.Canceled && code != codes.DeadlineExceeded {
					parts = append(parts, fmt.Sprintf("gRPC %s: %d", code, n))
				}
			}
			t.Logf("flood %s: peak RSS %d MiB (%s)", flood, peak.Load()>>10, strings.Join(parts, ", "))
			if n := codes503[http.StatusServiceUnavailable]; n != nil && n.Load() > 0 && flood != "webhooks" {
				t.Errorf("flood %s: %d webhooks refused 503 while queries were being shed", flood, n.Load())
			}
		})
	}
}

// rssKiB reads a process's resident set size (Linux), 0 elsewhere.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
