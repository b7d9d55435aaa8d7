// Package ledgerload fills an event store with realistic call history,
// fast, for rebuild benchmarks and demos: it generates whole call flows
// with the traffic package, derives their events exactly as the webhook
// does (verbatim request included), and appends them straight to the
// store, bypassing HTTP and signature checks.
//
// Events of one stream within a chunk of generated calls go in one
// append (the webhook appends one request at a time), so the log is
// less interleaved than live traffic makes it; the events themselves are
// byte for byte what the webhook would store.
package ledgerload

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/ledger"
	"github.com/callledger/callledger/traffic"
	"github.com/callledger/callledger/twilio"
)

// Appender is the part of the event store the loader writes to.
type Appender interface {
	Append(ctx context.Context, stream string, expected eventstore.StreamState, events ...eventstore.EventData) (eventstore.AppendResult, error)
}

// Config says how much to load.
type Config struct {
	// Events is the number of events to append (rounded up to whole chunks
	// of calls).
	Events int
	// Seed makes the history reproducible.
	Seed uint64
	// Start is the time of the first call (default: Events × 10 ms before
	// now, so the history ends around now).
	Start time.Time
	// CallsPerChunk is the number of call trees generated at once (default
	// 2000).
	CallsPerChunk int
	// Workers generate events concurrently (default GOMAXPROCS).
	Workers int
	// Appenders append concurrently (default 256): the store's group
	// commit turns many concurrent appends into few fsyncs.
	Appenders int
	// Progress, when set, is called after each chunk with the events
	// appended so far. It may be called from several goroutines at once.
	Progress func(events int64)
}

// publicURL and token sign the generated requests; the loader does not
// check signatures, but the stored requests carry them as Twilio's do.
const (
	publicURL = "https://hooks.example.com"
	token     = "ledgerload-development-token"
)

// Stats describe a finished load.
type Stats struct {
	Events  int64 // events appended (duplicates excluded)
	Calls   int64 // call trees generated
	Elapsed time.Duration
}

// Load appends cfg.Events events of realistic call history to store.
func Load(ctx context.Context, store Appender, cfg Config) (Stats, error) {
	if cfg.Events <= 0 {
		return Stats{}, errors.New("ledgerload: Events must be positive")
	}
	if cfg.CallsPerChunk <= 0 {
		cfg.CallsPerChunk = 2000
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Appenders <= 0 {
		cfg.Appenders = 256
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now().UTC().Add(-time.Duration(cfg.Events) * 10 * time.Millisecond).Truncate(time.Second)
	}
	start := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		events, calls, queued atomic.Int64
		chunk                 atomic.Uint64
		gen, app              sync.WaitGroup
		appends               = make(chan append1, 4*cfg.Appenders)
	)
	for range cfg.Appenders {
		app.Go(func() {
			for a := range appends {
				if ctx.Err() != nil {
					continue
				}
				res, err := store.Append(ctx, a.stream, eventstore.Any(), a.records...)
				if err != nil {
					cancel(fmt.Errorf("ledgerload: append %s: %w", a.stream, err))
					continue
				}
				total := events.Add(int64(len(a.records) - len(res.Duplicates)))
				if cfg.Progress != nil && total/100_000 != (total-int64(len(a.records)))/100_000 {
					cfg.Progress(total)
				}
			}
		})
	}
	for range cfg.Workers {
		gen.Go(func() {
			for queued.Load() < int64(cfg.Events) && ctx.Err() == nil {
				i := chunk.Add(1) - 1
				streams, err := generate(cfg, i)
				if err != nil {
					cancel(err)
					return
				}
				calls.Add(int64(cfg.CallsPerChunk))
				for _, a := range streams {
					queued.Add(int64(len(a.records)))
					select {
					case appends <- a:
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	gen.Wait()
	close(appends)
	app.Wait()
	st := Stats{Events: events.Load(), Calls: calls.Load(), Elapsed: time.Since(start)}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return st, fmt.Errorf("ledgerload: %w", err)
	}
	return st, nil
}

// append1 is one append: the events of one stream in a chunk.
type append1 struct {
	stream  string
	records []eventstore.EventData
}

// generate generates chunk i's calls and derives their events, grouped by
// stream in first-seen order.
func generate(cfg Config, i uint64) ([]append1, error) {
	chunkStart := cfg.Start.Add(time.Duration(i) * time.Duration(cfg.CallsPerChunk) * 50 * time.Millisecond)
	reqs := traffic.Generate(traffic.Config{
		Calls:     cfg.CallsPerChunk,
		Seed:      cfg.Seed<<32 ^ i,
		PublicURL: publicURL,
		Token:     token,
		Start:     chunkStart,
		RetryRate: -1,
	})
	var out []append1
	byName := map[string]int{}
	for j, r := range reqs {
		derived := twilio.Derive(r.Kind, &twilio.Request{
			Method:      r.Method,
			URL:         publicURL + r.URI(),
			RawQuery:    r.Query,
			ContentType: r.Header.Get("Content-Type"),
			Header:      r.Header,
			Body:        r.Body,
			RemoteAddr:  "127.0.0.1:443",
			ReceivedAt:  chunkStart.Add(time.Duration(j) * 10 * time.Millisecond),
		})
		for _, d := range derived {
			rec, err := ledger.Encode(d.Event)
			if err != nil {
				return nil, fmt.Errorf("ledgerload: encode %s: %w", d.Stream, err)
			}
			k, ok := byName[d.Stream]
			if !ok {
				k = len(out)
				byName[d.Stream] = k
				out = append(out, append1{stream: d.Stream})
			}
			out[k].records = append(out[k].records, rec)
		}
	}
	return out, nil
}
