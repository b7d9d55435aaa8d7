package twilio

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of NewKeyring beyond ErrInvalidAuthToken.
var ErrInvalidAccountSid = errors.New("invalid AccountSid")

// ErrUnknownAccount reports a request whose AccountSid names an account the
// Keyring does not list, and that the default tokens did not sign: no
// token of that account is configured. The HTTP adapter answers 403, as to
// a bad signature, but counts it apart: it is a misconfiguration (a
// subaccount whose auth token is missing) as often as a forgery.
var ErrUnknownAccount = errors.New("AccountSid names no configured Twilio account")

// AccountTokens are the auth tokens Twilio signs one account's webhooks with.
// Twilio signs a subaccount's webhooks with the subaccount's own token, not
// its parent's.
type AccountTokens struct {
	// AccountSid is "AC" followed by 32 hexadecimal digits.
	AccountSid string
	// Tokens are the primary auth token and, during a rotation, the
	// secondary one. None means the account's webhooks are checked against
	// the default tokens: an account whose auth token is the default one,
	// listed for its REST credentials (an API key) alone.
	Tokens []string
}

// Keyring says which tokens a request is checked against, by the account
// its AccountSid parameter names. It is immutable and safe for concurrent
// use; a reload builds a new Keyring and hands it to Verifier.SetKeyring.
//
// A request without AccountSid is checked against the default tokens. One
// naming a listed account, against that account's tokens only. One naming
// an account the Keyring does not list, against the default tokens too
// (they belong to an account the configuration need not name, whose
// webhooks carry its AccountSid), and when they did not sign it, it is
// refused with ErrUnknownAccount rather than ErrSignatureInvalid, unless the
// Keyring lists no account at all: a single-account deployment checks every
// request against the default tokens, whatever it names.
type Keyring struct {
	def      *keySet
	unlisted *keySet            // the default tokens, for an account not listed
	accounts map[string]*keySet // by AccountSid, hexadecimal in lowercase
}

// keySet is the tokens one request is checked against.
type keySet struct {
	account  string // the listed account; "" for the default tokens
	keys     []*signingKey
	unlisted bool // for an account the Keyring does not list
}

// NewKeyring returns a Keyring with defaultTokens (the primary auth token
// and, during a rotation, the secondary one) and accounts.
func NewKeyring(defaultTokens []string, accounts ...AccountTokens) (*Keyring, error) {
	def, err := newKeySet("", defaultTokens)
	if err != nil {
		return nil, fmt.Errorf("twilio: default auth tokens: %w", err)
	}
	k := &Keyring{def: def, unlisted: &keySet{keys: def.keys, unlisted: true}, accounts: make(map[string]*keySet, len(accounts))}
	for i, a := range accounts {
		sid, ok := canonicalAccountSid(a.AccountSid)
		if !ok {
			// Not quoted: a token in the wrong field would end up in logs.
			return nil, fmt.Errorf("twilio: account %d: not an AccountSid (AC followed by 32 hexadecimal digits): %w", i+1, ErrInvalidAccountSid)
		}
		if _, dup := k.accounts[sid]; dup {
			return nil, fmt.Errorf("twilio: account %s listed twice: %w", sid, ErrInvalidAccountSid)
		}
		set := &keySet{account: sid, keys: def.keys}
		if len(a.Tokens) > 0 {
			if set, err = newKeySet(sid, a.Tokens); err != nil {
				return nil, fmt.Errorf("twilio: account %s: %w", sid, err)
			}
		}
		k.accounts[sid] = set
	}
	return k, nil
}

func newKeySet(account string, tokens []string) (*keySet, error) {
	if len(tokens) == 0 || len(tokens) > 2 {
		return nil, fmt.Errorf("%d auth tokens given, want 1 or 2 (primary, secondary): %w", len(tokens), ErrInvalidAuthToken)
	}
	s := &keySet{account: account}
	for i, tok := range tokens {
		if tok == "" {
			return nil, fmt.Errorf("auth token %d is empty: %w", i+1, ErrInvalidAuthToken)
		}
		s.keys = append(s.keys, newSigningKey(tok))
	}
	return s, nil
}

// Configured reports whether the Keyring lists the account sid (either case
// of hexadecimal digits), so that a metric may carry it as a label.
func (k *Keyring) Configured(sid string) bool {
	sid, ok := canonicalAccountSid(sid)
	if !ok {
		return false
	}
	_, listed := k.accounts[sid]
	return listed
}

// lookup returns the tokens for a request whose AccountSid is account
// (empty when it has none).
func (k *Keyring) lookup(account []byte) *keySet {
	if len(account) == 0 || len(k.accounts) == 0 {
		return k.def
	}
	if set, ok := k.accounts[string(account)]; ok {
		return set
	}
	return k.unlisted
}

// canonicalAccountSid returns sid with its hexadecimal digits in lowercase,
// as Twilio writes them, and whether it is an AccountSid.
func canonicalAccountSid(sid string) (string, bool) {
	if !accountSidShaped(sid) {
		return "", false
	}
	return "AC" + strings.ToLower(sid[2:]), true
}

// accountSidShaped reports whether s is "AC" followed by 32 hexadecimal
// digits of either case.
func accountSidShaped[S ~string | ~[]byte](s S) bool {
	if len(s) != 34 || s[0] != 'A' || s[1] != 'C' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}
