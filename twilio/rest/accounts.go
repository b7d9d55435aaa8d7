package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/callledger/callledger/internal/secretfile"
	"github.com/callledger/callledger/twilio"
)

// Account is one Twilio account's credentials: for REST, an API key (SK…)
// and its secret, or else the auth token; for webhooks, which Twilio signs
// with the account's auth token, the auth token and, during a rotation, the
// secondary one. API keys can be revoked on their own, so they are the
// better choice for REST; an account with one may still give its auth token
// for its webhooks.
type Account struct {
	AccountSid         string `json:"account_sid"`
	AuthToken          string `json:"auth_token,omitempty"`
	AuthTokenSecondary string `json:"auth_token_secondary,omitempty"`
	APIKeySid          string `json:"api_key_sid,omitempty"`
	APIKeySecret       string `json:"api_key_secret,omitempty"`
}

// ErrConfig reports credentials that can never work.
var ErrConfig = errors.New("invalid Twilio credentials")

// ErrInsecureFile reports a credentials file that others than its owner may
// read or write; it is secretfile.ErrInsecure, which every secret file
// loader returns.
var ErrInsecureFile = secretfile.ErrInsecure

// Validate checks the shape of a, without contacting Twilio. Errors name
// fields, never their values (but a valid AccountSid).
func (a Account) Validate() error {
	switch {
	case !sidLike(a.AccountSid, "AC"):
		return fmt.Errorf("account_sid is not an AccountSid (AC followed by 32 hex digits): %w", ErrConfig)
	case a.AuthToken == "" && (a.APIKeySid == "" || a.APIKeySecret == ""):
		return fmt.Errorf("account %s: needs auth_token, or api_key_sid and api_key_secret: %w", a.AccountSid, ErrConfig)
	case (a.APIKeySid == "") != (a.APIKeySecret == ""):
		return fmt.Errorf("account %s: api_key_sid and api_key_secret go together: %w", a.AccountSid, ErrConfig)
	case a.AuthTokenSecondary != "" && a.AuthToken == "":
		return fmt.Errorf("account %s: auth_token_secondary needs auth_token, the primary token it is rotating from: %w", a.AccountSid, ErrConfig)
	case a.APIKeySid != "" && !sidLike(a.APIKeySid, "SK"):
		return fmt.Errorf("account %s: api_key_sid is not an API key SID (SK…): %w", a.AccountSid, ErrConfig)
	case !alphanumeric(a.AuthToken) || !alphanumeric(a.AuthTokenSecondary) || !alphanumeric(a.APIKeySecret):
		// twilio-go refuses such credentials before sending (21222/21224).
		return fmt.Errorf("account %s: a secret holds characters other than letters and digits: %w", a.AccountSid, ErrConfig)
	}
	return nil
}

// WebhookTokens are the tokens Twilio signs the account's webhooks with:
// its auth token and, during a rotation, the secondary one; none when it
// gives an API key alone.
func (a Account) WebhookTokens() []string {
	var tokens []string
	for _, t := range []string{a.AuthToken, a.AuthTokenSecondary} {
		if t != "" {
			tokens = append(tokens, t)
		}
	}
	return tokens
}

// WebhookKeyring is the Keyring that checks webhooks against accounts'
// tokens: a request naming one of accounts is checked against its
// WebhookTokens, or against defaultTokens (the --auth-token ones) when it
// has none; a request naming no account, against defaultTokens; one naming
// another account, against defaultTokens too, and refused with
// twilio.ErrUnknownAccount when they did not sign it.
func WebhookKeyring(defaultTokens []string, accounts []Account) (*twilio.Keyring, error) {
	ats := make([]twilio.AccountTokens, 0, len(accounts))
	for _, a := range accounts {
		if err := a.Validate(); err != nil {
			return nil, err
		}
		ats = append(ats, twilio.AccountTokens{AccountSid: a.AccountSid, Tokens: a.WebhookTokens()})
	}
	return twilio.NewKeyring(defaultTokens, ats...)
}

// username and password of HTTP basic authentication: the API key when
// there is one.
func (a Account) basicAuth() (string, string) {
	if a.APIKeySid != "" {
		return a.APIKeySid, a.APIKeySecret
	}
	return a.AccountSid, a.AuthToken
}

func sidLike(s, prefix string) bool {
	if len(s) != 34 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for _, c := range s[2:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

func alphanumeric(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// maxAccountsFile bounds what LoadAccountsFile reads: a few hundred
// accounts take a few tens of KiB.
const maxAccountsFile = 1 << 20

// accountsFile is the JSON of LoadAccountsFile.
type accountsFile struct {
	Accounts []Account `json:"accounts"`
}

// LoadAccountsFile reads credentials from a JSON file of the form
//
//	{"accounts": [
//	  {"account_sid": "AC…", "auth_token": "…"},
//	  {"account_sid": "AC…", "api_key_sid": "SK…", "api_key_secret": "…", "auth_token": "…"},
//	  {"account_sid": "AC…", "api_key_sid": "SK…", "api_key_secret": "…"}
//	]}
//
// REST uses an account's API key when it has one, else its auth_token.
// Webhooks naming the account are checked against its auth_token, and
// auth_token_secondary too during a rotation; against the default token
// (--auth-token) when it gives none.
//
// Rotating an account's auth token without refusing a webhook: create the
// secondary token in Twilio's console (Twilio still signs with the
// primary); add it as auth_token_secondary and reload; promote it in the
// console (Twilio signs with it from then on and revokes the old one); set
// auth_token to the new token, keep the old one as auth_token_secondary
// until deliveries signed before the promotion have arrived, then remove it
// and reload. REST calls authenticated by that auth_token fail between the
// promotion and the edit: an API key avoids that.
//
// The file must be accessible by its owner only (mode 0600 or 0400), as
// ssh requires of a private key: it holds secrets, and a file others can
// read has leaked them already. Errors never quote a secret.
func LoadAccountsFile(path string) ([]Account, error) {
	raw, err := secretfile.Read("Twilio accounts file", path, maxAccountsFile)
	switch {
	case errors.Is(err, secretfile.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w", err, ErrConfig)
	case err != nil:
		return nil, err
	}
	accounts, err := parseAccounts(raw)
	if err != nil {
		return nil, fmt.Errorf("accounts file %s: %w", path, err)
	}
	return accounts, nil
}

// parseAccounts decodes and validates an accounts file. Errors name the
// offset or field of a problem, never a value.
func parseAccounts(raw []byte) ([]Account, error) {
	var f accountsFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON object, at byte %d: %w", dec.InputOffset(), ErrConfig)
	}
	seen := make(map[string]int, len(f.Accounts))
	for i, a := range f.Accounts {
		if err := a.Validate(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		sid := strings.ToLower(a.AccountSid)
		if j, dup := seen[sid]; dup {
			return nil, fmt.Errorf("entries %d and %d: both are account %s: %w", j+1, i+1, a.AccountSid, ErrConfig)
		}
		seen[sid] = i
	}
	return f.Accounts, nil
}

// jsonError describes a decoding error without quoting the input: json's
// errors can quote values.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("JSON syntax error at byte %d: %w", syn.Offset, ErrConfig)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("JSON ends early: %w", ErrConfig)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Errorf("field %s: want a %s: %w", typ.Field, typ.Type, ErrConfig)
	}
	if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
		name = strings.TrimSuffix(name, `"`)
		if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz_") == "" && len(name) <= 32 {
			return fmt.Errorf("unknown field %q (fields: account_sid, auth_token, auth_token_secondary, api_key_sid, api_key_secret): %w", name, ErrConfig)
		}
		return fmt.Errorf("an unknown field (fields: account_sid, auth_token, auth_token_secondary, api_key_sid, api_key_secret): %w", ErrConfig)
	}
	return fmt.Errorf(`not an {"accounts": [...]} object: %w`, ErrConfig)
}
