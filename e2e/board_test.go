package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/callledger/callledger/internal/corpus"
	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/traffic"
	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

// The browser tests drive the call board in headless Chromium (Debian's
// chromium package; `make test` installs it when missing). Without
// Chromium they are skipped, except in CI (CI set), where they must run.
var (
	boardScreenshot = flag.String("board-screenshot", "", "write a screenshot of the call board to this PNG file (the README's docs/board.png)")
	artifacts       = flag.String("artifacts", "", "directory for the screenshots of failed browser tests (default: a new directory under the system's temporary directory)")
)

// chromium finds the browser, or skips (fails in CI) without one.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium not found, and the browser tests must run in CI: `make test` installs Debian's chromium package")
	}
	t.Skip("Chromium not found: install Debian's chromium package (`make test` does) to run the browser tests")
	return ""
}

// boardStack is callledger with its API listener, and a headless Chromium
// tab on its call board.
type boardStack struct {
	// token and publicURL sign webhooks: the development token and the
	// webhook listener's own URL in development mode, else the corpus's.
	token, publicURL string
	hooks            string // base URL of the webhook listener
	api              string // base URL of the API listener
	httpc            *http.Client
	twilio           *resttest.Fake // nil without REST credentials
	tab              context.Context
}

type boardOptions struct {
	// rest gives the server Twilio REST credentials (a fake Twilio): the
	// board's Hang up then ends calls, and the reconciler runs.
	rest bool
	// hangupAfter is the reconciler's wait; 0 for its default.
	hangupAfter time.Duration
	// apiTokens, when set, is the server's --api-tokens file, and the
	// server runs with a Twilio auth token (so the API asks for a token);
	// else it runs as `make run` does, in development mode, where the API
	// takes this machine's requests without one.
	apiTokens string
}

// boardDevToken is the development webhook token the board tests' servers
// find in their data directory (and the REST account's auth token).
const boardDevToken = "devboardtoken0123456789"

func newBoard(t *testing.T, o boardOptions) *boardStack {
	t.Helper()
	exe := chromium(t)
	cfg := server.Config{
		DataDir:   t.TempDir(),
		API:       server.API{Addr: "127.0.0.1:0"},
		Reconcile: server.Reconcile{HangupAfter: o.hangupAfter, IdleAfter: time.Hour, Interval: 20 * time.Millisecond},
	}
	b := &boardStack{httpc: &http.Client{Timeout: failBound}, token: boardDevToken}
	if o.apiTokens != "" {
		cfg.HTTP.AuthToken, cfg.HTTP.PublicURL, cfg.GRPC.APITokens = corpus.Token, corpus.PublicURL, o.apiTokens
		b.token, b.publicURL = corpus.Token, corpus.PublicURL
	} else if err := os.WriteFile(filepath.Join(cfg.DataDir, "dev-auth-token"), []byte(boardDevToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.rest {
		// The account's auth token signs its webhooks, as at Twilio.
		creds := rest.Account{AccountSid: account, AuthToken: b.token}
		b.twilio = resttest.New(t, creds)
		file := filepath.Join(t.TempDir(), "accounts.json")
		body, err := json.Marshal(map[string]any{"accounts": []map[string]string{{"account_sid": creds.AccountSid, "auth_token": creds.AuthToken}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, body, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Twilio.AccountsFile = file
		cfg.Seams.RESTTransport = b.twilio.Transport()
	}
	srv := startServer(t, cfg)
	b.hooks, b.api = "http://"+srv.Addrs().HTTP, "http://"+srv.Addrs().API
	if b.publicURL == "" {
		b.publicURL = b.hooks // development mode signs for the listener's own URL
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelAlloc)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	b.tab = tab
	t.Cleanup(func() { // before the browser stops
		if t.Failed() {
			b.saveScreenshot(t)
		}
	})
	return b
}

// saveScreenshot keeps what the board showed when a test failed.
func (b *boardStack) saveScreenshot(t *testing.T) {
	dir := *artifacts
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "callledger-board-"); err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(b.tab, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("no screenshot: %v", err)
		return
	}
	t.Logf("screenshot of the board at the failure: %s", path)
}

// observer records, in the browser's clock (ms since the epoch), when each
// call's row first appeared and first took each state, and when its Hang
// up button was clicked.
const observer = `(() => {
  if (window.__t) return true;
  const now = () => performance.timeOrigin + performance.now();
  window.__t = {rows: {}, click: {}};
  const scan = () => {
    const t = now();
    for (const tr of document.querySelectorAll("#call-rows tr.call")) {
      const s = (window.__t.rows[tr.dataset.sid] ??= {});
      s.row ??= t;
      s[tr.dataset.state] ??= t;
    }
  };
  new MutationObserver(scan).observe(document.getElementById("call-rows"),
    {subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"]});
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button.hangup");
    if (b) window.__t.click[b.closest("tr").dataset.sid] = now();
  }, true);
  scan();
  return true;
})()`

// open loads the board and waits until its watch is live.
func (b *boardStack) open(t *testing.T) {
	t.Helper()
	b.do(t, chromedp.Navigate(b.api+"/"))
	b.waitJS(t, `document.getElementById("conn").dataset.state === "live"`)
	b.do(t, chromedp.Evaluate[chromedp.Void](observer))
}

func (b *boardStack) do(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, failBound)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eval evaluates expr in the page.
func eval[T any](t *testing.T, b *boardStack, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, failBound)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: %s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr is truthy in the page.
func (b *boardStack) waitJS(t *testing.T, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, failBound+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(failBound)))
	if err != nil {
		t.Fatalf("the board never showed %s: %v", expr, err)
	}
}

// seen waits until the observer has seen sid's row in state ("row" for
// any) and returns when, in ms since the epoch.
func (b *boardStack) seen(t *testing.T, sid, state string) float64 {
	t.Helper()
	expr := fmt.Sprintf(`window.__t.rows[%q]?.[%q]`, sid, state)
	b.waitJS(t, expr)
	return eval[float64](t, b, expr)
}

// nowMs is the machine's clock, which the browser shares, in ms since the
// epoch.
func nowMs() float64 { return float64(time.Now().UnixNano()) / 1e6 }

// send delivers a webhook and returns when it was acknowledged.
func (b *boardStack) send(t *testing.T, r traffic.Request) float64 {
	t.Helper()
	req, err := http.NewRequest(r.Method, b.hooks+r.URI(), bytes.NewReader(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = r.Header.Clone()
	resp, err := b.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	acked := nowMs()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: HTTP %d", r.Method, r.Path, resp.StatusCode)
	}
	return acked
}

// status sends a status callback of sid as Twilio would, dated lateBy
// before now, and returns when it was acknowledged.
func (b *boardStack) status(t *testing.T, sid, callStatus string, seq int, lateBy time.Duration, extra ...string) float64 {
	t.Helper()
	f := url.Values{
		"CallSid": {sid}, "AccountSid": {account}, "CallStatus": {callStatus}, "SequenceNumber": {strconv.Itoa(seq)},
		"Timestamp":      {time.Now().Add(-lateBy).UTC().Format("Mon, 2 Jan 2006 15:04:05 -0700")},
		"CallbackSource": {"call-progress-events"}, "From": {"+14155550100"}, "To": {"+14155550199"}, "Direction": {"outbound-api"},
		"ApiVersion": {"2010-04-01"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	body := []byte(f.Encode())
	const uri = "/twilio/voice/status"
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("X-Twilio-Signature", twilio.Sign(b.token, b.publicURL+uri, body))
	return b.send(t, traffic.Request{Method: http.MethodPost, Path: uri, Header: h, Body: body})
}

// getJSON reads a REST route of the API.
func (b *boardStack) getJSON(t *testing.T, path string, out any) {
	t.Helper()
	resp, err := b.httpc.Get(b.api + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// activeCalls is the server's count of active calls (GetStats).
func (b *boardStack) activeCalls(t *testing.T) string {
	t.Helper()
	var stats struct {
		ActiveCalls string `json:"activeCalls"`
	}
	b.getJSON(t, "/v1/stats", &stats)
	return stats.ActiveCalls
}

// waitCountRight waits until the board's count of active calls is the
// server's, read after the board's.
func (b *boardStack) waitCountRight(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(failBound)
	for {
		shown := eval[string](t, b, `document.getElementById("active-count").textContent`)
		server := b.activeCalls(t)
		if shown == server {
			return shown
		}
		if time.Now().After(deadline) {
			t.Fatalf("the board counts %s active calls, the server %s", shown, server)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func terminalStatus(s string) bool {
	switch s {
	case "completed", "busy", "failed", "no-answer", "canceled":
		return true
	}
	return false
}

// TestBoardShowsTrafficLive: every call of simulated traffic shows on the
// board within a second of the acknowledgement of the webhook that made it
// active, and the board's count of active calls ends equal to the
// server's.
func TestBoardShowsTrafficLive(t *testing.T) {
	b := newBoard(t, boardOptions{})
	b.open(t)
	cfg := traffic.Config{Calls: 8, Seed: 11, PublicURL: b.publicURL, Token: b.token, RetryRate: -1}
	stamper := traffic.NewStamper(cfg)
	ended, checked := map[string]bool{}, map[string]bool{}
	var worst float64
	for _, r := range traffic.Generate(cfg) {
		r = stamper.Stamp(r, time.Now())
		acked := b.send(t, r)
		if r.Kind != twilio.KindStatus {
			continue
		}
		form, err := url.ParseQuery(string(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		sid, st := form.Get("CallSid"), form.Get("CallStatus")
		switch {
		case terminalStatus(st):
			ended[sid] = true
		case !ended[sid] && !checked[sid]:
			// The first report that makes the call active.
			checked[sid] = true
			appeared := b.seen(t, sid, "row")
			delay := appeared - acked
			worst = max(worst, delay)
			if delay > 1000 {
				t.Errorf("%s (%s) appeared on the board %.0f ms after its webhook was acknowledged; want at most 1 s", sid, st, delay)
			}
		}
	}
	if len(checked) < cfg.Calls {
		t.Fatalf("only %d calls were ever active, from %d call trees: the traffic did not exercise the board", len(checked), cfg.Calls)
	}
	t.Logf("%d calls appeared; the slowest %.0f ms after its acknowledgement", len(checked), worst)
	b.waitCountRight(t)
}

// TestBoardHangUp: a click on Hang up shows the call as ending within
// 200 ms (in the browser's clock), Twilio is asked to end it, and the
// terminal state shows when the status callback arrives.
func TestBoardHangUp(t *testing.T) {
	b := newBoard(t, boardOptions{rest: true})
	b.open(t)
	const sid = "CA4000000000000000000000000000000d"
	b.twilio.Put(resttest.Call{Sid: sid, AccountSid: account, Status: "in-progress", StartTime: time.Now()})
	b.status(t, sid, "initiated", 0, 100*time.Millisecond)
	b.status(t, sid, "ringing", 1, 100*time.Millisecond)
	b.status(t, sid, "in-progress", 2, 100*time.Millisecond)
	b.waitJS(t, fmt.Sprintf(`document.querySelector('tr[data-sid=%q]')?.dataset.status === "CALL_STATUS_IN_PROGRESS"`, sid))

	b.do(t, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-sid=%q] button.hangup`, sid))))
	ending := b.seen(t, sid, "ending")
	clicked := eval[float64](t, b, fmt.Sprintf(`window.__t.click[%q]`, sid))
	if d := ending - clicked; d > 200 || d < 0 {
		t.Errorf("the call showed as ending %.1f ms after the click; want within 200 ms", d)
	} else {
		t.Logf("ending %.1f ms after the click", d)
	}
	if got := eval[string](t, b, fmt.Sprintf(`document.querySelector('tr[data-sid=%q] .status').textContent`, sid)); got != "ending" {
		t.Errorf("the status cell reads %q while the hang-up is pending, want ending", got)
	}
	select {
	case u := <-b.twilio.Updates():
		if u.Form.Get("Status") != "completed" || !strings.HasSuffix(u.Path, "/Calls/"+sid+".json") {
			t.Errorf("Twilio received %+v", u)
		}
	case <-time.After(failBound):
		t.Fatal("the hang-up never reached Twilio")
	}

	b.status(t, sid, "completed", 3, 100*time.Millisecond, "CallDuration", "17")
	b.seen(t, sid, "terminal")
	row := fmt.Sprintf(`document.querySelector('tr[data-sid=%q]')`, sid)
	if got := eval[string](t, b, row+`.querySelector(".status").textContent`); got != "completed" {
		t.Errorf("after the completed callback the status reads %q, want completed", got)
	}
	if !eval[bool](t, b, row+`.querySelector("button.hangup").hidden`) {
		t.Error("an ended call still offers Hang up")
	}
	if got := eval[string](t, b, `document.getElementById("notices").textContent`); got != "" {
		t.Errorf("notices after a hang-up that ended the call: %q", got)
	}
	b.waitCountRight(t)
}

// TestBoardHangUpRefused: a hang-up the server refuses (here a token
// without calls:hangup) shows as ending from the click, then puts the call
// back, says why, and records nothing.
func TestBoardHangUpRefused(t *testing.T) {
	const secret = "board-reader-token"
	b := newBoard(t, boardOptions{apiTokens: apiTokens(t, secret, "calls:read")})
	b.do(t, chromedp.Navigate(b.api+"/"))
	b.waitJS(t, `document.getElementById("token-dialog").open`)
	b.do(t, chromedp.SendKeys(chromedp.CSS("#token-input"), secret), chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)))
	b.waitJS(t, `document.getElementById("conn").dataset.state === "live"`)
	b.do(t, chromedp.Evaluate[chromedp.Void](observer))
	const sid = "CA4100000000000000000000000000001a"
	b.status(t, sid, "in-progress", 2, 100*time.Millisecond)
	b.seen(t, sid, "active")

	b.do(t, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-sid=%q] button.hangup`, sid))))
	b.seen(t, sid, "ending")
	b.waitJS(t, fmt.Sprintf(`document.getElementById("notices").textContent.includes("Hang-up of %s failed")`, sid))
	row := fmt.Sprintf(`document.querySelector('tr[data-sid=%q]')`, sid)
	b.waitJS(t, row+`.dataset.state === "active" && !`+row+`.querySelector("button.hangup").disabled`)
	if got := eval[string](t, b, row+`.querySelector(".status").textContent`); got != "in progress" {
		t.Errorf("after the refusal the status reads %q, want in progress", got)
	}

	req, err := http.NewRequest(http.MethodGet, b.api+"/v1/calls/"+sid+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := b.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), sid) {
		t.Fatalf("GET the call's events: HTTP %d %s", resp.StatusCode, body)
	}
	if strings.Contains(strings.ToLower(string(body)), "hangup") {
		t.Errorf("a refused hang-up left an event: %s", body)
	}
}

// apiTokens writes an --api-tokens file that gives secret the scopes.
func apiTokens(t *testing.T, secret string, scopes ...string) string {
	t.Helper()
	file, err := json.Marshal(map[string]any{"tokens": []map[string]any{{"principal": "ops-board", "sha256": grpcauth.HashToken(secret), "scopes": scopes}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "api-tokens.json")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBoardSaysWhenNoEndArrives: without REST credentials the board records
// the hang-up only; when no terminal report comes within the reconciler's
// wait, it says so, and the notice goes once the call ends.
func TestBoardSaysWhenNoEndArrives(t *testing.T) {
	b := newBoard(t, boardOptions{hangupAfter: 300 * time.Millisecond})
	b.open(t)
	const sid = "CA5000000000000000000000000000000e"
	b.status(t, sid, "in-progress", 2, 100*time.Millisecond)
	b.seen(t, sid, "active")
	b.do(t, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-sid=%q] button.hangup`, sid))))
	b.seen(t, sid, "ending")
	b.waitJS(t, `document.getElementById("notices").textContent.includes("No terminal report")`)
	notices := eval[string](t, b, `document.getElementById("notices").textContent`)
	for _, want := range []string{sid, "no Twilio REST credentials"} {
		if !strings.Contains(notices, want) {
			t.Errorf("notices %q do not mention %q", notices, want)
		}
	}
	b.waitJS(t, fmt.Sprintf(`document.querySelector('tr[data-sid=%q] .overdue') !== null`, sid))

	b.status(t, sid, "completed", 3, 100*time.Millisecond, "CallDuration", "30")
	b.seen(t, sid, "terminal")
	b.waitJS(t, `!document.getElementById("notices").textContent.includes("No terminal report")`)
}

// TestBoardTokenPrompt: when the API refuses requests without a token, the
// board asks for one, keeps it in session storage (never the URL), refuses
// a wrong one with another prompt, and goes live with the right one.
func TestBoardTokenPrompt(t *testing.T) {
	const secret = "board-secret-token"
	b := newBoard(t, boardOptions{apiTokens: apiTokens(t, secret, "calls:read", "calls:hangup")})
	b.do(t, chromedp.Navigate(b.api+"/"))
	b.waitJS(t, `document.getElementById("token-dialog").open && document.getElementById("conn").dataset.state === "token"`)

	b.do(t, chromedp.SendKeys(chromedp.CSS("#token-input"), "wrong-token"), chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)))
	b.waitJS(t, `document.getElementById("token-dialog").open && document.getElementById("token-why").textContent.includes("refused")`)

	b.do(t, chromedp.SendKeys(chromedp.CSS("#token-input"), secret), chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)))
	b.waitJS(t, `document.getElementById("conn").dataset.state === "live" && !document.getElementById("token-dialog").open`)
	if got := eval[string](t, b, `sessionStorage.getItem("callledger.token")`); got != secret {
		t.Errorf("session storage holds %q", got)
	}
	if href := eval[string](t, b, `location.href`); strings.Contains(href, secret) {
		t.Errorf("the token is in the URL: %s", href)
	}
	if got := eval[string](t, b, `localStorage.length + ""`); got != "0" {
		t.Errorf("local storage holds %s items; the token belongs in session storage only", got)
	}

	// Authenticated, the board is live: a call shows, stats load.
	b.do(t, chromedp.Evaluate[chromedp.Void](observer))
	const sid = "CA6000000000000000000000000000000f"
	b.status(t, sid, "ringing", 1, 100*time.Millisecond)
	b.seen(t, sid, "active")
	b.waitJS(t, `document.getElementById("lag-value").textContent.includes("events")`)

	// The tab keeps its token across a reload.
	b.do(t, chromedp.Reload())
	b.waitJS(t, `document.getElementById("conn").dataset.state === "live" && !document.getElementById("token-dialog").open`)
}

// TestBoardOverview: call trees grouped parent first, the filters, the
// count, keyboard use, a call's legs and timeline (sources, delivery delay,
// raw request), and the delay warning. With -board-screenshot it writes the
// README's screenshot.
func TestBoardOverview(t *testing.T) {
	b := newBoard(t, boardOptions{rest: true})
	b.open(t)
	const (
		parent  = "CA7000000000000000000000000000a001"
		child   = "CA7000000000000000000000000000a002"
		ringing = "CA7000000000000000000000000000b001"
		talking = "CA7000000000000000000000000000c001"
		ending  = "CA7000000000000000000000000000d001"
		ended   = "CA7000000000000000000000000000e001"
	)
	b.status(t, parent, "in-progress", 1, 80*time.Millisecond, "Direction", "inbound", "From", "+14155550123", "To", "+18005550100")
	b.status(t, child, "ringing", 1, 120*time.Millisecond, "Direction", "outbound-dial", "ParentCallSid", parent, "From", "+14155550123", "To", "+14155550177")
	b.status(t, child, "in-progress", 2, 90*time.Millisecond, "Direction", "outbound-dial", "ParentCallSid", parent, "From", "+14155550123", "To", "+14155550177")
	b.status(t, ringing, "ringing", 1, 150*time.Millisecond, "From", "+442071838750", "To", "+14155550142")
	b.status(t, talking, "in-progress", 2, 60*time.Millisecond, "Direction", "inbound", "From", "+33142685300", "To", "+18005550100")
	b.status(t, ending, "in-progress", 2, 110*time.Millisecond, "From", "+14155550166", "To", "+12125550199")
	b.status(t, ended, "in-progress", 2, 70*time.Millisecond, "From", "+14155550111", "To", "+13105550123")
	b.status(t, ended, "completed", 3, 95*time.Millisecond, "From", "+14155550111", "To", "+13105550123", "CallDuration", "48")
	b.twilio.Put(resttest.Call{Sid: ending, AccountSid: account, Status: "in-progress", StartTime: time.Now()})
	for _, sid := range []string{parent, child, ringing, talking, ending} {
		b.seen(t, sid, "active")
	}
	b.seen(t, ended, "terminal")
	b.do(t, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-sid=%q] button.hangup`, ending))))
	b.seen(t, ending, "ending")

	// Trees: the child directly under its parent.
	order := eval[[]string](t, b, `[...document.querySelectorAll("#call-rows tr.call")].map(tr => tr.dataset.sid + (tr.classList.contains("leg") ? ":leg" : ""))`)
	at := func(s string) int {
		for i, v := range order {
			if v == s {
				return i
			}
		}
		return -1
	}
	if p, c := at(parent), at(child+":leg"); p < 0 || c != p+1 {
		t.Errorf("rows %v: want %s directly followed by its leg %s", order, parent, child)
	}
	if got := b.waitCountRight(t); got != "5" {
		t.Errorf("the board counts %s active calls, want 5", got)
	}

	// Filters: direction keeps whole trees; number matches digits.
	shown := func() []string {
		return eval[[]string](t, b, `[...document.querySelectorAll("#call-rows tr.call")].map(tr => tr.dataset.sid)`)
	}
	filter := func(id, value string) {
		b.do(t, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event("input")); })()`, id, value)))
	}
	filter("f-direction", "outbound-dial")
	if got := shown(); len(got) != 2 || got[0] != parent || got[1] != child {
		t.Errorf("with direction outbound-dial the board shows %v, want the tree %s, %s", got, parent, child)
	}
	filter("f-direction", "")
	b.do(t, chromedp.KeyEvent("/"), chromedp.KeyEvent("20 7183")) // "/" focuses the number filter
	if got := shown(); len(got) != 1 || got[0] != ringing {
		t.Errorf("with number 20 7183 the board shows %v, want %s", got, ringing)
	}
	filter("f-number", "")
	filter("f-status", "ending")
	if got := shown(); len(got) != 1 || got[0] != ending {
		t.Errorf("with status ending the board shows %v, want %s", got, ending)
	}
	filter("f-status", "")

	// Keyboard: move to the parent's row, open its details, close them.
	b.do(t, chromedp.Focus(chromedp.CSS(`#call-rows tr.call`)))
	for i := 0; i < len(order) && eval[string](t, b, `document.activeElement.dataset.sid`) != parent; i++ {
		b.do(t, chromedp.KeyEvent(kb.ArrowDown))
	}
	if got := eval[string](t, b, `document.activeElement.dataset.sid`); got != parent {
		t.Fatalf("arrow keys never reached %s (at %q)", parent, got)
	}
	b.do(t, chromedp.KeyEvent(kb.Enter))
	b.waitJS(t, `!document.getElementById("detail").hidden && document.querySelectorAll("#detail-legs tr").length === 2 && document.querySelectorAll("#detail-timeline li").length >= 3`)
	timeline := eval[string](t, b, `document.getElementById("detail-timeline").textContent`)
	for _, want := range []string{"status callback", "delivered", "after Twilio's time", "Raw request", "POST " + b.publicURL + "/twilio/voice/status", "CallStatus=in-progress"} {
		if !strings.Contains(timeline, want) {
			t.Errorf("the timeline does not show %q", want)
		}
	}
	b.waitJS(t, `document.getElementById("delay-p50").textContent !== "–"`)
	if *boardScreenshot != "" {
		png, err := chromedp.Run(b.tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*boardScreenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", *boardScreenshot)
	}
	b.do(t, chromedp.KeyEvent(kb.Escape))
	b.waitJS(t, `document.getElementById("detail").hidden && document.activeElement.dataset.sid === "`+parent+`"`)

	// A delivery delay above 5 s shows a warning.
	if !eval[bool](t, b, `document.getElementById("delay-warning").hidden`) {
		t.Error("the delay warning shows while every delay is under a second")
	}
	b.status(t, talking, "in-progress", 3, 9*time.Second, "Direction", "inbound", "From", "+33142685300", "To", "+18005550100")
	b.waitJS(t, `!document.getElementById("delay-warning").hidden && document.getElementById("delay").dataset.warn === "true"`)
}
