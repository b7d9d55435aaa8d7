package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/testpki"
	"github.com/callledger/callledger/twilio"
)

const (
	// subAccount has tokens of its own in --twilio-accounts; the default
	// account (token) is not listed.
	subAccount      = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	unlistedAccount = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// writeAccounts writes an accounts file listing subAccount with its auth
// token and, when not empty, its secondary one.
func writeAccounts(t *testing.T, path, primary, secondary string) {
	t.Helper()
	entry := map[string]string{"account_sid": subAccount, "auth_token": primary}
	if secondary != "" {
		entry["auth_token_secondary"] = secondary
	}
	raw, err := json.Marshal(map[string]any{"accounts": []map[string]string{entry}})
	if err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, path, raw)
}

// statusCallback sends a status callback of call naming account (none
// when empty), signed with signer, and returns the answer's code.
func statusCallback(base, account, call, signer string) (int, error) {
	return statusCallbackVia(http.DefaultClient, base, account, call, signer)
}

// statusCallbackVia is statusCallback through client.
func statusCallbackVia(client *http.Client, base, account, call, signer string) (int, error) {
	f := url.Values{"CallSid": {call}, "CallStatus": {"ringing"}, "SequenceNumber": {"0"}}
	if account != "" {
		f.Set("AccountSid", account)
	}
	body := f.Encode()
	req, err := http.NewRequest(http.MethodPost, base+"/twilio/voice/status", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilio.Sign(signer, publicURL+"/twilio/voice/status", []byte(body)))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func callSid(n int) string { return fmt.Sprintf("CA%032x", n) }

// TestSubaccountWebhooks: a webhook naming an account of --twilio-accounts
// is verified with that account's token (and stored), and refused when the
// default (main) account's token signed it; a webhook naming no account, or
// one the file does not list, is checked against the default token. The
// refusals are counted by account, an unlisted one under "unlisted".
func TestSubaccountWebhooks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	accounts := filepath.Join(dir, "accounts.json")
	writeAccounts(t, accounts, "subtoken1", "")
	srv, _ := start(t, server.Config{Twilio: server.Twilio{AccountsFile: accounts}})
	base := "http://" + srv.Addrs().HTTP
	for i, tc := range []struct {
		name, account, signer string
		want                  int
	}{
		{"subaccount signed with its token", subAccount, "subtoken1", http.StatusNoContent},
		{"subaccount signed with the main token", subAccount, token, http.StatusForbidden},
		{"no AccountSid, main token", "", token, http.StatusNoContent},
		{"unlisted account, main token", unlistedAccount, token, http.StatusNoContent},
		{"unlisted account, another token", unlistedAccount, "subtoken1", http.StatusForbidden},
	} {
		code, err := statusCallback(base, tc.account, callSid(i+1), tc.signer)
		if err != nil {
			t.Fatal(err)
		}
		if code != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, code, tc.want)
		}
		stored, err := srv.Store().ReadStream(context.Background(), eventcodec.CallStream(callSid(i+1)), 0, 10)
		if (err == nil && len(stored) == 1) != (tc.want == http.StatusNoContent) {
			t.Errorf("%s: stored %d events (%v)", tc.name, len(stored), err)
		}
	}
	fams := scrape(t, base+"/metrics")
	failures := map[string]float64{}
	for _, m := range fams["callledger_webhook_signature_failures_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "account" {
				failures[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	if failures[subAccount] != 1 || failures["unlisted"] != 1 || failures["default"] != 0 {
		t.Errorf("signature failures by account %v, want one of %s and one unlisted", failures, subAccount)
	}
}

// TestAccountTokenRotationUnderLoad rotates a subaccount's auth token
// through the steps of docs/SECURITY.md, each a file rewrite and a reload
// (what SIGHUP does), while senders deliver its webhooks without pause,
// each signed with a token Twilio may sign with at that step: not one is
// refused.
func TestAccountTokenRotationUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	accounts := filepath.Join(dir, "accounts.json")
	writeAccounts(t, accounts, "oldtoken1", "")
	srv, _ := start(t, server.Config{Twilio: server.Twilio{AccountsFile: accounts}})
	base := "http://" + srv.Addrs().HTTP

	// Each step's file, and the tokens a request may be signed with while
	// the server runs it: Twilio signs with them, and the file of the next
	// step accepts them too (a request read before a reload may be checked
	// after it).
	steps := []struct {
		primary, secondary string
		signers            []string
	}{
		{"oldtoken1", "", []string{"oldtoken1"}},                       // before
		{"oldtoken1", "newtoken2", []string{"oldtoken1", "newtoken2"}}, // secondary created and added
		{"newtoken2", "oldtoken1", []string{"newtoken2"}},              // promoted; old deliveries drain
		{"newtoken2", "", []string{"newtoken2"}},                       // old removed
	}
	const senders, perStep = 4, 25
	var (
		step    atomic.Int32
		seq     atomic.Int64
		sent    atomic.Int64
		refused atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		// done[i] is the last step of which sender i finished a request
		// it started in that step, and count[i] how many.
		done  [senders]atomic.Int32
		count [senders]atomic.Int64
	)
	for i := range senders {
		done[i].Store(-1)
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				st := step.Load()
				signer := steps[st].signers[k%len(steps[st].signers)]
				code, err := statusCallback(base, subAccount, callSid(int(seq.Add(1))), signer)
				if err != nil {
					t.Error(err)
					return
				}
				sent.Add(1)
				if code != http.StatusNoContent {
					refused.Add(1)
					t.Errorf("step %d, signed with %s: HTTP %d", st, signer, code)
				}
				if done[i].Load() != st {
					done[i].Store(st)
					count[i].Store(0)
				}
				count[i].Add(1)
			}
		})
	}
	// Each step lasts until every sender has finished perStep requests
	// started in it, so that no request of an earlier step is in flight at
	// the next reload.
	waitStep := func(st int32) {
		deadline := time.Now().Add(failBound)
		for i := range senders {
			for done[i].Load() != st || count[i].Load() < perStep {
				if t.Failed() { // a refusal, reported above
					close(stop)
					wg.Wait()
					t.FailNow()
				}
				if time.Now().After(deadline) {
					close(stop)
					wg.Wait()
					t.Fatalf("step %d: sender %d did not finish %d requests within %v", st, i, perStep, failBound)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	waitStep(0)
	for st := 1; st < len(steps); st++ {
		writeAccounts(t, accounts, steps[st].primary, steps[st].secondary)
		if err := srv.Reload(); err != nil {
			t.Fatal(err)
		}
		step.Store(int32(st))
		waitStep(int32(st))
	}
	close(stop)
	wg.Wait()
	if refused.Load() != 0 || sent.Load() < senders*perStep*int64(len(steps)) {
		t.Errorf("%d of %d valid requests refused during the rotation", refused.Load(), sent.Load())
	}
	if code, err := statusCallback(base, subAccount, callSid(1<<30), "oldtoken1"); err != nil || code != http.StatusForbidden {
		t.Errorf("the old token after the rotation: HTTP %d %v, want 403", code, err)
	}
}
