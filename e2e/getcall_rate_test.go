package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/openloop"
)

var getCallRates = flag.String("getcall.rates", "20000", "calls/s BenchmarkGetCallAtRate sends, comma-separated: one run each")

// BenchmarkGetCallAtRate sends GetCall at a fixed rate, open loop: each
// call is due at its own time whether or not earlier ones have answered.
// This is the latency a client sees at a given load, where BenchmarkGetCall
// finds the most the server can answer (and its closed loop hides a stall
// by slowing its callers down). Latency counts from when a call was sent;
// "late-p99-µs" is how far behind its due time the sender was, which grows
// once the server cannot keep up. Run it with -benchtime=Nx: N calls take
// N / rate seconds at each rate of -getcall.rates. Client and server share
// the process and its cores here; `ingestbench getcall` sends the same way
// from a process of its own (scripts/bench-compare.sh getcall-pinned).
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
				b.ResetTimer()
				res, err := openloop.Run(context.Background(), openloop.Config{Rate: rate, Requests: b.N},
					func(ctx context.Context, caller, i int) error {
						resp, err := clients[caller%len(clients)].GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sids[(i*7919)%len(sids)]})
						if err == nil && len(resp.GetLegs()) != 2 {
							err = fmt.Errorf("%d legs, want 2", len(resp.GetLegs()))
						}
						return err
					})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if res.Errors > 0 {
					b.Errorf("GetCall: %d of %d failed, one with %v", res.Errors, res.Requests, res.FirstErr)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
				if cpu, ok := res.CPUPerRequest(); ok {
					b.ReportMetric(float64(cpu.Nanoseconds())/1e3, "cpu-µs/call")
				}
				report(b, "getcall", res.Latency)
				if len(res.Latency) >= 1000 {
					b.ReportMetric(float64(openloop.Quantile(res.Latency, 0.999).Microseconds()), "getcall-p99.9-µs")
				}
				b.ReportMetric(float64(openloop.Quantile(res.Late, 0.99).Microseconds()), "late-p99-µs")
			})
		}
	})
}
