package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/openloop"
	"github.com/callledger/callledger/internal/readmodelload"
	"github.com/callledger/callledger/internal/secretfile"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/projections/callstore"
)

// readModel writes the read model of the GetCall benchmarks into a data
// directory for a server to start on (readmodelload), and the calls' SIDs
// one a line for getcall --sids.
func readModel(args []string) error {
	fs := flag.NewFlagSet("readmodel", flag.ExitOnError)
	dir := fs.String("data-dir", "", "data directory of the server to start on it (without a read model yet)")
	calls := fs.Int("calls", 1_000_000, "calls to write: half of them roots, each with one child")
	sidsOut := fs.String("sids-out", "", "file to write the calls' SIDs to, one a line (optional)")
	version := fs.Bool("version", false, "print the read model's format (its directory name) and exit: data written by binaries that print the same is the same")
	_ = fs.Parse(args)
	if *version {
		fmt.Printf("callstate-v%d\n", callstore.Version)
		return nil
	}
	if *dir == "" {
		return errors.New("readmodel: --data-dir is required")
	}
	start := time.Now()
	if err := readmodelload.Load(context.Background(), *dir, *calls); err != nil {
		return fmt.Errorf("readmodel: %w", err)
	}
	if *sidsOut != "" {
		if err := writeSIDs(*sidsOut, *calls); err != nil {
			return fmt.Errorf("readmodel: %w", err)
		}
	}
	fmt.Printf("read model of %d calls in %s (%s)\n", *calls, readmodelload.Dir(*dir), time.Since(start).Round(time.Millisecond))
	return nil
}

func writeSIDs(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		fmt.Fprintln(w, readmodelload.SID(i))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// getCall sends GetCall to a running server at a fixed rate, open loop,
// exactly as BenchmarkGetCallAtRate does in one process with the server
// (openloop), and prints the latency percentiles, how late the sender
// fell behind and its own CPU per call: run on cores of its own, what it
// measures is the server's.
func getCall(args []string) error {
	fs := flag.NewFlagSet("getcall", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:9090", "gRPC address of the server (its --grpc-addr), on loopback: the token goes in clear")
	token := fs.String("token", "", "API token (default: --token-file, else the local API token of --data-dir)")
	tokenFile := fs.String("token-file", "", "file holding the API token (mode 0600)")
	dataDir := fs.String("data-dir", "", "data directory of the server, whose local API token (local-api-token) is used when neither --token nor --token-file is given")
	sidsFile := fs.String("sids", "", "file of the CallSids to get, one a line (readmodel --sids-out); without it, the server's calls are listed")
	list := fs.Int("list", 100_000, "without --sids: list at most this many calls (ListCalls paging) to get; 0: all")
	rate := fs.Int("rate", 10_000, "calls per second")
	duration := fs.Duration("duration", 30*time.Second, "how long to send: rate x duration calls")
	callers := fs.Int("callers", openloop.DefaultCallers, "concurrent callers (open loop: enough that none waits for a free one unless the server is behind)")
	conns := fs.Int("conns", 4, "gRPC connections the callers share, as several internal services would call (one HTTP/2 connection serializes on its reader and writer)")
	legs := fs.Int("legs", 0, "count an answer with another number of legs as an error (2 for a readmodel); 0: any")
	wait := fs.Duration("wait", 10*time.Minute, "how long to wait for the query service to report SERVING (its read model caught up) before sending")
	_ = fs.Parse(args)
	n := int(float64(*rate) * duration.Seconds())
	if n <= 0 || *conns <= 0 {
		return fmt.Errorf("getcall: --rate %d for --duration %s is no call, or --conns %d", *rate, *duration, *conns)
	}
	if host, _, err := net.SplitHostPort(*addr); err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("getcall: --addr %s: want a loopback IP and port (the token is sent in clear)", *addr)
	}
	tok, err := apiToken(*token, *tokenFile, *dataDir)
	if err != nil {
		return fmt.Errorf("getcall: %w", err)
	}
	clients := make([]callledgerv1.CallQueryServiceClient, *conns)
	var first *grpc.ClientConn
	for i := range clients {
		conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(grpcauth.Bearer{Token: tok, AllowPlaintext: true}))
		if err != nil {
			return fmt.Errorf("getcall: --addr %s: %w", *addr, err)
		}
		defer conn.Close()
		clients[i] = callledgerv1.NewCallQueryServiceClient(conn)
		if first == nil {
			first = conn
		}
	}
	ctx := context.Background()
	if err := waitServing(ctx, healthpb.NewHealthClient(first), *wait); err != nil {
		return fmt.Errorf("getcall: %w", err)
	}
	sids, err := callSIDs(ctx, clients[0], *sidsFile, *list)
	if err != nil {
		return fmt.Errorf("getcall: %w", err)
	}
	get := func(ctx context.Context, c callledgerv1.CallQueryServiceClient, sid string) error {
		resp, err := c.GetCall(ctx, &callledgerv1.GetCallRequest{CallSid: sid})
		if err == nil && *legs > 0 && len(resp.GetLegs()) != *legs {
			err = fmt.Errorf("GetCall %s: %d legs, want %d", sid, len(resp.GetLegs()), *legs)
		}
		return err
	}
	// One call first: a server without these calls (another read model
	// version, the wrong data directory) is said so, not measured.
	if err := get(ctx, clients[0], sids[0]); err != nil {
		return fmt.Errorf("getcall: the first call: %w", err)
	}
	res, err := openloop.Run(ctx, openloop.Config{Rate: *rate, Requests: n, Callers: *callers},
		func(ctx context.Context, caller, i int) error {
			return get(ctx, clients[caller%len(clients)], sids[(i*7919)%len(sids)])
		})
	if err != nil {
		return fmt.Errorf("getcall: %w", err)
	}
	us := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	cpu := "unknown"
	if c, ok := res.CPUPerRequest(); ok {
		cpu = fmt.Sprintf("%.1f", float64(c.Nanoseconds())/1e3)
	}
	fmt.Printf("RESULT rate=%d calls=%d sids=%d sent=%.0f/s done=%.0f/s p50=%s p90=%s p99=%s p99.9=%s max=%s errors=%d late_p99=%s client_cpu_us_per_call=%s\n",
		*rate, res.Requests, len(sids), res.SentPerSecond(), float64(res.Requests)/res.Elapsed.Seconds(),
		us(openloop.Quantile(res.Latency, 0.5)), us(openloop.Quantile(res.Latency, 0.9)), us(openloop.Quantile(res.Latency, 0.99)),
		us(openloop.Quantile(res.Latency, 0.999)), us(openloop.Quantile(res.Latency, 1)), res.Errors,
		us(openloop.Quantile(res.Late, 0.99)), cpu)
	if res.Errors > 0 {
		fmt.Printf("FIRST_ERROR %v\n", res.FirstErr)
	}
	return nil
}

// apiToken is the token to call with: given, from a file, or the local API
// token a server keeps in its data directory (as `callledger calls` finds
// it).
func apiToken(token, file, dataDir string) (string, error) {
	switch {
	case token != "":
		return token, nil
	case file != "":
		return secretfile.Token("--token-file", file)
	case dataDir != "":
		return server.ReadLocalAPIToken(dataDir)
	}
	return "", errors.New("no token: give --token, --token-file or the server's --data-dir")
}

// waitServing waits up to limit for the query service's gRPC health to
// say SERVING: /readyz answers before the read model has caught up with
// the ledger, and a GetCall then may not find its call.
func waitServing(ctx context.Context, health healthpb.HealthClient, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	service := callledgerv1.CallQueryService_ServiceDesc.ServiceName
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not SERVING within --wait %s (last: %v %v)", service, limit, resp.GetStatus(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// callSIDs reads the CallSids of file, one a line, or without a file
// lists up to limit calls of the server (all for 0).
func callSIDs(ctx context.Context, c callledgerv1.CallQueryServiceClient, file string, limit int) ([]string, error) {
	var sids []string
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--sids: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				sids = append(sids, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--sids %s: %w", file, err)
		}
		if len(sids) == 0 {
			return nil, fmt.Errorf("--sids %s: no CallSid in it", file)
		}
		return sids, nil
	}
	token := ""
	for limit == 0 || len(sids) < limit {
		page, err := c.ListCalls(ctx, &callledgerv1.ListCallsRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list calls: %w", err)
		}
		for _, call := range page.GetCalls() {
			sids = append(sids, call.GetCallSid())
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if limit > 0 && len(sids) > limit {
		sids = sids[:limit]
	}
	if len(sids) == 0 {
		return nil, errors.New("the server lists no calls: load some (ingestbench readmodel, callledger load) or give --sids")
	}
	return sids, nil
}
