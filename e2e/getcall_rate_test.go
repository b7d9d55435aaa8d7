package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/services/query"
)

var getCallRate = flag.Int("getcall.rate", 20000, "calls/s BenchmarkGetCallAtRate sends")

// BenchmarkGetCallAtRate sends GetCall at a fixed rate, open loop: each
// call is due at its own time whether or not earlier ones have answered.
// This is the latency a client sees at a given load, where BenchmarkGetCall
// finds the most the server can answer (and its closed loop hides a stall
// by slowing its callers down). Latency counts from when a call was sent;
// "late-p99-µs" is how far behind its due time the sender was, which grows
// once the server cannot keep up. Run it with -benchtime=Nx: N calls take
// N / rate seconds.
func BenchmarkGetCallAtRate(b *testing.B) {
	rate := *getCallRate
	if rate <= 0 {
		b.Fatalf("-getcall.rate %d: must be positive", rate)
	}
	history, err := pebblestore.Open(b.TempDir(), pebblestore.Options{}) // GetCall never reads it
	if err != nil {
		b.Fatal(err)
	}
	defer history.Close()
	for _, size := range strings.Split(*getCallSizes, ",") {
		n, err := strconv.Atoi(size)
		if err != nil {
			b.Fatalf("-getcall.sizes: %v", err)
		}
		calls, sids := readModel(b, n)
		b.Run(fmt.Sprintf("calls=%d/rate=%d", n, rate), func(b *testing.B) {
			qs, err := query.New(query.Config{Calls: calls, History: history})
			if err != nil {
				b.Fatal(err)
			}
			g := grpc.NewServer(query.ServerOptions()...)
			qs.Register(g)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = g.Serve(lis) }()
			defer g.Stop()
			var clients []callledgerv1.CallQueryServiceClient
			for range 4 {
				conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				clients = append(clients, callledgerv1.NewCallQueryServiceClient(conn))
			}

			// Enough callers that a call never waits for a free one
			// unless the server is behind: at 20,000/s and 1 ms each,
			// about 20 are busy.
			const callers = 256
			type job struct {
				sid string
				due time.Time
			}
			jobs := make(chan job, callers)
			lat := make([][]time.Duration, callers)
			late := make([][]time.Duration, callers)
			var wg sync.WaitGroup
			for w := range callers {
				client := clients[w%len(clients)]
				wg.Go(func() {
					local := make([]time.Duration, 0, b.N/callers+1)
					behind := make([]time.Duration, 0, b.N/callers+1)
					for j := range jobs {
						sent := time.Now()
						behind = append(behind, sent.Sub(j.due))
						resp, err := client.GetCall(context.Background(), &callledgerv1.GetCallRequest{CallSid: j.sid})
						if err != nil || len(resp.GetLegs()) != 2 {
							b.Errorf("GetCall: %v, %d legs", err, len(resp.GetLegs()))
						}
						local = append(local, time.Since(sent))
					}
					lat[w], late[w] = local, behind
				})
			}
			interval := time.Second / time.Duration(rate)
			b.ResetTimer()
			cpu0, cpuOK := processCPU()
			start := time.Now()
			for i := 0; i < b.N; {
				dueNow := min(b.N, int(time.Since(start)/interval)+1)
				for ; i < dueNow; i++ {
					jobs <- job{sid: sids[(i*7919)%len(sids)], due: start.Add(time.Duration(i) * interval)}
				}
				time.Sleep(100 * time.Microsecond)
			}
			close(jobs)
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
			if cpu1, ok := processCPU(); ok && cpuOK {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-µs/call")
			}
			all := slices.Concat(lat...)
			report(b, "getcall", all)
			if len(all) >= 1000 {
				b.ReportMetric(float64(all[len(all)*999/1000].Microseconds()), "getcall-p99.9-µs")
			}
			behind := slices.Concat(late...)
			slices.Sort(behind)
			b.ReportMetric(float64(behind[len(behind)*99/100].Microseconds()), "late-p99-µs")
		})
	}
}
