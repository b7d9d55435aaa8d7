package rest_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

const (
	acct  = "AC0123456789abcdef0123456789abcdef"
	acct2 = "ACfedcba9876543210fedcba9876543210"
	key   = "SK0123456789abcdef0123456789abcdef"
	call1 = "CA0123456789abcdef0123456789abcdef"
	child = "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

func setup(t *testing.T) (*resttest.Fake, *rest.Client) {
	t.Helper()
	accounts := []rest.Account{
		{AccountSid: acct, AuthToken: "token1"},
		{AccountSid: acct2, APIKeySid: key, APIKeySecret: "secret2"},
	}
	fake := resttest.New(t, accounts...)
	c, err := rest.New(rest.Config{Accounts: accounts, Transport: fake.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	fake.Put(resttest.Call{Sid: call1, AccountSid: acct, Status: "in-progress", From: "+15550000001", To: "+15550000002", Direction: "inbound", StartTime: start})
	fake.Put(resttest.Call{Sid: child, AccountSid: acct, ParentCallSid: call1, Status: "completed", Duration: "12", StartTime: start, EndTime: start.Add(12 * time.Second)})
	return fake, c
}

func TestFetchListUpdate(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	ctx := context.Background()

	got, err := c.FetchCall(ctx, acct, call1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status == nil || *got.Status != "in-progress" || *got.From != "+15550000001" || got.Duration != nil {
		t.Errorf("fetched %+v", got)
	}
	kids, err := c.ListChildCalls(ctx, acct, call1)
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 1 || *kids[0].Sid != child || *kids[0].Duration != "12" {
		t.Errorf("children %+v", kids)
	}
	if q := fake.Requests()[1].Query; q.Get("ParentCallSid") != call1 {
		t.Errorf("list query %v", q)
	}
	up, err := c.UpdateCallStatus(ctx, "", call1, "completed") // "" is the default account
	if err != nil {
		t.Fatal(err)
	}
	if *up.Status != "completed" {
		t.Errorf("updated to %s", *up.Status)
	}
	last := fake.Requests()[2]
	if last.Method != http.MethodPost || last.Form.Get("Status") != "completed" || last.User != acct {
		t.Errorf("update request %+v", last)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		fault       *resttest.Fault
		account     string
		sid         string
		update      string
		wantStatus  int
		wantCode    int
		temporary   bool
		notFound    bool
		rateLimited bool
	}{
		{name: "unknown call", account: acct, sid: "CA99999999999999999999999999999999", wantStatus: 404, wantCode: 20404, notFound: true},
		{name: "call of another account", account: acct2, sid: call1, wantStatus: 404, wantCode: 20404, notFound: true},
		{name: "too many requests", account: acct, sid: call1, fault: &resttest.Fault{Status: 429, Code: 20429}, wantStatus: 429, wantCode: 20429, temporary: true, rateLimited: true},
		{name: "server error", account: acct, sid: call1, fault: &resttest.Fault{Status: 503, Code: 20503}, wantStatus: 503, wantCode: 20503, temporary: true},
		{name: "update of an ended call", account: acct, sid: child, update: "completed", wantStatus: 400, wantCode: 21220},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, c := setup(t)
			if tc.fault != nil {
				fake.Fail(tc.sid, *tc.fault)
			}
			var err error
			if tc.update != "" {
				_, err = c.UpdateCallStatus(context.Background(), tc.account, tc.sid, tc.update)
			} else {
				_, err = c.FetchCall(context.Background(), tc.account, tc.sid)
			}
			var re *rest.Error
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *rest.Error", err)
			}
			if re.Status != tc.wantStatus || re.Code != tc.wantCode || re.Temporary() != tc.temporary ||
				re.NotFound() != tc.notFound || re.RateLimited() != tc.rateLimited {
				t.Errorf("got %+v (temporary %v, not found %v, rate limited %v)", re, re.Temporary(), re.NotFound(), re.RateLimited())
			}
		})
	}
}

func TestWrongCredentialsAndUnknownAccount(t *testing.T) {
	t.Parallel()
	fake, _ := setup(t)
	bad, err := rest.New(rest.Config{Accounts: []rest.Account{{AccountSid: acct, AuthToken: "wrong"}}, Transport: fake.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.FetchCall(context.Background(), acct, call1)
	var re *rest.Error
	if !errors.As(err, &re) || re.Status != 401 || re.Code != 20003 || re.Temporary() {
		t.Errorf("wrong token: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error quotes the token: %v", err)
	}
	if _, err := bad.FetchCall(context.Background(), acct2, call1); !errors.Is(err, rest.ErrUnknownAccount) {
		t.Errorf("unknown account: %v", err)
	}
}

func TestContextEndsRequest(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.Hold()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.UpdateCallStatus(ctx, acct, call1, "completed")
		errc <- err
	}()
	<-fake.Updates()
	cancel()
	err := <-errc
	var re *rest.Error
	if !errors.Is(err, context.Canceled) || !errors.As(err, &re) || !re.Temporary() {
		t.Errorf("canceled update: %v", err)
	}
}

// roundTripFunc is a transport that fails as the network does.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestUnreachedMessage: when Twilio is not reached, the Message (which
// events record and clients see) says why in a few words and names no URL,
// host or address; the error's text keeps the details for the log.
func TestUnreachedMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"resolution", &net.DNSError{Err: "no such host", Name: "api.twilio.com", Server: "10.1.2.3:53"}, "its name did not resolve"},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 9, 8, 7), Port: 443}, Err: errors.New("connection refused")}, "was not reached"},
		{"timeout", &net.DNSError{Err: "i/o timeout", Name: "api.twilio.com", Server: "10.1.2.3:53", IsTimeout: true}, "did not answer in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := rest.New(rest.Config{
				Accounts:  []rest.Account{{AccountSid: acct, AuthToken: "token1"}},
				Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, tc.err }),
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.UpdateCallStatus(context.Background(), acct, call1, "completed")
			var re *rest.Error
			if !errors.As(err, &re) || re.Status != 0 || !re.Temporary() {
				t.Fatalf("error %v: want a temporary *rest.Error without a status", err)
			}
			if !strings.Contains(re.Message, tc.want) {
				t.Errorf("Message %q: want %q", re.Message, tc.want)
			}
			for _, leak := range []string{"10.1.2.3", "10.9.8.7", "api.twilio.com", "https://", call1} {
				if strings.Contains(re.Message, leak) {
					t.Errorf("Message %q quotes %q", re.Message, leak)
				}
			}
			if !strings.Contains(err.Error(), "api.twilio.com") {
				t.Errorf("Error() %q lost the details the log needs", err)
			}
		})
	}
}

func TestAccountValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a    rest.Account
		ok   bool
	}{
		{"auth token", rest.Account{AccountSid: acct, AuthToken: "abc123"}, true},
		{"api key", rest.Account{AccountSid: acct, APIKeySid: key, APIKeySecret: "s3cret"}, true},
		{"no secret", rest.Account{AccountSid: acct}, false},
		// An API key for REST, the auth token for webhooks.
		{"both", rest.Account{AccountSid: acct, AuthToken: "a", APIKeySid: key, APIKeySecret: "b"}, true},
		{"key without secret", rest.Account{AccountSid: acct, APIKeySid: key}, false},
		{"not an AccountSid", rest.Account{AccountSid: "AC123", AuthToken: "a"}, false},
		{"not an API key", rest.Account{AccountSid: acct, APIKeySid: acct, APIKeySecret: "b"}, false},
		{"secret with symbols", rest.Account{AccountSid: acct, AuthToken: "to-ken"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.a.Validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, rest.ErrConfig)) {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && (strings.Contains(err.Error(), "to-ken") || strings.Contains(err.Error(), "s3cret")) {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}

func TestLoadAccountsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		want       int
		ok         bool
	}{
		{"two accounts", `{"accounts":[{"account_sid":"` + acct + `","auth_token":"t1"},{"account_sid":"` + acct2 + `","api_key_sid":"` + key + `","api_key_secret":"s2"}]}`, 2, true},
		{"unknown field", `{"accounts":[{"account_sid":"` + acct + `","token":"t1"}]}`, 0, false},
		{"syntax", `{"accounts":[{"account_sid":"` + acct + `","auth_token":"topsecret"`, 0, false},
		{"invalid account", `{"accounts":[{"account_sid":"` + acct + `"}]}`, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := rest.LoadAccountsFile(path)
			if (err == nil) != tc.ok || len(got) != tc.want {
				t.Fatalf("got %d accounts, %v", len(got), err)
			}
			if err != nil && strings.Contains(err.Error(), "topsecret") {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}

// TestReconciledEvent: a fetched resource becomes a CallReconciled event
// whose ID depends on what the resource says, not on when it was read.
func TestReconciledEvent(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	got, err := c.FetchCall(context.Background(), acct, child)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	ev := rest.Reconciled(got, at)
	r := ev.GetCallReconciled()
	if ev.GetCallSid() != child || r.GetStatus().String() != "CALL_STATUS_COMPLETED" || r.GetDurationSeconds() != 12 ||
		r.GetParentCallSid() != call1 || r.GetEndTime().AsTime() != time.Date(2026, 3, 1, 10, 0, 12, 0, time.UTC) ||
		ev.GetSource().String() != "SOURCE_RECONCILIATION" || ev.GetReceivedAt().AsTime() != at {
		t.Errorf("event %v", ev)
	}
	if again := rest.Reconciled(got, at.Add(time.Minute)); again.GetEventId() != ev.GetEventId() {
		t.Error("an unchanged resource read later has another event ID")
	}
	s := "in-progress"
	got.Status = &s
	if changed := rest.Reconciled(got, at); changed.GetEventId() == ev.GetEventId() {
		t.Error("a changed resource keeps the event ID")
	}
	nf := rest.NotFound(acct, call1, at)
	if !nf.GetCallReconciled().GetNotFound() || nf.GetEventId() != rest.NotFound(acct, call1, at.Add(time.Hour)).GetEventId() {
		t.Errorf("not found %v", nf)
	}
}

// TestSetAccounts: replaced credentials take effect on the next request;
// invalid ones are refused and the old ones stay.
func TestSetAccounts(t *testing.T) {
	t.Parallel()
	fake, _ := setup(t)
	c, err := rest.New(rest.Config{Accounts: []rest.Account{{AccountSid: acct, AuthToken: "wrong"}}, Transport: fake.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.FetchCall(context.Background(), acct, call1); err == nil {
		t.Fatal("the wrong token was accepted")
	}
	if err := c.SetAccounts([]rest.Account{{AccountSid: acct, AuthToken: "token1"}, {AccountSid: acct2, APIKeySid: key, APIKeySecret: "secret2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FetchCall(context.Background(), acct, call1); err != nil {
		t.Errorf("after SetAccounts: %v", err)
	}
	if got, err := c.Account(acct2); err != nil || got != acct2 {
		t.Errorf("Account(%s) = %q, %v after SetAccounts", acct2, got, err)
	}
	if err := c.SetAccounts([]rest.Account{{AccountSid: "AC123", AuthToken: "x"}}); !errors.Is(err, rest.ErrConfig) {
		t.Errorf("SetAccounts(invalid) = %v, want ErrConfig", err)
	}
	if err := c.SetAccounts(nil); !errors.Is(err, rest.ErrConfig) {
		t.Errorf("SetAccounts(nil) = %v, want ErrConfig", err)
	}
	if _, err := c.FetchCall(context.Background(), acct, call1); err != nil {
		t.Errorf("after refused SetAccounts: %v", err)
	}
}
