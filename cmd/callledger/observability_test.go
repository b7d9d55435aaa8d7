package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"gopkg.in/yaml.v3"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/grpctest"
	"github.com/callledger/callledger/internal/logsink"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/twilio"
)

// inProcessServer is `callledger serve` run in the test's process, so that
// every byte it writes is captured.
type inProcessServer struct {
	httpURL, grpcAddr string
	dataDir           string // of --data-dir
	out               *logsink.Buffer
	stop              func() error
}

// dial opens a gRPC connection to the server that authenticates with its
// local API token, as a client on the same machine does.
func (p *inProcessServer) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	tok, err := server.ReadLocalAPIToken(p.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return grpctest.Dial(t, p.grpcAddr, grpctest.Token(tok))
}

var (
	servingText = regexp.MustCompile(`msg="callledger serving" http=(\S+) grpc=(\S+)`)
	servingJSON = regexp.MustCompile(`"msg":"callledger serving","http":"([^"]+)","grpc":"([^"]+)"`)
)

func serveInProcess(t *testing.T, args ...string) *inProcessServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &logsink.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, args...), out, out)
	}()
	stopped := false
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.After(30 * time.Second) // a bound on failure, not a timing assertion
	for {
		s := out.String()
		for _, re := range []*regexp.Regexp{servingText, servingJSON} {
			if m := re.FindStringSubmatch(s); m != nil {
				dataDir := ""
				for i, a := range args[:len(args)-1] {
					if a == "--data-dir" {
						dataDir = args[i+1]
					}
				}
				return &inProcessServer{httpURL: "http://" + m[1], grpcAddr: m[2], dataDir: dataDir, out: out, stop: stop}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended before listening: %v\n%s", err, s)
		case <-deadline:
			t.Fatalf("serve did not listen within 30s:\n%s", s)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// runCLI runs the CLI in-process and returns everything it wrote.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out logsink.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, args, &out, &out)
	return out.String(), err
}

// scrape reads /metrics and returns it raw and parsed.
func scrape(t *testing.T, httpURL string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return string(body), fams
}

// sample finds the metric of a family with the given labels.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				continue next
			}
		}
		return m
	}
	return nil
}

// postSigned sends a status callback signed with token to srv.
func postSigned(t *testing.T, httpURL, publicURL, token, method string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, httpURL+"/twilio/voice/status", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("X-Twilio-Signature", twilio.Sign(token, publicURL+"/twilio/voice/status", []byte(body)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// signatureShape matches anything that looks like an X-Twilio-Signature
// (the base64 of an HMAC-SHA1).
var signatureShape = regexp.MustCompile(`[A-Za-z0-9+/]{27}=`)

// TestFullRunMetricsLogsAndNoSecrets runs serve and simulate, with a known
// token pair and in development mode, then requires: delivery delays,
// lag gauges and call counts on /metrics; GetStats answering; one log line
// with a request ID per refused request; and no token, development token or
// signature anywhere in what the server, simulate or /metrics wrote.
func TestFullRunMetricsLogsAndNoSecrets(t *testing.T) {
	t.Setenv("TWILIO_AUTH_TOKEN", "")
	t.Setenv("TWILIO_AUTH_TOKEN_SECONDARY", "")
	const (
		publicURL = "https://hooks.example.com"
		primary   = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
		secondary = "a5b4c3d2e1f00f1e2d3c4b5a69788796"
		wrong     = "ffffffffffffffffffffffffffffffff"
	)
	for _, mode := range []struct {
		name      string
		format    string
		withToken bool
	}{
		{"token json", "json", true},
		{"development text", "text", false},
	} {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"--data-dir", dir, "--log-format", mode.format}
			if mode.withToken {
				args = append(args, "--auth-token", primary, "--auth-token-secondary", secondary, "--public-url", publicURL)
			}
			srv := serveInProcess(t, args...)
			signedWith, secrets := primary, []string{primary, secondary}
			simArgs := []string{"simulate", "--target", srv.httpURL, "--calls", "60", "--concurrency", "4", "--seed", "11"}
			sentTo := publicURL
			if mode.withToken {
				simArgs = append(simArgs, "--token", primary, "--public-url", publicURL)
			} else {
				dev, err := server.ReadDevToken(dir)
				if err != nil {
					t.Fatal(err)
				}
				signedWith, secrets, sentTo = dev, []string{dev}, srv.httpURL
				simArgs = append(simArgs, "--data-dir", dir)
			}
			simOut, err := runCLI(t, simArgs...)
			if err != nil {
				t.Fatalf("simulate: %v\n%s", err, simOut)
			}

			// Refusals: a wrong token, no signature, a wrong method, a body
			// too large (validly signed).
			body := url.Values{
				"CallSid":    {"CA00000000000000000000000000000001"},
				"CallStatus": {"ringing"},
				"Timestamp":  {time.Now().UTC().Format("Mon, 2 Jan 2006 15:04:05 -0700")},
			}.Encode()
			var sentSigs []string
			for _, r := range []struct {
				token, method, body string
				want                int
			}{
				{wrong, http.MethodPost, body, http.StatusForbidden},
				{"", http.MethodPost, body, http.StatusForbidden},
				{signedWith, http.MethodPut, body, http.StatusMethodNotAllowed},
				{signedWith, http.MethodPost, body + "&Pad=" + strings.Repeat("x", 70<<10), http.StatusRequestEntityTooLarge},
			} {
				if resp := postSigned(t, srv.httpURL, sentTo, r.token, r.method, r.body); resp.StatusCode != r.want {
					t.Errorf("%s signed with %q: %d, want %d", r.method, r.token, resp.StatusCode, r.want)
				}
				if r.token != "" {
					sentSigs = append(sentSigs, twilio.Sign(r.token, sentTo+"/twilio/voice/status", []byte(r.body)))
				}
			}

			// GetStats over gRPC, once the projection has applied what
			// simulate sent.
			conn := srv.dial(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stats *callledgerv1.GetStatsResponse
			for {
				stats, err = callledgerv1.NewCallQueryServiceClient(conn).GetStats(ctx, &callledgerv1.GetStatsRequest{})
				if err == nil && stats.GetTotalCalls() > 0 && stats.GetActiveCalls() == 0 {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("GetStats never showed the simulated calls ended: %v %v", stats, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if d := stats.GetDeliveryDelay(); d.GetSamples() == 0 || d.GetMax().AsDuration() <= 0 || d.GetMax().AsDuration() > time.Minute {
				t.Errorf("GetStats delivery delay %v: want samples of a realistic delay", d)
			}

			raw, fams := scrape(t, srv.httpURL)
			delay := sample(fams, "callledger_twilio_delivery_delay_seconds", map[string]string{"kind": "status"})
			if delay.GetHistogram().GetSampleCount() == 0 {
				t.Errorf("no delivery delays of status callbacks on /metrics")
			} else if mean := delay.GetHistogram().GetSampleSum() / float64(delay.GetHistogram().GetSampleCount()); mean > 10 {
				t.Errorf("mean delivery delay %.1fs: simulate should send callbacks as they are dated", mean)
			}
			for _, name := range []string{"callledger_projection_lag_events", "callledger_projection_lag_seconds", "callledger_active_calls"} {
				if sample(fams, name, nil) == nil {
					t.Errorf("%s missing from /metrics", name)
				}
			}
			if m := sample(fams, "callledger_calls", map[string]string{"status": "completed"}); m.GetGauge().GetValue() == 0 {
				t.Errorf("no completed calls on /metrics")
			}
			if m := sample(fams, "callledger_webhook_requests_total", map[string]string{"route": "/twilio/voice/status", "code": "204"}); m.GetCounter().GetValue() == 0 {
				t.Errorf("no 204 answers counted")
			}
			if m := sample(fams, "callledger_webhook_signature_failures_total", map[string]string{"kind": "status"}); m.GetCounter().GetValue() != 2 {
				t.Errorf("signature failures %v, want 2", m)
			}
			if m := sample(fams, "grpc_server_handled_total", map[string]string{"grpc_method": "GetStats", "grpc_code": "OK"}); m.GetCounter().GetValue() == 0 {
				t.Errorf("GetStats calls not counted by the gRPC metrics")
			}
			if m := sample(fams, "callledger_store_group_commit_appends", nil); m.GetHistogram().GetSampleCount() == 0 {
				t.Errorf("no group commits observed")
			}
			if mode.withToken {
				checkDocsName(t, fams)
			}

			if err := srv.stop(); err != nil {
				t.Fatalf("serve: %v", err)
			}
			logs := srv.out.String()
			refusals := 0
			for _, line := range strings.Split(logs, "\n") {
				if !strings.Contains(line, `msg="refused:`) && !strings.Contains(line, `"msg":"refused:`) {
					continue
				}
				refusals++
				if !strings.Contains(line, "request_id") {
					t.Errorf("refusal logged without a request ID: %s", line)
				}
			}
			if refusals != 4 {
				t.Errorf("%d refusal lines for 4 refused requests:\n%s", refusals, logs)
			}
			all := logs + simOut + raw
			for _, s := range append(secrets, sentSigs...) {
				if strings.Contains(all, s) {
					t.Errorf("output contains the secret %q", s)
				}
			}
			if m := signatureShape.FindString(all); m != "" {
				t.Errorf("output contains something shaped like a signature: %q", m)
			}
		})
	}
}

// metricName finds the metric names in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:callledger|grpc_server)_[a-z0-9_]+\b`)

// checkDocsName requires the alert rules and the dashboard to be what
// their tools load, and every metric they name to be exported.
func checkDocsName(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	exported := func(name string) bool {
		if fams[name] != nil {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if f := fams[base]; f != nil && f.GetType() == dto.MetricType_HISTOGRAM {
					return true
				}
			}
		}
		return false
	}
	var exprs []string

	raw, err := os.ReadFile("../../docs/alerts/callledger.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: want alert, expr, severity and summary", r)
			}
			alerts[r.Alert] = true
			exprs = append(exprs, r.Expr)
		}
	}
	for _, want := range []string{"CallledgerTwilioDeliveryDelayHigh", "CallledgerProjectionLagging", "CallledgerSignatureFailures", "CallledgerUnavailable"} {
		if !alerts[want] {
			t.Errorf("alert rules lack %s", want)
		}
	}

	raw, err = os.ReadFile("../../docs/dashboards/callledger.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			GridPos struct {
				W, H int
			} `json:"gridPos"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion == 0 || len(dash.Panels) == 0 {
		t.Errorf("dashboard lacks title, uid, schemaVersion or panels")
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if p.Type == "" || p.Title == "" || p.GridPos.W == 0 || p.GridPos.H == 0 || len(p.Targets) == 0 || ids[p.ID] {
			t.Errorf("panel %d %q: want a unique id, type, title, size and targets", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				t.Errorf("panel %q has a target without expr or refId", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	named := 0
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			named++
			if !exported(name) {
				t.Errorf("%s is named by the rules or the dashboard (%s) but not exported", name, e)
			}
		}
	}
	if named == 0 {
		t.Error("rules and dashboard name no metric")
	}
}

var servingMetrics = regexp.MustCompile(`msg="callledger serving" .* metrics=(\S+)`)

// TestMetricsOnTheirOwnListener: with --metrics-addr, /metrics answers
// there, after a webhook has been counted, and no longer on the listener
// Twilio reaches; without it, /metrics stays on --http-addr.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	t.Setenv("TWILIO_AUTH_TOKEN", "")
	t.Setenv("TWILIO_AUTH_TOKEN_SECONDARY", "")
	srv := serveInProcess(t, "--data-dir", t.TempDir(), "--metrics-addr", "127.0.0.1:0")
	m := servingMetrics.FindStringSubmatch(srv.out.String())
	if m == nil {
		t.Fatalf("no metrics address in the serving line:\n%s", srv.out.String())
	}
	metricsURL := "http://" + m[1]
	if metricsURL == srv.httpURL {
		t.Fatalf("metrics on the webhook listener %s", srv.httpURL)
	}
	resp, err := http.Post(srv.httpURL+"/twilio/voice/status", "application/x-www-form-urlencoded", strings.NewReader("CallSid=CA00000000000000000000000000000001"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned webhook: HTTP %d, want 403", resp.StatusCode)
	}
	_, families := scrape(t, metricsURL)
	refused := 0.0
	for _, mf := range families {
		if mf.GetName() == "callledger_webhook_requests_total" {
			for _, s := range mf.GetMetric() {
				refused += s.GetCounter().GetValue()
			}
		}
	}
	if refused != 1 {
		t.Errorf("callledger_webhook_requests_total on --metrics-addr counts %v requests, want the 1 refused", refused)
	}
	resp, err = http.Get(srv.httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on --http-addr with --metrics-addr set: HTTP %d, want 404", resp.StatusCode)
	}
	if err := srv.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}
