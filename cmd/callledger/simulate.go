package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/traffic"
)

type simulateConfig struct {
	target      string
	token       string
	publicURL   string
	dataDir     string
	calls       int
	concurrency int
	seed        uint64
	retryRate   float64
}

func simulateCommand(stdout, stderr io.Writer) *ffcli.Command {
	var cfg simulateConfig
	fs := newFlagSet("simulate", stderr)
	fs.StringVar(&cfg.target, "target", "http://127.0.0.1:8080", "base URL of the callledger server to send to")
	fs.StringVar(&cfg.token, "token", "", "auth token to sign with; default TWILIO_AUTH_TOKEN, else the development token in --data-dir")
	fs.StringVar(&cfg.publicURL, "public-url", "", "public URL the server checks signatures against (default: --target)")
	fs.StringVar(&cfg.dataDir, "data-dir", "./data", "data directory of a development server, where its development token lives")
	fs.IntVar(&cfg.calls, "calls", 100, "number of call trees to simulate")
	fs.IntVar(&cfg.concurrency, "concurrency", 8, "requests in flight at once")
	fs.Uint64Var(&cfg.seed, "seed", 0, "random seed (0: a new one each run)")
	fs.Float64Var(&cfg.retryRate, "retry-rate", 0.05, "share of requests Twilio delivers twice")
	return &ffcli.Command{
		Name:       "simulate",
		ShortUsage: "callledger simulate [--target URL] [--token T] [--public-url U] [--calls N] [--concurrency C]",
		ShortHelp:  "send realistic signed Twilio call flows to a server",
		LongHelp: "Sends whole call flows (outbound calls, inbound calls that <Dial> a child leg,\n" +
			"recordings) out of order and with retries, signed as Twilio signs them, and\n" +
			"checks every answer. Against `make run` it needs no flags.",
		FlagSet: fs,
		Options: ffOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("simulate takes no arguments, got %q", args)
			}
			return simulate(ctx, cfg, stdout)
		},
	}
}

func simulate(ctx context.Context, cfg simulateConfig, stdout io.Writer) error {
	cfg.target = strings.TrimSuffix(cfg.target, "/")
	if cfg.publicURL == "" {
		cfg.publicURL = cfg.target
	}
	if cfg.token == "" {
		tok, err := server.ReadDevToken(cfg.dataDir)
		if err != nil {
			return fmt.Errorf("no --token and no TWILIO_AUTH_TOKEN; looked for a development server's token: %w", err)
		}
		cfg.token = tok
	}
	if cfg.calls <= 0 || cfg.concurrency <= 0 {
		return errors.New("--calls and --concurrency must be positive")
	}
	if cfg.seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano())
	}
	tcfg := traffic.Config{
		Calls: cfg.calls, Seed: cfg.seed, PublicURL: cfg.publicURL, Token: cfg.token, RetryRate: cfg.retryRate,
	}
	reqs := traffic.Generate(tcfg)
	// Requests are dated as they go out, so the server measures realistic
	// delivery delays.
	stamper := traffic.NewStamper(tcfg)

	client := &http.Client{
		Timeout:   15 * time.Second, // Twilio's own limit
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.concurrency, MaxConnsPerHost: cfg.concurrency},
	}
	var (
		mu         sync.Mutex
		answers    = map[int]int{}
		unexpected []string
		retries    int
	)
	work := make(chan traffic.Request)
	var wg sync.WaitGroup
	start := time.Now()
	for range cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				r = stamper.Stamp(r, time.Now())
				code, err := send(ctx, client, cfg.target, r)
				mu.Lock()
				if err != nil {
					unexpected = append(unexpected, fmt.Sprintf("%s %s: %v", r.Method, r.URI(), err))
				} else {
					answers[code]++
					if code != r.Expect {
						unexpected = append(unexpected, fmt.Sprintf("%s %s (%s): got %d, want %d", r.Method, r.Path, r.CallSid, code, r.Expect))
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, r := range reqs {
		if r.Retry {
			retries++
		}
		select {
		case work <- r:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)

	codes := make([]int, 0, len(answers))
	for c := range answers {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var tally []string
	for _, c := range codes {
		tally = append(tally, fmt.Sprintf("%d×%d", c, answers[c]))
	}
	fmt.Fprintf(stdout, "sent %d requests (%d retries) for %d call trees to %s in %s (%.0f req/s): %s\n",
		len(reqs), retries, cfg.calls, cfg.target, elapsed.Round(time.Millisecond),
		float64(len(reqs))/elapsed.Seconds(), strings.Join(tally, " "))
	if len(unexpected) > 0 {
		for i, u := range unexpected {
			if i == 10 {
				fmt.Fprintf(stdout, "... and %d more\n", len(unexpected)-10)
				break
			}
			fmt.Fprintln(stdout, "unexpected:", u)
		}
		return fmt.Errorf("%d of %d requests were not answered as Twilio expects", len(unexpected), len(reqs))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func send(ctx context.Context, client *http.Client, target string, r traffic.Request) (int, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, target+r.URI(), bytes.NewReader(r.Body))
	if err != nil {
		return 0, err
	}
	req.Header = r.Header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
