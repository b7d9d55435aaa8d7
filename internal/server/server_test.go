package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/server/servertest"
	"github.com/callledger/callledger/traffic"
)

// failBound bounds every wait: reaching it is a failure.
const failBound = 30 * time.Second

const (
	token     = "server-test-token"
	publicURL = "https://hooks.example.com"
)

// start builds a server from cfg on loopback ports and runs it; the
// returned func stops it and returns what Run returned.
func start(t *testing.T, cfg server.Config) (*server.Server, func() error) {
	t.Helper()
	cfg.HTTP.AuthToken, cfg.HTTP.PublicURL = token, publicURL
	return startAsIs(t, cfg)
}

// startAsIs is start without a Twilio auth token unless cfg has one: a
// server without one is in development mode, as after `make run`.
func startAsIs(t *testing.T, cfg server.Config) (*server.Server, func() error) {
	t.Helper()
	return servertest.Start(t, cfg)
}

// TestStoreMetricsOnEveryBackend: the appends of webhooks are measured on
// the embedded store and on KurrentDB alike; group-commit figures exist
// only where there is a group commit.
func TestStoreMetricsOnEveryBackend(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"embedded", "kurrentdb"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			var cfg server.Config
			if backend == "kurrentdb" {
				kdb, err := kurrentdbtest.Start(kurrentdbtest.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(kdb.Close)
				cfg.StoreURL = kdb.ConnString()
			}
			srv, _ := start(t, cfg)
			base := "http://" + srv.Addrs().HTTP
			sent := 0
			for _, r := range traffic.Generate(traffic.Config{Calls: 2, Seed: 7, PublicURL: publicURL, Token: token, RetryRate: -1}) {
				req, err := http.NewRequest(r.Method, base+r.URI(), bytes.NewReader(r.Body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header = r.Header.Clone()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					t.Fatalf("%s %s: HTTP %d", r.Method, r.Path, resp.StatusCode)
				}
				sent++
			}
			fams := scrape(t, base+"/metrics")
			value := func(name string) float64 {
				f := fams[name]
				if f == nil {
					t.Fatalf("%s not exported", name)
				}
				m := f.GetMetric()[0]
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
			if got := value("callledger_store_appends_total"); got < float64(sent) {
				t.Errorf("appends_total %v after %d webhooks", got, sent)
			}
			if got := value("callledger_store_append_seconds"); got < float64(sent) {
				t.Errorf("append_seconds counted %v appends after %d webhooks", got, sent)
			}
			if got := value("callledger_store_events_total"); got < float64(sent) {
				t.Errorf("events_total %v after %d webhooks", got, sent)
			}
			if got := value("callledger_store_append_errors_total"); got != 0 {
				t.Errorf("append_errors_total %v", got)
			}
			_, groupCommits := fams["callledger_store_commits_total"]
			if want := backend == "embedded"; groupCommits != want {
				t.Errorf("commits_total exported: %v, want %v", groupCommits, want)
			}
			if groupCommits && value("callledger_store_commits_total") == 0 {
				t.Error("no group commit counted")
			}
		})
	}
}

// dialLocal opens a gRPC connection to srv that authenticates with its
// local API token.
func dialLocal(t *testing.T, srv *server.Server) *grpc.ClientConn {
	t.Helper()
	tok, err := server.ReadLocalAPIToken(srv.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	return grpctest.Dial(t, srv.Addrs().GRPC, grpctest.Token(tok))
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// TestShutdownEndsStreams: a WatchCalls stream never ends on its own; the
// shutdown ends it once ShutdownTimeout has passed, and Run returns
// cleanly.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	srv, stop := start(t, server.Config{ShutdownTimeout: 50 * time.Millisecond})
	client := callledgerv1.NewCallQueryServiceClient(dialLocal(t, srv))
	ctx, cancel := context.WithTimeout(context.Background(), failBound)
	defer cancel()
	watch, err := client.WatchCalls(ctx, &callledgerv1.WatchCallsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := watch.Recv(); err != nil || !m.GetCaughtUp() {
		t.Fatalf("watch start: %v %v", m, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := watch.Recv(); err == nil {
		t.Error("the stream outlived the server")
	}
}

// TestWebhooksRole: a webhook replica serves no gRPC and keeps no read
// model.
func TestWebhooksRole(t *testing.T) {
	t.Parallel()
	srv, _ := start(t, server.Config{Role: server.RoleWebhooks})
	if a := srv.Addrs(); a.HTTP == "" || a.GRPC != "" || a.Metrics != "" {
		t.Errorf("addresses %+v: want HTTP alone", a)
	}
	if srv.Projection() != nil {
		t.Error("a webhook replica has a read model")
	}
}
