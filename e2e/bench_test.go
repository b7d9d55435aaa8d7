package e2e_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/internal/cputime"
	"github.com/callledger/callledger/internal/readmodelload"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/services/webhook"
	"github.com/callledger/callledger/traffic"
)

// BenchmarkAckToVisible measures how long after a webhook's 2xx its effect
// is visible to clients: through a WatchCalls stream that is already open
// (the change carrying the webhook's position arrives), and through GetCall
// with min_position set to the answer's Callledger-Position. One webhook at
// a time, each a new fact; every acknowledgement is fsync-durable.
func BenchmarkAckToVisible(b *testing.B) {
	s := newStack(b)
	ctx := context.Background()
	watch, err := s.client.WatchCalls(ctx, &callledgerv1.WatchCallsRequest{})
	if err != nil {
		b.Fatal(err)
	}
	if m, err := watch.Recv(); err != nil || !m.GetCaughtUp() {
		b.Fatalf("watch start: %v %v", m, err)
	}
	type arrival struct {
		pos eventstore.Position
		at  time.Time
	}
	changes := make(chan arrival, 1024)
	go func() {
		for {
			m, err := watch.Recv()
			if err != nil {
				close(changes)
				return
			}
			changes <- arrival{eventstore.Position(m.GetPosition()), time.Now()}
		}
	}()
	// Every request is a new fact: at least b.N of them (under 5 per call).
	reqs := traffic.Generate(traffic.Config{Calls: b.N/2 + 10, Seed: 1, PublicURL: corpus.PublicURL, Token: corpus.Token, RetryRate: -1})
	watchLat := make([]time.Duration, 0, b.N)
	getLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		r := reqs[i]
		req, _ := http.NewRequest(r.Method, s.url+r.URI(), bytes.NewReader(r.Body))
		req.Header = r.Header.Clone()
		resp, err := s.httpc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		acked := time.Now()
		pos, err := strconv.ParseUint(resp.Header.Get(webhook.PositionHeader), 10, 64)
		if err != nil {
			b.Fatalf("answer %d without a position", resp.StatusCode)
		}
		if _, err := s.client.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: r.CallSid, MinPosition: pos}); err != nil {
			b.Fatal(err)
		}
		getLat = append(getLat, time.Since(acked))
		// The watcher timestamps arrivals itself; a change can even
		// arrive before the HTTP client has read the answer (latency 0).
		for a := range changes {
			if uint64(a.pos) >= pos {
				watchLat = append(watchLat, max(0, a.at.Sub(acked)))
				break
			}
		}
	}
	b.StopTimer()
	report(b, "watch", watchLat)
	report(b, "getcall", getLat)
}

func report(b *testing.B, what string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), what+"-p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), what+"-p99-µs")
}

// readModel writes into dataDir the read model of n calls (one completed
// call with one answered child for every two calls), where a server on
// dataDir finds it; it returns the calls' SIDs.
func readModel(b *testing.B, dataDir string, n int) []string {
	if err := readmodelload.Load(context.Background(), dataDir, n); err != nil {
		b.Fatal(err)
	}
	sids := make([]string, n)
	for i := range sids {
		sids[i] = readmodelload.SID(i)
	}
	return sids
}

var getCallSizes = flag.String("getcall.sizes", "10000,100000,1000000", "read-model sizes BenchmarkGetCall builds, comma-separated")

// BenchmarkGetCall measures GetCall over gRPC on loopback against read
// models of growing size: throughput with 32 concurrent callers, p99, and
// the CPU time per call of client and server together (the figure to
// compare on a machine shared with other work). Every call belongs to a
// two-leg tree, so each answer carries both legs.
func BenchmarkGetCall(b *testing.B) {
	eachReadModel(b, func(b *testing.B, clients []callledgerv1.CallQueryServiceClient, sids []string) {
		b.Run("closed-loop", func(b *testing.B) {
			var mu sync.Mutex
			var lat []time.Duration
			var seed atomic.Uint64
			b.SetParallelism(16)
			b.ResetTimer()
			cpu0, cpuOK := cputime.Process()
			b.RunParallel(func(pb *testing.PB) {
				n := seed.Add(1)
				rng := rand.New(rand.NewPCG(n, 7))
				client := clients[int(n)%len(clients)]
				local := make([]time.Duration, 0, 1024)
				for pb.Next() {
					start := time.Now()
					resp, err := client.GetCall(context.Background(), &callledgerv1.GetCallRequest{CallSid: sids[rng.IntN(len(sids))]})
					if err != nil || len(resp.GetLegs()) != 2 {
						b.Errorf("GetCall: %v, %d legs", err, len(resp.GetLegs()))
						return
					}
					local = append(local, time.Since(start))
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
			if cpu1, ok := cputime.Process(); ok && cpuOK {
				// Client and server share the process: this is both
				// sides' CPU, background work of the read model included.
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/call")
			}
			report(b, "getcall", lat)
		})
	})
}

// eachReadModel runs, for each size of -getcall.sizes, a sub-benchmark
// calls=<size> that builds a read model of that many calls (outside any
// timed run) and serves GetCall on it over loopback from a server built
// as serve builds it; fn gets four clients, each on a connection of its
// own, as several internal services would call (one HTTP/2 connection
// serializes on its reader and writer). The read model and its server end
// with the size's sub-benchmark, so the next size is measured alone.
func eachReadModel(b *testing.B, fn func(b *testing.B, clients []callledgerv1.CallQueryServiceClient, sids []string)) {
	for _, size := range strings.Split(*getCallSizes, ",") {
		n, err := strconv.Atoi(size)
		if err != nil {
			b.Fatalf("-getcall.sizes: %v", err)
		}
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			sids := readModel(b, dir, n)
			srv := runServer(b, server.Config{DataDir: dir})
			var clients []callledgerv1.CallQueryServiceClient
			for range 4 {
				clients = append(clients, callledgerv1.NewCallQueryServiceClient(dialServer(b, srv)))
			}
			fn(b, clients, sids)
		})
	}
}
