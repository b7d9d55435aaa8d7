package twilio_test

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/callledger/callledger/twilio"
)

const (
	mainAccount = "AC00000000000000000000000000000001"
	subAccount  = "AC0000000000000000000000000000000a"
	apiAccount  = "AC0000000000000000000000000000000b" // listed for its API key alone
	strangerSid = "AC0000000000000000000000000000000c"
)

func mustKeyring(t testing.TB, def []string, accounts ...twilio.AccountTokens) *twilio.Keyring {
	t.Helper()
	k, err := twilio.NewKeyring(def, accounts...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVerifyAccounts: each request is checked against the tokens of the
// account its AccountSid names.
func TestVerifyAccounts(t *testing.T) {
	t.Parallel()
	ring := refRing{
		def: []string{"main-token"},
		accounts: map[string][]string{
			mainAccount: {"main-token"},
			subAccount:  {"sub-token", "sub-token-2"},
			apiAccount:  nil,
		},
	}
	keyring := mustKeyring(t, ring.def,
		twilio.AccountTokens{AccountSid: mainAccount, Tokens: []string{"main-token"}},
		// Listed in either case of hexadecimal digits: Twilio writes lowercase.
		twilio.AccountTokens{AccountSid: "AC" + strings.ToUpper(subAccount[2:]), Tokens: []string{"sub-token", "sub-token-2"}},
		twilio.AccountTokens{AccountSid: apiAccount},
	)
	v, err := twilio.NewVerifierWithKeyring(corpusPublicURL, keyring)
	if err != nil {
		t.Fatal(err)
	}
	single := mustVerifier(t, corpusPublicURL, "main-token")
	const status = "/twilio/voice/status"
	callback := func(account string) string {
		return "CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=ringing&AccountSid=" + account
	}
	jsonBody := `[{"id":"EV1","data":{"account_sid":"` + subAccount + `"}}]`
	events := func(query string) string {
		return "/twilio/events?" + query + "bodySHA256=" + twilio.BodySHA256([]byte(jsonBody))
	}
	tests := []struct {
		name        string
		v           *twilio.Verifier
		uri, body   string
		signer      string
		want        error
		wantAccount string // VerifyAccount's account, or the error's Account
		claimed     string // VerifyError.Claimed
	}{
		{"subaccount, its token", v, status, callback(subAccount), "sub-token", nil, subAccount, ""},
		{"subaccount, its secondary token", v, status, callback(subAccount), "sub-token-2", nil, subAccount, ""},
		{"subaccount, the main token", v, status, callback(subAccount), "main-token", twilio.ErrSignatureInvalid, subAccount, ""},
		{"main account", v, status, callback(mainAccount), "main-token", nil, mainAccount, ""},
		{"main account, a subaccount token", v, status, callback(mainAccount), "sub-token", twilio.ErrSignatureInvalid, mainAccount, ""},
		{"no AccountSid, the default token", v, status, "CallSid=CA0123456789abcdef0123456789abcdef", "main-token", nil, "", ""},
		{"no AccountSid, a subaccount token", v, status, "CallSid=CA0123456789abcdef0123456789abcdef", "sub-token", twilio.ErrSignatureInvalid, "", ""},
		{"account without tokens of its own, the default token", v, status, callback(apiAccount), "main-token", nil, apiAccount, ""},
		// The default token's account need not be listed.
		{"unlisted account, the default token", v, status, callback(strangerSid), "main-token", nil, "", ""},
		{"unlisted account, another token", v, status, callback(strangerSid), "sub-token", twilio.ErrUnknownAccount, "", strangerSid},
		{"unlisted account, not an AccountSid", v, status, callback("AC%0Aforged"), "sub-token", twilio.ErrUnknownAccount, "", ""},
		{"subaccount in uppercase", v, status, callback("AC" + strings.ToUpper(subAccount[2:])), "sub-token", twilio.ErrUnknownAccount, "", "AC" + strings.ToUpper(subAccount[2:])},
		{"AccountSid twice, the same", v, status, callback(subAccount) + "&AccountSid=" + subAccount, "sub-token", nil, subAccount, ""},
		{"AccountSid twice, different", v, status, callback(subAccount) + "&AccountSid=" + mainAccount, "sub-token", twilio.ErrSignatureInvalid, "", ""},
		{"GET: AccountSid in the query", v, status + "?" + callback(subAccount), "", "sub-token", nil, subAccount, ""},
		{"body and query differ", v, status + "?AccountSid=" + mainAccount, callback(subAccount), "sub-token", twilio.ErrSignatureInvalid, "", ""},
		{"body AccountSid empty, query names one", v, status + "?AccountSid=" + subAccount, "CallSid=CA0123456789abcdef0123456789abcdef&AccountSid=", "sub-token", twilio.ErrSignatureInvalid, "", ""},
		{"AccountSid empty: the default token", v, status, "CallSid=CA0123456789abcdef0123456789abcdef&AccountSid=", "main-token", nil, "", ""},
		{"query AccountSid twice, different", v, status + "?AccountSid=" + subAccount + "&AccountSid=" + mainAccount, "", "sub-token", twilio.ErrSignatureInvalid, "", ""},
		{"Event Streams, the sink's account in the query", v, events("AccountSid=" + subAccount + "&"), jsonBody, "sub-token", nil, subAccount, ""},
		{"Event Streams, no account: the default token", v, events(""), jsonBody, "main-token", nil, "", ""},
		{"Event Streams, no account, a subaccount token", v, events(""), jsonBody, "sub-token", twilio.ErrSignatureInvalid, "", ""},
		{"Event Streams, unlisted account, another token", v, events("AccountSid=" + strangerSid + "&"), jsonBody, "sub-token", twilio.ErrUnknownAccount, "", strangerSid},
		{"Event Streams, unlisted account, body changed", v, "/twilio/events?AccountSid=" + strangerSid + "&bodySHA256=" + twilio.BodySHA256([]byte("[]")), jsonBody, "main-token", twilio.ErrUnknownAccount, "", strangerSid},
		{"single account: any AccountSid, the default token", single, status, callback(strangerSid), "main-token", nil, "", ""},
		{"single account: a subaccount token", single, status, callback(subAccount), "sub-token", twilio.ErrSignatureInvalid, "", ""},
		{"single account: no AccountSid, a subaccount token", single, status, "CallSid=CA0123456789abcdef0123456789abcdef", "sub-token", twilio.ErrSignatureInvalid, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := []byte(tt.body)
			sig := twilio.Sign(tt.signer, corpusPublicURL+tt.uri, body)
			account, err := tt.v.VerifyAccount(tt.uri, body, sig)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("VerifyAccount = %q, %v; want %v", account, err, tt.want)
			}
			r := ring
			if tt.v == single {
				r = refRing{def: []string{"main-token"}}
			}
			if ref := refVerify(r, tt.v.SignedURL(tt.uri), body, sig); ref != (err == nil) {
				t.Errorf("the reference says %v", ref)
			}
			if err == nil {
				if account != tt.wantAccount {
					t.Errorf("account %q, want %q", account, tt.wantAccount)
				}
				return
			}
			var verr *twilio.VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("%v is not a *VerifyError", err)
			}
			if verr.Account != tt.wantAccount || verr.Claimed != tt.claimed {
				t.Errorf("VerifyError{Account: %q, Claimed: %q}, want %q, %q", verr.Account, verr.Claimed, tt.wantAccount, tt.claimed)
			}
			if strings.Contains(err.Error(), "forged") || strings.Contains(err.Error(), "-token") {
				t.Errorf("the error quotes the request or a token: %v", err)
			}
		})
	}
	for sid, want := range map[string]bool{subAccount: true, "AC" + strings.ToUpper(subAccount[2:]): true, apiAccount: true, strangerSid: false, "": false, "forged": false} {
		if got := keyring.Configured(sid); got != want {
			t.Errorf("Configured(%q) = %v, want %v", sid, got, want)
		}
	}
}

func TestNewKeyring(t *testing.T) {
	t.Parallel()
	acct := func(sid string, tokens ...string) twilio.AccountTokens {
		return twilio.AccountTokens{AccountSid: sid, Tokens: tokens}
	}
	for _, tt := range []struct {
		name     string
		def      []string
		accounts []twilio.AccountTokens
		want     error
	}{
		{"default only", []string{"secret-a"}, nil, nil},
		{"rotation", []string{"secret-a", "secret-b"}, []twilio.AccountTokens{acct(subAccount, "secret-c", "secret-d"), acct(apiAccount)}, nil},
		{"no default token", nil, nil, twilio.ErrInvalidAuthToken},
		{"three default tokens", []string{"secret-a", "secret-b", "secret-c"}, nil, twilio.ErrInvalidAuthToken},
		{"empty default token", []string{"secret-a", ""}, nil, twilio.ErrInvalidAuthToken},
		{"three account tokens", []string{"secret-a"}, []twilio.AccountTokens{acct(subAccount, "secret-b", "secret-c", "secret-d")}, twilio.ErrInvalidAuthToken},
		{"empty account token", []string{"secret-a"}, []twilio.AccountTokens{acct(subAccount, "")}, twilio.ErrInvalidAuthToken},
		{"not an AccountSid", []string{"secret-a"}, []twilio.AccountTokens{acct("secret-e", "secret-b")}, twilio.ErrInvalidAccountSid},
		{"listed twice", []string{"secret-a"}, []twilio.AccountTokens{acct(subAccount, "secret-b"), acct("AC" + strings.ToUpper(subAccount[2:]))}, twilio.ErrInvalidAccountSid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := twilio.NewKeyring(tt.def, tt.accounts...)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("NewKeyring = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret-") {
				t.Errorf("the error quotes a token: %v", err)
			}
		})
	}
	if _, err := twilio.NewVerifierWithKeyring(corpusPublicURL, nil); err == nil {
		t.Error("NewVerifierWithKeyring(nil) succeeded")
	}
}

// TestKeyringRotationUnderLoad swaps Keyrings while requests are checked
// concurrently, as a reload does: a request valid under both the Keyring
// before and the one after a swap is never refused.
func TestKeyringRotationUnderLoad(t *testing.T) {
	t.Parallel()
	def := []string{"main-token"}
	before := mustKeyring(t, def) // the subaccount is not configured yet
	old := mustKeyring(t, def, twilio.AccountTokens{AccountSid: subAccount, Tokens: []string{"old-token"}})
	both := mustKeyring(t, def, twilio.AccountTokens{AccountSid: subAccount, Tokens: []string{"old-token", "new-token"}})
	rotated := mustKeyring(t, def, twilio.AccountTokens{AccountSid: subAccount, Tokens: []string{"new-token"}})
	v, err := twilio.NewVerifierWithKeyring(corpusPublicURL, old)
	if err != nil {
		t.Fatal(err)
	}
	const uri = "/twilio/voice/status"
	request := func(account, token string) func() error {
		body := []byte("CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=ringing")
		if account != "" {
			body = append(body, "&AccountSid="+account...)
		}
		sig := twilio.Sign(token, corpusPublicURL+uri, body)
		return func() error { return v.Verify(uri, body, sig) }
	}
	oldReq, newReq := request(subAccount, "old-token"), request(subAccount, "new-token")
	defaultReq := request("", "main-token") // no AccountSid: the default token

	// In turn: each phase swaps between two Keyrings under which the
	// requests checked are all valid.
	for _, phase := range []struct {
		name     string
		a, b     *twilio.Keyring
		requests []func() error
	}{
		{"old token, adding the new one", old, both, []func() error{oldReq, defaultReq}},
		{"new token, removing the old one", both, rotated, []func() error{newReq, defaultReq}},
		{"default token, subaccount added and removed", before, rotated, []func() error{defaultReq}},
	} {
		var refused, checked atomic.Int64
		var stop atomic.Bool
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; !stop.Load(); i++ {
					if err := phase.requests[i%len(phase.requests)](); err != nil {
						refused.Add(1)
					}
					checked.Add(1)
				}
			}()
		}
		const swaps = 2000
		for i := range swaps {
			if i%2 == 0 {
				v.SetKeyring(phase.a)
			} else {
				v.SetKeyring(phase.b)
			}
			for checked.Load() < int64(i) { // let checks interleave with the swaps
				runtime.Gosched()
			}
		}
		stop.Store(true)
		wg.Wait()
		if refused.Load() != 0 || checked.Load() < swaps-1 {
			t.Errorf("%s: %d of %d valid requests refused", phase.name, refused.Load(), checked.Load())
		}
	}

	// Each Keyring on its own, in the order of a rotation.
	for _, tt := range []struct {
		name         string
		ring         *twilio.Keyring
		oldOK, newOK bool
	}{
		{"subaccount not listed", before, false, false}, // checked against the default token
		{"old token", old, true, false},
		{"both tokens", both, true, true},
		{"new token", rotated, false, true},
	} {
		v.SetKeyring(tt.ring)
		if v.Keyring() != tt.ring {
			t.Errorf("%s: Keyring() is not the Keyring set", tt.name)
		}
		if got := oldReq() == nil; got != tt.oldOK {
			t.Errorf("%s: old token accepted=%v, want %v", tt.name, got, tt.oldOK)
		}
		if got := newReq() == nil; got != tt.newOK {
			t.Errorf("%s: new token accepted=%v, want %v", tt.name, got, tt.newOK)
		}
		if err := defaultReq(); err != nil {
			t.Errorf("%s: default token refused: %v", tt.name, err)
		}
	}
}
