package twilio_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twilio/twilio-go/client"

	"github.com/callledger/callledger/twilio"
)

// Twilio's published example ("Webhooks Security"). Its Caller and From are
// +14158675310: with +12349013030 the signature is 0/KCTR6DLpKmkAf8muzZqo1nDgQ=.
const (
	vectorToken     = "12345"
	vectorURL       = "https://mycompany.com/myapp.php?foo=1&bar=2"
	vectorBody      = "CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212"
	vectorSignature = "GvWf1cFY/Q7PnoempGyD5oXAezc="
)

func mustVerifier(t testing.TB, publicURL string, tokens ...string) *twilio.Verifier {
	t.Helper()
	v, err := twilio.NewVerifier(publicURL, tokens...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// twilioGo is twilio-go's verdict on a request, the reference Verify must
// equal.
func twilioGo(token, signedURL string, body []byte, sig string) bool {
	rv := client.NewRequestValidator(token)
	return rv.ValidateBody(signedURL, body, sig)
}

func TestPublishedTestVector(t *testing.T) {
	t.Parallel()
	if got := twilio.Sign(vectorToken, vectorURL, []byte(vectorBody)); got != vectorSignature {
		t.Errorf("Sign = %q, want %q", got, vectorSignature)
	}
	rv := client.NewRequestValidator(vectorToken)
	params := map[string]string{
		"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234",
		"From": "+14158675310", "To": "+18005551212",
	}
	if !rv.Validate(vectorURL, params, vectorSignature) {
		t.Error("twilio-go Validate rejects the published vector")
	}
	if !rv.ValidateBody(vectorURL, []byte(vectorBody), vectorSignature) {
		t.Error("twilio-go ValidateBody rejects the published vector")
	}
	v := mustVerifier(t, "https://mycompany.com", vectorToken)
	if got := v.SignedURL("/myapp.php?foo=1&bar=2"); got != vectorURL {
		t.Errorf("SignedURL = %q, want %q", got, vectorURL)
	}
	if err := v.Verify("/myapp.php?foo=1&bar=2", []byte(vectorBody), vectorSignature); err != nil {
		t.Errorf("Verify(published vector) = %v", err)
	}
	// The parameters in another order sign the same.
	shuffled := "To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=%2B14158675310&Caller=%2B14158675310"
	if err := v.Verify("/myapp.php?foo=1&bar=2", []byte(shuffled), vectorSignature); err != nil {
		t.Errorf("Verify(published vector, shuffled) = %v", err)
	}
	for _, tampered := range []struct{ uri, body string }{
		{"/myapp.php?foo=1&bar=3", vectorBody},
		{"/myapp.php?foo=1&bar=2", strings.Replace(vectorBody, "Digits=1234", "Digits=1235", 1)},
		{"/myapp.php?foo=1&bar=2", vectorBody + "&Extra=1"},
		{"/myapp.php", vectorBody},
	} {
		if err := v.Verify(tampered.uri, []byte(tampered.body), vectorSignature); !errors.Is(err, twilio.ErrSignatureInvalid) {
			t.Errorf("Verify(%s, %s) = %v, want ErrSignatureInvalid", tampered.uri, tampered.body, err)
		}
	}
}

func TestVerifyCorpus(t *testing.T) {
	t.Parallel()
	reqs, _ := loadCorpus(t)
	v := mustVerifier(t, corpusPublicURL, corpusToken)
	for _, r := range reqs {
		t.Run(fmt.Sprintf("seq%03d-%s", r.Seq, r.Kind), func(t *testing.T) {
			t.Parallel()
			sig := r.Headers["X-Twilio-Signature"]
			err := v.Verify(r.URI(), []byte(r.Body), sig)
			switch {
			case r.ExpectHTTP != 403 && err != nil:
				t.Errorf("Verify = %v, want nil", err)
			case r.ExpectHTTP == 403 && sig == "" && !errors.Is(err, twilio.ErrSignatureMissing):
				t.Errorf("Verify = %v, want ErrSignatureMissing", err)
			case r.ExpectHTTP == 403 && sig != "" && !errors.Is(err, twilio.ErrSignatureInvalid):
				t.Errorf("Verify = %v, want ErrSignatureInvalid", err)
			}
			if ref := twilioGo(corpusToken, v.SignedURL(r.URI()), []byte(r.Body), sig); ref != (err == nil) {
				t.Errorf("Verify = %v but twilio-go says %v", err, ref)
			}
		})
	}
}

func TestVerifyTokens(t *testing.T) {
	t.Parallel()
	const uri = "/twilio/voice/status?tenant=acme"
	body := []byte("CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=ringing")
	url := corpusPublicURL + uri
	primary, secondary := "primary-token", "secondary-token"
	both := mustVerifier(t, corpusPublicURL, primary, secondary)
	onlyPrimary := mustVerifier(t, corpusPublicURL, primary)
	tests := []struct {
		name   string
		v      *twilio.Verifier
		signer string
		want   error
	}{
		{"primary with two tokens", both, primary, nil},
		{"secondary with two tokens", both, secondary, nil},
		{"secondary with one token", onlyPrimary, secondary, twilio.ErrSignatureInvalid},
		{"unknown token", both, "other-token", twilio.ErrSignatureInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.v.Verify(uri, body, twilio.Sign(tt.signer, url, body))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyPorts(t *testing.T) {
	t.Parallel()
	const token = "port-token"
	body := []byte("CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=completed")
	tests := []struct {
		publicURL string // what the Verifier is configured with
		signedAs  string // the URL Twilio signed
		want      bool
	}{
		{"https://h", "https://h/p", true},
		{"https://h", "https://h:443/p", true},
		{"https://h:443", "https://h/p", true},
		{"https://h:443", "https://h:443/p", true},
		{"http://h", "http://h:80/p", true},
		{"http://h:80", "http://h/p", true},
		{"https://h", "https://h:80/p", false},
		{"http://h", "http://h:443/p", false},
		{"https://h:8443", "https://h:8443/p", true},
		{"https://h:8443", "https://h/p", true}, // twilio-go also tries without the port
		{"https://h", "https://h:8443/p", false},
		{"https://h:8443", "https://h:443/p", false},
		{"https://h:8443/prefix", "https://h/prefix/p", true},
		{"https://h", "http://h/p", false},
		{"https://h", "https://g/p", false},
	}
	for _, tt := range tests {
		t.Run(tt.publicURL+" signed as "+tt.signedAs, func(t *testing.T) {
			t.Parallel()
			v := mustVerifier(t, tt.publicURL, token)
			sig := twilio.Sign(token, tt.signedAs, body)
			err := v.Verify("/p", body, sig)
			if got := err == nil; got != tt.want {
				t.Errorf("Verify = %v, want accepted=%v", err, tt.want)
			}
			if ref := twilioGo(token, v.SignedURL("/p"), body, sig); ref != tt.want {
				t.Errorf("twilio-go says %v, want %v: the table is wrong", ref, tt.want)
			}
		})
	}
}

func TestVerifyGET(t *testing.T) {
	t.Parallel()
	const token = "get-token"
	const uri = "/twilio/voice/status?CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=ringing&From=%2B14155550100"
	v := mustVerifier(t, corpusPublicURL, token)
	sig := twilio.Sign(token, corpusPublicURL+uri, nil)
	if err := v.Verify(uri, nil, sig); err != nil {
		t.Errorf("Verify(GET) = %v", err)
	}
	if !twilioGo(token, corpusPublicURL+uri, nil, sig) {
		t.Error("twilio-go rejects the GET signature")
	}
	// Signing the query parameters again after the URL is wrong.
	_, query, _ := strings.Cut(uri, "?")
	doubled := twilio.Sign(token, corpusPublicURL+uri, []byte(query))
	if err := v.Verify(uri, nil, doubled); !errors.Is(err, twilio.ErrSignatureInvalid) {
		t.Errorf("Verify(GET signed with the query as body) = %v, want ErrSignatureInvalid", err)
	}
}

func TestVerifyBodySHA256(t *testing.T) {
	t.Parallel()
	const token = "json-token"
	body := []byte(`[{"specversion":"1.0","id":"EV1","type":"com.twilio.voice.status-callback.call.ringing"}]`)
	uri := "/twilio/events?bodySHA256=" + twilio.BodySHA256(body)
	v := mustVerifier(t, corpusPublicURL, token)
	sig := twilio.Sign(token, corpusPublicURL+uri, body)
	if want := twilio.Sign(token, corpusPublicURL+uri, nil); sig != want {
		t.Errorf("Sign covers the JSON body: %q, want the URL-only %q", sig, want)
	}
	tests := []struct {
		name string
		uri  string
		body []byte
		sig  string
		want error
	}{
		{"valid", uri, body, sig, nil},
		{"tampered body", uri, append([]byte(nil), append(body[:len(body)-1:len(body)-1], ' ', ']')...), sig, twilio.ErrSignatureInvalid},
		{"empty body", uri, nil, sig, twilio.ErrSignatureInvalid},
		{"hash of another body", "/twilio/events?bodySHA256=" + twilio.BodySHA256([]byte("[]")), body,
			twilio.Sign(token, corpusPublicURL+"/twilio/events?bodySHA256="+twilio.BodySHA256([]byte("[]")), nil), twilio.ErrSignatureInvalid},
		{"uppercase hash", strings.ToUpper(uri), body, twilio.Sign(token, corpusPublicURL+strings.ToUpper(uri), nil), twilio.ErrSignatureInvalid},
		{"escaped parameter name", "/twilio/events?body%53HA256=" + twilio.BodySHA256(body), body,
			twilio.Sign(token, corpusPublicURL+"/twilio/events?body%53HA256="+twilio.BodySHA256(body), nil), nil},
		{"missing signature", uri, body, "", twilio.ErrSignatureMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.Verify(tt.uri, tt.body, tt.sig)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
			if ref := twilioGo(token, v.SignedURL(tt.uri), tt.body, tt.sig); ref != (err == nil) {
				t.Errorf("Verify = %v but twilio-go says %v", err, ref)
			}
		})
	}
}

// TestVerifyEdgeCases pins the verdict on bodies and signatures that real
// traffic does not have but a forger might send: the reference's, and
// twilio-go's wherever its first-value rule signs what Twilio signs.
func TestVerifyEdgeCases(t *testing.T) {
	t.Parallel()
	const token = "edge-token"
	const uri = "/twilio/voice/status"
	signedURL := corpusPublicURL + uri
	v := mustVerifier(t, corpusPublicURL, token)
	valid := twilio.Sign(token, signedURL, []byte("A=1&B=2"))
	raw, err := base64.StdEncoding.DecodeString(valid)
	if err != nil {
		t.Fatal(err)
	}
	hmacOf := func(msg string) string {
		mac := hmac.New(sha1.New, []byte(token))
		mac.Write([]byte(msg))
		return base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	bothValues := hmacOf(signedURL + "A1A2")
	tests := []struct {
		name string
		body string
		sig  string
		want bool
	}{
		{"valid", "A=1&B=2", valid, true},
		{"repeated name signed with its first value only", "A=1&A=2", twilio.Sign(token, signedURL, []byte("A=1")), false},
		{"repeated name signed with both values", "A=1&A=2", bothValues, true},
		{"repeated name, values sorted", "A=2&A=1", bothValues, true},
		{"repeated name signed in request order", "A=2&A=1", hmacOf(signedURL + "A2A1"), false},
		{"repeated value signed once", "A=1&A=1&B=2", valid, true},
		{"repeated value signed twice", "A=1&A=1&B=2", hmacOf(signedURL + "A1A1B2"), false},
		{"semicolon", "A=1;B=2", twilio.Sign(token, signedURL, []byte("A=1;B=2")), false},
		{"bad escape", "A=%zz&B=2", twilio.Sign(token, signedURL, []byte("A=%zz&B=2")), false},
		{"escape at the end", "A=1&B=%2", twilio.Sign(token, signedURL, []byte("A=1&B=%2")), false},
		{"empty settings are skipped", "&A=1&&B=2&", valid, true},
		{"plus is a space", "A=a+b", twilio.Sign(token, signedURL, []byte("A=a%20b")), true},
		{"name without value", "A", twilio.Sign(token, signedURL, []byte("A=")), true},
		{"value with =", "A=b=c", twilio.Sign(token, signedURL, []byte("A=b%3Dc")), true},
		{"signature without padding", "A=1&B=2", strings.TrimRight(valid, "="), false},
		{"signature with a newline", "A=1&B=2", valid[:10] + "\n" + valid[10:], false},
		{"signature non-canonical", "A=1&B=2", nonCanonical(raw), false},
		{"signature URL-safe alphabet", "A=1&B=2", base64.URLEncoding.EncodeToString(raw), !strings.ContainsAny(valid, "+/")},
		{"signature too long", "A=1&B=2", valid + "AAAA", false},
		{"signature garbage", "A=1&B=2", "not a signature", false},
	}
	ring := refRing{def: []string{token}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.Verify(uri, []byte(tt.body), tt.sig)
			if got := err == nil; got != tt.want {
				t.Errorf("Verify = %v, want accepted=%v", err, tt.want)
			}
			if !tt.want && !errors.Is(err, twilio.ErrSignatureInvalid) {
				t.Errorf("Verify = %v, want ErrSignatureInvalid", err)
			}
			if malformed := strings.ContainsAny(tt.body, ";%"); errors.Is(err, twilio.ErrMalformedForm) != malformed {
				t.Errorf("Verify = %v; errors.Is(ErrMalformedForm) should be %v", err, malformed)
			}
			for _, setting := range append(strings.Split(tt.body, "&"), tt.sig) {
				if err != nil && len(setting) >= 4 && strings.Contains(err.Error(), setting) {
					t.Errorf("Verify = %v quotes %q of the unauthenticated request", err, setting)
				}
			}
			if ref := refVerify(ring, signedURL, []byte(tt.body), tt.sig); ref != tt.want {
				t.Errorf("the reference says %v, want %v: the table is wrong", ref, tt.want)
			}
			if rulesAgree(signedURL, []byte(tt.body)) {
				if ref := twilioGo(token, signedURL, []byte(tt.body), tt.sig); ref != tt.want {
					t.Errorf("twilio-go says %v, want %v: the table is wrong", ref, tt.want)
				}
			}
		})
	}
}

// nonCanonical encodes a 20-byte MAC with non-zero padding bits, which a
// lenient base64 decoder accepts as the same bytes.
func nonCanonical(mac []byte) string {
	s := []byte(base64.StdEncoding.EncodeToString(mac))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := strings.IndexByte(alphabet, s[26])
	s[26] = alphabet[i|1] // the last two bits of the 27th character are padding
	return string(s)
}

func TestVerifyFragment(t *testing.T) {
	t.Parallel()
	const token = "fragment-token"
	body := []byte("CallSid=CA0123456789abcdef0123456789abcdef")
	v := mustVerifier(t, corpusPublicURL, token)
	const uri = "/twilio/voice/status?tenant=acme#rc=2&rp=all"
	if got, want := v.SignedURL(uri), corpusPublicURL+"/twilio/voice/status?tenant=acme"; got != want {
		t.Errorf("SignedURL = %q, want %q", got, want)
	}
	if err := v.Verify(uri, body, twilio.Sign(token, corpusPublicURL+uri, body)); err != nil {
		t.Errorf("Verify(with fragment) = %v", err)
	}
}

func TestVerifyParameterLimit(t *testing.T) {
	t.Parallel()
	const token = "limit-token"
	const uri = "/twilio/voice/status"
	v := mustVerifier(t, corpusPublicURL, token)
	for _, n := range []int{10000, 10001} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			body := []byte(manyParams(n))
			sig := twilio.Sign(token, corpusPublicURL+uri, body)
			err := v.Verify(uri, body, sig)
			want := n <= 10000
			if got := err == nil; got != want {
				t.Errorf("Verify(%d parameters) = %v, want accepted=%v", n, err, want)
			}
			if ref := twilioGo(token, corpusPublicURL+uri, body, sig); ref != want {
				t.Errorf("twilio-go says %v, want %v", ref, want)
			}
		})
	}
}

// TestVerifyParameterLimitGODEBUG follows net/url's urlmaxqueryparams
// setting as twilio-go does. Not parallel: it sets the environment.
func TestVerifyParameterLimitGODEBUG(t *testing.T) {
	t.Setenv("GODEBUG", "urlmaxqueryparams=3")
	const token = "godebug-token"
	const uri = "/twilio/voice/status"
	v := mustVerifier(t, corpusPublicURL, token)
	for n, want := range map[int]bool{2: true, 3: false} { // the custom limit is exclusive
		body := []byte(manyParams(n))
		sig := twilio.Sign(token, corpusPublicURL+uri, body)
		if got := v.Verify(uri, body, sig) == nil; got != want {
			t.Errorf("Verify(%d parameters) accepted=%v, want %v", n, got, want)
		}
		if ref := twilioGo(token, corpusPublicURL+uri, body, sig); ref != want {
			t.Errorf("twilio-go accepted=%v for %d parameters, want %v", ref, n, want)
		}
	}
}

func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('&')
		}
		fmt.Fprintf(&b, "P%d=%d", i, i)
	}
	return b.String()
}

func TestNewVerifier(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		publicURL string
		want      string // SignedURL("/p")
	}{
		{"https://ledger.test", "https://ledger.test/p"},
		{"https://ledger.test/", "https://ledger.test/p"},
		{"https://h:8443/prefix", "https://h:8443/prefix/p"},
		{"https://h:8443/prefix//", "https://h:8443/prefix/p"},
		{"http://[::1]:8080", "http://[::1]:8080/p"},
	} {
		v, err := twilio.NewVerifier(tt.publicURL, "tok")
		if err != nil {
			t.Errorf("NewVerifier(%q) = %v", tt.publicURL, err)
			continue
		}
		if got := v.SignedURL("/p"); got != tt.want {
			t.Errorf("NewVerifier(%q).SignedURL(/p) = %q, want %q", tt.publicURL, got, tt.want)
		}
	}
	for _, bad := range []string{
		"", "ledger.test", "//ledger.test", "ftp://ledger.test", "HTTPS://ledger.test", "https://",
		"https:///path", "https://user:pass@ledger.test", "https://ledger.test?tenant=acme",
		"https://ledger.test/?", "https://ledger.test#rc=2", "https://ledger.test/%zz", "https://ledger.test:port",
		"https://ledger test",
	} {
		if _, err := twilio.NewVerifier(bad, "tok"); !errors.Is(err, twilio.ErrInvalidPublicURL) {
			t.Errorf("NewVerifier(%q) = %v, want ErrInvalidPublicURL", bad, err)
		}
	}
	for _, tokens := range [][]string{nil, {""}, {"a", ""}, {"a", "b", "c"}} {
		if _, err := twilio.NewVerifier(corpusPublicURL, tokens...); !errors.Is(err, twilio.ErrInvalidAuthToken) {
			t.Errorf("NewVerifier(tokens %q) = %v, want ErrInvalidAuthToken", tokens, err)
		}
	}
}

func TestSignMatchesReference(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ url, body string }{
		{vectorURL, vectorBody},
		{"https://h/p?x=1#rc=1", "B=2&A=1&A=3"},
		{"https://h/p", "B=2&A=3&A=1&A=3&B=1&C="},
		{"https://h/p?bodySHA256=abc", `{"a":1}`},
		{"https://h/p?bodySHA256=", "A=1"},
		{"https://h/p", ""},
	} {
		if got, want := twilio.Sign("tok", tt.url, []byte(tt.body)), refSign("tok", tt.url, []byte(tt.body)); got != want {
			t.Errorf("Sign(%q, %q) = %q, reference %q", tt.url, tt.body, got, want)
		}
	}
}
