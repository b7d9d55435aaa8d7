package rest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
	"github.com/callledger/callledger/twilio/rest/resttest"
)

// writeAccounts writes an accounts file with mode perm, whatever the umask.
func writeAccounts(t *testing.T, body string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accounts.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadAccountsFileMode: a file others may access is refused, as ssh
// refuses such a private key, and the error says how to fix it.
func TestLoadAccountsFileMode(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no Unix mode bits")
	}
	body := `{"accounts":[{"account_sid":"` + acct + `","auth_token":"topsecret1"}]}`
	for _, tc := range []struct {
		perm os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o700, true},
		{0o640, false}, {0o644, false}, {0o604, false}, {0o620, false}, {0o660, false}, {0o602, false}, {0o610, false},
	} {
		t.Run(tc.perm.String(), func(t *testing.T) {
			t.Parallel()
			path := writeAccounts(t, body, tc.perm)
			got, err := rest.LoadAccountsFile(path)
			if tc.ok {
				if err != nil || len(got) != 1 {
					t.Fatalf("LoadAccountsFile = %v, %v", got, err)
				}
				return
			}
			if !errors.Is(err, rest.ErrInsecureFile) {
				t.Fatalf("LoadAccountsFile = %v, want ErrInsecureFile", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "chmod 600") || !strings.Contains(msg, path) || strings.Contains(msg, "topsecret1") {
				t.Errorf("error %q: want the path and the fix, without the secret", msg)
			}
		})
	}
}

// TestLoadAccountsFileFormat: the file's webhook tokens beside its REST
// credentials; files valid before stay valid.
func TestLoadAccountsFileFormat(t *testing.T) {
	t.Parallel()
	entry := func(fields string) string { return `{"account_sid":"` + acct + `",` + fields + `}` }
	file := func(entries ...string) string { return `{"accounts":[` + strings.Join(entries, ",") + `]}` }
	for _, tc := range []struct {
		name, body string
		want       []rest.Account // nil: an error
		errHas     string
	}{
		{"auth token", file(entry(`"auth_token":"tok1"`)), []rest.Account{{AccountSid: acct, AuthToken: "tok1"}}, ""},
		{"api key", file(entry(`"api_key_sid":"` + key + `","api_key_secret":"sec1"`)), []rest.Account{{AccountSid: acct, APIKeySid: key, APIKeySecret: "sec1"}}, ""},
		{"api key and auth token", file(entry(`"api_key_sid":"` + key + `","api_key_secret":"sec1","auth_token":"tok1"`)),
			[]rest.Account{{AccountSid: acct, APIKeySid: key, APIKeySecret: "sec1", AuthToken: "tok1"}}, ""},
		{"rotation", file(entry(`"auth_token":"tok1","auth_token_secondary":"tok2"`)), []rest.Account{{AccountSid: acct, AuthToken: "tok1", AuthTokenSecondary: "tok2"}}, ""},
		{"no account", `{"accounts":[]}`, []rest.Account{}, ""},
		{"secondary alone", file(entry(`"auth_token_secondary":"tok2","api_key_sid":"` + key + `","api_key_secret":"sec1"`)), nil, "auth_token_secondary needs auth_token"},
		{"api key without its secret", file(entry(`"api_key_sid":"` + key + `","auth_token":"tok1"`)), nil, "go together"},
		{"secondary with symbols", file(entry(`"auth_token":"tok1","auth_token_secondary":"tok-secret"`)), nil, "letters and digits"},
		{"the same account twice", file(entry(`"auth_token":"tok1"`), `{"account_sid":"`+strings.ToUpper(acct[:2])+strings.ToUpper(acct[2:])+`","auth_token":"tok2"}`), nil, "entries 1 and 2"},
		{"data after the object", file(entry(`"auth_token":"tok1"`)) + ` {"accounts":[]}`, nil, "data after"},
		{"unknown field", file(entry(`"auth_tokens":"tok1"`)), nil, `unknown field "auth_tokens"`},
		{"unknown field that may be a secret", file(entry(`"auth_token":"tok1","qwerty0123456789zxcv":"x"`)), nil, "an unknown field"},
		{"wrong type", file(entry(`"auth_token":77777777`)), nil, "field accounts.auth_token: want a string"},
		{"syntax", file(entry(`"auth_token":"topsecret9"`))[:60], nil, "JSON"},
		{"not an object", `["` + acct + `"]`, nil, "not an"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := rest.LoadAccountsFile(writeAccounts(t, tc.body, 0o600))
			if tc.want == nil {
				if !errors.Is(err, rest.ErrConfig) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("LoadAccountsFile = %v, want an ErrConfig saying %q", err, tc.errHas)
				}
				for _, secret := range []string{"tok1", "tok2", "sec1", "tok-secret", "topsecret9", "77777777", "qwerty0123456789zxcv"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error quotes %q: %v", secret, err)
					}
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("LoadAccountsFile = %+v, %v", got, err)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("account %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
	big := writeAccounts(t, `{"accounts":[]}`+strings.Repeat(" ", 1<<20), 0o600)
	if _, err := rest.LoadAccountsFile(big); !errors.Is(err, rest.ErrConfig) {
		t.Errorf("a file over 1 MiB: %v", err)
	}
	if _, err := rest.LoadAccountsFile(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestWebhookKeyring: the file's accounts verify their own webhooks; an
// account giving an API key alone is checked against the default token.
func TestWebhookKeyring(t *testing.T) {
	t.Parallel()
	const publicURL = "https://hooks.example.com"
	accounts := []rest.Account{
		{AccountSid: acct, APIKeySid: key, APIKeySecret: "secret1"}, // the default token's account
		{AccountSid: acct2, AuthToken: "subtoken1", AuthTokenSecondary: "subtoken2"},
	}
	ring, err := rest.WebhookKeyring([]string{"maintoken"}, accounts)
	if err != nil {
		t.Fatal(err)
	}
	v, err := twilio.NewVerifierWithKeyring(publicURL, ring)
	if err != nil {
		t.Fatal(err)
	}
	const uri = "/twilio/voice/status"
	for _, tc := range []struct {
		account, token string
		want           error
		verified       string // VerifyAccount's account
	}{
		{acct, "maintoken", nil, acct},
		{acct2, "subtoken1", nil, acct2},
		{acct2, "subtoken2", nil, acct2},
		{acct2, "maintoken", twilio.ErrSignatureInvalid, ""},
		{acct, "subtoken1", twilio.ErrSignatureInvalid, ""},
		{"AC99999999999999999999999999999999", "maintoken", nil, ""}, // the default token's own account need not be listed
		{"AC99999999999999999999999999999999", "subtoken1", twilio.ErrUnknownAccount, ""},
	} {
		body := []byte("CallSid=" + call1 + "&AccountSid=" + tc.account)
		got, err := v.VerifyAccount(uri, body, twilio.Sign(tc.token, publicURL+uri, body))
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) || got != tc.verified {
			t.Errorf("account %s signed with %s: %q, %v; want %q, %v", tc.account, tc.token, got, err, tc.verified, tc.want)
		}
	}
	if _, err := rest.WebhookKeyring([]string{"maintoken"}, []rest.Account{{AccountSid: acct}}); !errors.Is(err, rest.ErrConfig) {
		t.Errorf("an invalid account: %v", err)
	}
	if _, err := rest.WebhookKeyring(nil, accounts); !errors.Is(err, twilio.ErrInvalidAuthToken) {
		t.Errorf("no default token: %v", err)
	}
}

// TestAPIKeyBeforeAuthToken: an account giving both authenticates REST
// requests with its API key.
func TestAPIKeyBeforeAuthToken(t *testing.T) {
	t.Parallel()
	a := rest.Account{AccountSid: acct, AuthToken: "token1", APIKeySid: key, APIKeySecret: "secret1"}
	fake := resttest.New(t, rest.Account{AccountSid: acct, APIKeySid: key, APIKeySecret: "secret1"})
	c, err := rest.New(rest.Config{Accounts: []rest.Account{a}, Transport: fake.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	fake.Put(resttest.Call{Sid: call1, AccountSid: acct, Status: "in-progress"})
	if _, err := c.FetchCall(context.Background(), acct, call1); err != nil {
		t.Fatal(err)
	}
	if reqs := fake.Requests(); len(reqs) != 1 || reqs[0].User != key {
		t.Errorf("requests %+v, want one authenticated by %s", reqs, key)
	}
}
