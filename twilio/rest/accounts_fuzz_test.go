package rest_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/callledger/callledger/twilio/rest"
)

// FuzzParseAccounts feeds any bytes to the accounts-file parser: it never
// panics; an error wraps ErrConfig and quotes no secret of the input; what
// it accepts is valid, names each account once, encodes back to a file it
// reads the same, and builds a REST client and a webhook Keyring.
func FuzzParseAccounts(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte) {
		accounts, err := rest.ParseAccounts(raw)
		if err != nil {
			if !errors.Is(err, rest.ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			// The error may name a valid AccountSid, whose digits could
			// make up a "secret".
			msg := sidPattern.ReplaceAllString(err.Error(), "AC…")
			for _, s := range secretsIn(raw) {
				if strings.Contains(msg, s) {
					t.Fatalf("error %q quotes the secret %q", err, s)
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, a := range accounts {
			if err := a.Validate(); err != nil {
				t.Fatalf("accepted an invalid account: %v", err)
			}
			if sid := strings.ToLower(a.AccountSid); seen[sid] {
				t.Fatalf("accepted %s twice", a.AccountSid)
			} else {
				seen[sid] = true
			}
		}
		again, err := json.Marshal(map[string][]rest.Account{"accounts": accounts})
		if err != nil {
			t.Fatal(err)
		}
		back, err := rest.ParseAccounts(again)
		if err != nil || len(back) != len(accounts) || (len(back) > 0 && !reflect.DeepEqual(back, accounts)) {
			t.Fatalf("re-encoded as %s, read back as %+v, %v; first read %+v", again, back, err, accounts)
		}
		if _, err := rest.WebhookKeyring([]string{"defaulttoken"}, accounts); err != nil {
			t.Fatalf("WebhookKeyring: %v", err)
		}
		if len(accounts) > 0 {
			if _, err := rest.New(rest.Config{Accounts: accounts}); err != nil {
				t.Fatalf("rest.New: %v", err)
			}
		}
	})
}

var sidPattern = regexp.MustCompile(`AC[0-9a-fA-F]{32}`)

// secretsIn returns the values of the secret fields anywhere in raw when it
// is JSON (field names matched without regard to case, as encoding/json
// matches them), those that can be told from an error's words: 8 bytes or
// more, not all lowercase letters and spaces.
func secretsIn(raw []byte) []string {
	var doc any
	if json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				switch strings.ToLower(k) {
				case "auth_token", "auth_token_secondary", "api_key_secret":
					if s, ok := x.(string); ok && len(s) >= 8 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz ") != "" {
						out = append(out, s)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return out
}
