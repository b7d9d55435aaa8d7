package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

var getCallRates = flag.String("getcall.rates", "20000", "calls/s BenchmarkGetCallAtRate sends, comma-separated: one run each")

// BenchmarkGetCallAtRate sends GetCall at a fixed rate, open loop: each
// call is due at its own time whether or not earlier ones have answered.
// This is the latency a client sees at a given load, where BenchmarkGetCall
// finds the most the server can answer (and its closed loop hides a stall
// by slowing its callers down). Latency counts from when a call was sent;
// "late-p99-µs" is how far behind its due time the sender was, which grows
// once the server cannot keep up. Run it with -benchtime=Nx: N calls take
// N / rate seconds at each rate of -getcall.rates.
func BenchmarkGetCallAtRate(b *testing.B) {
	var rates []int
	for _, r := range strings.Split(*getCallRates, ",") {
		rate, err := strconv.Atoi(r)
		if err != nil || rate <= 0 {
			b.Fatalf("-getcall.rates: %q is not a positive number", r)
		}
		rates = append(rates, rate)
	}
	eachReadModel(b, func(b *testing.B, clients []callledgerv1.CallQueryServiceClient, sids []string) {
		for _, rate := range rates {
			b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
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
	})
}
