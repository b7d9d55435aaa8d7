// Command ingestbench prepares and checks the webhook ingest benchmark
// (scripts/bench-ingest.sh): it writes pre-signed requests for wrk, serves a
// no-op HTTP server as the ceiling, sends signed requests at a fixed rate
// (open loop, through vegeta), writes pre-signed targets for the vegeta
// command and counts what a run stored. For the GetCall benchmark of a
// server in a process of its own (scripts/bench-compare.sh getcall-pinned)
// it writes a large read model (readmodel) and sends GetCall at a fixed
// rate, open loop (getcall).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/traffic"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ingestbench gen|targets|noop|rate|count|readmodel|getcall [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "targets":
		err = targets(os.Args[2:])
	case "noop":
		err = noop(os.Args[2:])
	case "rate":
		err = fixedRate(os.Args[2:])
	case "count":
		err = count(os.Args[2:])
	case "readmodel":
		err = readModel(os.Args[2:])
	case "getcall":
		err = getCall(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingestbench:", err)
		os.Exit(1)
	}
}

// gen writes calls' worth of unique signed requests as raw HTTP/1.1, split
// round-robin into one file per wrk thread, each record "<len>\n<bytes>".
func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	out := fs.String("out", "", "output directory")
	calls := fs.Int("calls", 100000, "call trees to generate")
	threads := fs.Int("threads", 2, "wrk threads (one file each)")
	token := fs.String("token", "bench-token", "auth token")
	public := fs.String("public-url", "http://127.0.0.1:8080", "public URL to sign for")
	host := fs.String("host", "127.0.0.1:8080", "Host header")
	_ = fs.Parse(args)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	reqs := traffic.Generate(traffic.Config{Calls: *calls, Seed: 1, PublicURL: *public, Token: *token, RetryRate: -1})
	files := make([]*bufio.Writer, *threads)
	for i := range files {
		f, err := os.Create(filepath.Join(*out, "requests-"+strconv.Itoa(i)+".bin"))
		if err != nil {
			return err
		}
		defer f.Close()
		files[i] = bufio.NewWriterSize(f, 1<<20)
	}
	for i, r := range reqs {
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n", r.Method, r.URI(), *host)
		for k, vs := range r.Header {
			for _, v := range vs {
				raw += k + ": " + v + "\r\n"
			}
		}
		raw += "Content-Length: " + strconv.Itoa(len(r.Body)) + "\r\n\r\n" + string(r.Body)
		w := files[i%len(files)]
		fmt.Fprintf(w, "%d\n%s", len(raw), raw)
	}
	for _, w := range files {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	fmt.Printf("%d requests in %d files\n", len(reqs), len(files))
	return nil
}

// targets writes unique signed requests in the JSON targets format of the
// vegeta command (`vegeta attack -format=json`), one per line, so that an
// outside load generator sends exactly what Twilio would.
func targets(args []string) error {
	fs := flag.NewFlagSet("targets", flag.ExitOnError)
	out := fs.String("out", "", "output file")
	calls := fs.Int("calls", 100000, "call trees to generate")
	seed := fs.Uint64("seed", 3, "seed of the generated call flows")
	token := fs.String("token", "bench-token", "auth token")
	target := fs.String("target", "http://127.0.0.1:18080", "base URL the requests are sent to and signed for")
	_ = fs.Parse(args)
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	enc := vegeta.NewJSONTargetEncoder(w)
	reqs := traffic.Generate(traffic.Config{Calls: *calls, Seed: *seed, PublicURL: *target, Token: *token, RetryRate: -1})
	for _, r := range reqs {
		if err := enc.Encode(&vegeta.Target{Method: r.Method, URL: *target + r.URI(), Body: r.Body, Header: r.Header}); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Printf("%d targets in %s\n", len(reqs), *out)
	return f.Close()
}

// noop answers 204 to everything after reading the body: the ceiling of
// what the load generator and Go's HTTP server reach on this machine.
func noop(args []string) error {
	fs := flag.NewFlagSet("noop", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:18080", "listen address")
	_ = fs.Parse(args)
	return http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 4096)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

// fixedRate sends unique signed requests at a fixed rate for a duration
// and prints the acknowledgement latency percentiles. It is open loop: a
// slow answer does not delay the next request (as a closed-loop generator
// like wrk would), so the latencies are those Twilio would see at that rate.
func fixedRate(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ExitOnError)
	target := fs.String("target", "http://127.0.0.1:18080", "base URL of the server")
	rate := fs.Int("rate", 5000, "requests per second")
	duration := fs.Duration("duration", 20*time.Second, "how long to send")
	calls := fs.Int("calls", 100000, "call trees to generate (requests cycle when exhausted)")
	token := fs.String("token", "bench-token", "auth token")
	public := fs.String("public-url", "http://127.0.0.1:18080", "public URL to sign for")
	seed := fs.Uint64("seed", 2, "seed of the generated calls: runs against one server with other seeds send other calls")
	_ = fs.Parse(args)
	reqs := traffic.Generate(traffic.Config{Calls: *calls, Seed: *seed, PublicURL: *public, Token: *token, RetryRate: -1})
	if len(reqs) == 0 {
		return fmt.Errorf("no requests generated")
	}
	var next atomic.Uint64 // vegeta's workers call the targeter concurrently
	targeter := func(t *vegeta.Target) error {
		r := reqs[(next.Add(1)-1)%uint64(len(reqs))]
		t.Method, t.URL, t.Body, t.Header = r.Method, *target+r.URI(), r.Body, r.Header
		return nil
	}
	attacker := vegeta.NewAttacker(vegeta.KeepAlive(true), vegeta.HTTP2(false), vegeta.Timeout(10*time.Second))
	var m vegeta.Metrics
	var seconds []vegeta.Metrics // by second since the first request: the first one after start is the one to watch
	var first time.Time
	for res := range attacker.Attack(targeter, vegeta.Rate{Freq: *rate, Per: time.Second}, *duration, "ingest") {
		m.Add(res)
		if first.IsZero() {
			first = res.Timestamp
		}
		sec := max(0, int(res.Timestamp.Sub(first)/time.Second))
		for len(seconds) <= sec {
			seconds = append(seconds, vegeta.Metrics{})
		}
		seconds[sec].Add(res)
	}
	m.Close()
	fmt.Printf("RESULT rate=%d sent=%.0f/s ok=%.0f/s success=%.4f p50=%s p90=%s p99=%s max=%s codes=%v errors=%d\n",
		*rate, m.Rate, m.Throughput, m.Success, m.Latencies.P50, m.Latencies.P90, m.Latencies.P99, m.Latencies.Max,
		m.StatusCodes, len(m.Errors))
	worst, over10 := 0, 0
	for i := range seconds {
		seconds[i].Close()
		if seconds[i].Latencies.P99 > seconds[worst].Latencies.P99 {
			worst = i
		}
		if seconds[i].Latencies.P99 > 10*time.Millisecond {
			over10++
		}
	}
	if len(seconds) > 0 {
		f, w := seconds[0].Latencies, seconds[worst].Latencies
		fmt.Printf("SECONDS first: p99=%s max=%s; worst: second %d p99=%s max=%s; seconds with p99 over 10ms: %d of %d\n",
			f.P99, f.Max, worst, w.P99, w.Max, over10, len(seconds))
	}
	return nil
}

// count prints the number of events a stopped server's store holds.
func count(args []string) error {
	fs := flag.NewFlagSet("count", flag.ExitOnError)
	dir := fs.String("data-dir", "", "data directory")
	_ = fs.Parse(args)
	s, err := pebblestore.Open(filepath.Join(*dir, "ledger"), pebblestore.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	head, err := s.Head(ctx)
	if err != nil {
		return err
	}
	fmt.Println(uint64(head))
	return nil
}
