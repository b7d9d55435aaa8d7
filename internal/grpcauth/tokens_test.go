package grpcauth_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/internal/secretfile"
)

var (
	hashA = grpcauth.HashToken("token-a")
	hashB = grpcauth.HashToken("token-b")
)

func TestParseTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file string
		tokens     int
		certs      int
		errHas     string // "" when valid
	}{
		{"issue's example", `{"tokens": [
			{"principal": "ops-board", "sha256": "` + hashA + `", "scopes": ["calls:read", "calls:hangup"]},
			{"principal": "analytics", "sha256": "` + hashB + `", "scopes": ["calls:read"]}]}`, 2, 0, ""},
		{"client certificate", `{"tokens":[{"principal":"spiffe://example.org/billing","client_cert":true,"scopes":["calls:read"]}]}`, 0, 1, ""},
		{"two tokens of one principal (a rotation)", `{"tokens":[{"principal":"a","sha256":"` + hashA + `","scopes":["calls:read"]},{"principal":"a","sha256":"` + hashB + `","scopes":["calls:read"]}]}`, 2, 0, ""},
		{"upper-case hash", `{"tokens":[{"principal":"a","sha256":"` + strings.ToUpper(hashA) + `","scopes":[]}]}`, 1, 0, ""},
		{"no scopes", `{"tokens":[{"principal":"a","sha256":"` + hashA + `"}]}`, 1, 0, ""},
		{"empty", `{"tokens":[]}`, 0, 0, ""},

		{"unknown scope", `{"tokens":[{"principal":"a","sha256":"` + hashA + `","scopes":["calls:write"]}]}`, 0, 0, `unknown scope "calls:write"`},
		{"same token twice", `{"tokens":[{"principal":"a","sha256":"` + hashA + `"},{"principal":"b","sha256":"` + hashA + `"}]}`, 0, 0, "entries 1 and 2 have the same token"},
		{"short hash", `{"tokens":[{"principal":"a","sha256":"abcd"}]}`, 0, 0, "64 hexadecimal digits"},
		{"not hex", `{"tokens":[{"principal":"a","sha256":"` + strings.Repeat("z", 64) + `"}]}`, 0, 0, "not hexadecimal"},
		{"no hash", `{"tokens":[{"principal":"a","scopes":["calls:read"]}]}`, 0, 0, "64 hexadecimal digits"},
		{"hash and certificate", `{"tokens":[{"principal":"a","sha256":"` + hashA + `","client_cert":true}]}`, 0, 0, "two entries"},
		{"certificate twice", `{"tokens":[{"principal":"a","client_cert":true},{"principal":"a","client_cert":true}]}`, 0, 0, "listed twice"},
		{"empty principal", `{"tokens":[{"principal":"","sha256":"` + hashA + `"}]}`, 0, 0, "entry 1: principal must hold"},
		{"principal with a space", `{"tokens":[{"principal":"a b","sha256":"` + hashA + `"}]}`, 0, 0, "printable ASCII"},
		{"principal too long", `{"tokens":[{"principal":"` + strings.Repeat("p", 129) + `","sha256":"` + hashA + `"}]}`, 0, 0, "1 to 128"},
		{"unknown field", `{"tokens":[{"principal":"a","token":"secret"}]}`, 0, 0, `unknown field "token"`},
		{"trailing data", `{"tokens":[]} {}`, 0, 0, "data after"},
		{"syntax", `{"tokens":[`, 0, 0, "JSON ends early"},
		{"not an object", `[]`, 0, 0, "not a {\"tokens\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := grpcauth.ParseTokens([]byte(tc.file))
			if tc.errHas != "" {
				if !errors.Is(err, grpcauth.ErrTokensFile) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("ParseTokens = %v, want ErrTokensFile saying %q", err, tc.errHas)
				}
				if strings.Contains(err.Error(), hashA) || strings.Contains(err.Error(), "secret") {
					t.Errorf("error %q quotes the file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Tokens() != tc.tokens || c.ClientCerts() != tc.certs {
				t.Errorf("%d tokens and %d certificates, want %d and %d", c.Tokens(), c.ClientCerts(), tc.tokens, tc.certs)
			}
		})
	}
}

// TestLoadTokensFileMode: a tokens file others can read is refused, as an
// accounts file is.
func TestLoadTokensFileMode(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no Unix mode bits")
	}
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, []byte(`{"tokens":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := grpcauth.LoadTokensFile(path); err != nil {
		t.Fatalf("0600: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := grpcauth.LoadTokensFile(path)
	if !errors.Is(err, secretfile.ErrInsecure) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("0644: %v, want ErrInsecure with the fix", err)
	}
}

// FuzzParseTokens: any input is refused with ErrTokensFile or accepted as
// valid credentials; it never panics, and an error never quotes a hash.
func FuzzParseTokens(f *testing.F) {
	f.Add([]byte(`{"tokens":[{"principal":"ops","sha256":"` + hashA + `","scopes":["calls:read","calls:hangup"]}]}`))
	f.Add([]byte(`{"tokens":[{"principal":"spiffe://x/y","client_cert":true,"scopes":["projections:admin"]}]}`))
	f.Add([]byte(`{"tokens":[{"principal":"a","sha256":"` + hashA + `"},{"principal":"b","sha256":"` + hashA + `"}]}`))
	f.Add([]byte(`{"tokens":null}`))
	f.Add([]byte(`{"tokens":[{"principal":1}]}`))
	f.Add([]byte(`{"tokens":[]} x`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := grpcauth.ParseTokens(raw)
		if err != nil {
			if !errors.Is(err, grpcauth.ErrTokensFile) {
				t.Fatalf("error %v is not ErrTokensFile", err)
			}
			for _, h := range hashes(raw) {
				if strings.Contains(err.Error(), h) {
					t.Fatalf("error quotes the hash %q: %v", h, err)
				}
			}
			return
		}
		if c == nil || c.Tokens() < 0 || c.ClientCerts() < 0 {
			t.Fatal("no credentials without an error")
		}
	})
}

// hashes are the sha256 values of a tokens file that are worth hiding:
// long enough, and not also a principal (which errors may name).
func hashes(raw []byte) []string {
	var f struct {
		Tokens []struct {
			Principal any `json:"principal"`
			SHA256    any `json:"sha256"`
		} `json:"tokens"`
	}
	_ = json.Unmarshal(raw, &f)
	var out []string
	for _, e := range f.Tokens {
		h, ok := e.SHA256.(string)
		if !ok || len(h) < 16 {
			continue
		}
		hidden := true
		for _, o := range f.Tokens {
			if p, ok := o.Principal.(string); ok && strings.Contains(p, h) {
				hidden = false
			}
		}
		if hidden {
			out = append(out, h)
		}
	}
	return out
}
