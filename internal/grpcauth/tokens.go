package grpcauth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/callledger/callledger/internal/secretfile"
)

// ErrTokensFile reports an API tokens file that cannot be used.
var ErrTokensFile = errors.New("invalid API tokens file")

// MaxPrincipalLen bounds a principal's name: it is recorded in events
// (requested_by) and logs.
const MaxPrincipalLen = 128

// maxTokensFile bounds what LoadTokensFile reads.
const maxTokensFile = 1 << 20

// TokensFile is the JSON of an API tokens file:
//
//	{"tokens": [
//	  {"principal": "ops-board", "sha256": "<hex SHA-256 of the token>", "scopes": ["calls:read", "calls:hangup"]},
//	  {"principal": "analytics", "sha256": "<hex>", "scopes": ["calls:read"]},
//	  {"principal": "spiffe://example.org/billing", "client_cert": true, "scopes": ["calls:read"]}
//	]}
//
// The file holds hashes, not tokens, but stays readable by its owner only:
// it is the list of who may end calls.
type TokensFile struct {
	Tokens []TokenEntry `json:"tokens"`
}

// TokenEntry is one credential of a principal: a bearer token, by the
// SHA-256 of its bytes in hexadecimal, or (ClientCert) the identity of a
// client certificate, which is then the principal. A principal may have
// several token entries (a rotation holds the old and the new token), and
// one client-certificate entry.
type TokenEntry struct {
	Principal  string  `json:"principal"`
	SHA256     string  `json:"sha256,omitempty"`
	ClientCert bool    `json:"client_cert,omitempty"`
	Scopes     []Scope `json:"scopes"`
}

// Credentials are the principals a server accepts: tokens by hash, and
// client-certificate identities. They are immutable; a reload builds new
// ones and hands them to Authorizer.SetCredentials.
type Credentials struct {
	tokens []tokenCred
	certs  map[string]Principal
}

type tokenCred struct {
	sum       [sha256.Size]byte
	principal Principal
}

// ParseTokens decodes and validates an API tokens file. Errors name the
// entry and field of a problem, never a hash.
func ParseTokens(raw []byte) (*Credentials, error) {
	var f TokensFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON object, at byte %d: %w", dec.InputOffset(), ErrTokensFile)
	}
	return NewCredentials(f.Tokens...)
}

// NewCredentials validates entries and returns them as Credentials.
func NewCredentials(entries ...TokenEntry) (*Credentials, error) {
	c := &Credentials{certs: map[string]Principal{}}
	sums := map[[sha256.Size]byte]int{}
	for i, e := range entries {
		n := i + 1
		if err := validPrincipal(e.Principal); err != nil {
			return nil, fmt.Errorf("entry %d: principal %w", n, err)
		}
		scopes := make([]Scope, 0, len(e.Scopes))
		for _, s := range e.Scopes {
			if !knownScope(s) {
				return nil, fmt.Errorf("entry %d (%s): unknown scope %.40q (scopes: %v): %w", n, e.Principal, s, Scopes(), ErrTokensFile)
			}
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
		switch {
		case e.ClientCert && e.SHA256 != "":
			return nil, fmt.Errorf("entry %d (%s): sha256 and client_cert are two entries: %w", n, e.Principal, ErrTokensFile)
		case e.ClientCert:
			if _, dup := c.certs[e.Principal]; dup {
				return nil, fmt.Errorf("entry %d: client certificate %s listed twice: %w", n, e.Principal, ErrTokensFile)
			}
			c.certs[e.Principal] = Principal{Name: e.Principal, Scopes: scopes, Via: "client-certificate"}
		default:
			var sum [sha256.Size]byte
			if len(e.SHA256) != hex.EncodedLen(sha256.Size) {
				return nil, fmt.Errorf("entry %d (%s): sha256 must be the 64 hexadecimal digits of the token's SHA-256: %w", n, e.Principal, ErrTokensFile)
			}
			if _, err := hex.Decode(sum[:], []byte(e.SHA256)); err != nil {
				return nil, fmt.Errorf("entry %d (%s): sha256 is not hexadecimal: %w", n, e.Principal, ErrTokensFile)
			}
			if j, dup := sums[sum]; dup {
				return nil, fmt.Errorf("entries %d and %d have the same token: %w", j, n, ErrTokensFile)
			}
			sums[sum] = n
			c.tokens = append(c.tokens, tokenCred{sum: sum, principal: Principal{Name: e.Principal, Scopes: scopes, Via: "token"}})
		}
	}
	return c, nil
}

// LoadTokensFile reads an API tokens file (see TokensFile). Like a private
// key, it must be readable by its owner only.
func LoadTokensFile(path string) (*Credentials, error) {
	raw, err := secretfile.Read("API tokens file", path, maxTokensFile)
	switch {
	case errors.Is(err, secretfile.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w", err, ErrTokensFile)
	case err != nil:
		return nil, err
	}
	c, err := ParseTokens(raw)
	if err != nil {
		return nil, fmt.Errorf("API tokens file %s: %w", path, err)
	}
	return c, nil
}

// HashToken returns the sha256 of a token as an API tokens file writes
// it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Tokens reports how many tokens c holds, and ClientCerts how many
// certificate identities.
func (c *Credentials) Tokens() int      { return len(c.tokens) }
func (c *Credentials) ClientCerts() int { return len(c.certs) }

// token returns the principal of token. Its hash is compared with every
// hash in constant time, without stopping at a match, so that the time
// taken says nothing of which hash, or how much of one, matched.
func (c *Credentials) token(token string) (Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range c.tokens {
		if subtle.ConstantTimeCompare(sum[:], c.tokens[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return c.tokens[found].principal, true
}

// cert returns the principal of a client certificate identity, and false
// when the file does not map it.
func (c *Credentials) cert(identity string) (Principal, bool) {
	p, ok := c.certs[identity]
	return p, ok
}

// validPrincipal checks a principal's name: 1 to MaxPrincipalLen printable
// ASCII characters, since it goes into events and logs.
func validPrincipal(name string) error {
	if name == "" || len(name) > MaxPrincipalLen {
		return fmt.Errorf("must hold 1 to %d characters: %w", MaxPrincipalLen, ErrTokensFile)
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x21 || name[i] > 0x7e {
			return fmt.Errorf("must be printable ASCII without spaces: %w", ErrTokensFile)
		}
	}
	return nil
}

// jsonError describes a decoding error without quoting the input.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("JSON syntax error at byte %d: %w", syn.Offset, ErrTokensFile)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("JSON ends early: %w", ErrTokensFile)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Errorf("field %s: want a %s: %w", typ.Field, typ.Type, ErrTokensFile)
	}
	const fields = "principal, sha256, client_cert, scopes"
	if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
		name = strings.TrimSuffix(name, `"`)
		if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz_") == "" && len(name) <= 32 {
			return fmt.Errorf("unknown field %q (fields: %s): %w", name, fields, ErrTokensFile)
		}
		return fmt.Errorf("an unknown field (fields: %s): %w", fields, ErrTokensFile)
	}
	return fmt.Errorf(`not a {"tokens": [...]} object: %w`, ErrTokensFile)
}
