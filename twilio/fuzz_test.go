package twilio_test

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callledger/callledger/twilio"
)

// How FuzzVerify signs its request.
const (
	sigCorrect     = iota // as Twilio would
	sigCorrupted          // one bit of the correct MAC flipped
	sigPortVariant        // over the other URL twilio-go tries (port added or removed)
	sigGiven              // the fuzzer's own string
	sigFirstValue         // as twilio-go expects: the first value of a repeated name only
	sigModes
)

// Which accounts FuzzVerify's Keyring lists, beside the default token.
const (
	ringSingle    = iota // none: every request is checked against the default token
	ringNamed            // the account the request names, with the request's token
	ringUnnamed          // another account only
	ringDefaulted        // the account the request names, without tokens of its own
	ringModes
)

// otherAccount is an account FuzzVerify lists that requests do not name.
const otherAccount = "ACffffffffffffffffffffffffffffffff"

// FuzzVerify asserts that Verify's verdict equals the reference
// implementation's (refVerify: every distinct value of a repeated parameter
// signed, tokens picked by AccountSid) for every URL url.Parse accepts
// (Verify's documented precondition), and twilio-go's ValidateBody verdict
// wherever Twilio's rule and twilio-go's agree: no parameter with two
// different values, and tokens picked.
func FuzzVerify(f *testing.F) {
	var mu sync.Mutex
	verifiers := map[string]*twilio.Verifier{} // NewVerifier probes net/url once: cache
	f.Fuzz(func(t *testing.T, https bool, host, port, prefix, path, query string, withHash bool, body []byte, token string, mode uint8, given string) {
		scheme := "http"
		if https {
			scheme = "https"
		}
		base := scheme + "://" + host
		if port != "" {
			base += ":" + port
		}
		base += prefix
		uri := path
		if query != "" {
			uri += "?" + query
		}
		if withHash {
			sep := "?"
			if strings.Contains(uri, "?") {
				sep = "&"
			}
			uri += sep + "bodySHA256=" + twilio.BodySHA256(body)
		}

		// The Keyring: the request's token is the default one, or that of
		// the account the request names.
		named, _ := refAccount(base+stripFragment(uri), body)
		ringMode := int(mode/sigModes) % ringModes
		ring := refRing{def: []string{token}}
		switch {
		case ringMode == ringSingle:
		case ringMode == ringUnnamed || !validAccountSid(named) || named == otherAccount:
			ring.accounts = map[string][]string{otherAccount: {"other-token"}}
		case ringMode == ringNamed:
			ring.def = []string{"default-token"}
			ring.accounts = map[string][]string{named: {token}, otherAccount: {"other-token"}}
		case ringMode == ringDefaulted:
			ring.accounts = map[string][]string{named: nil, otherAccount: {"other-token"}}
		}
		var accounts []twilio.AccountTokens
		for sid, toks := range ring.accounts {
			accounts = append(accounts, twilio.AccountTokens{AccountSid: sid, Tokens: toks})
		}
		keyring, err := twilio.NewKeyring(ring.def, accounts...)
		if err != nil {
			if token == "" {
				return // not a configuration NewKeyring accepts
			}
			t.Fatalf("NewKeyring: %v", err)
		}
		mu.Lock()
		v, ok := verifiers[base]
		if !ok {
			if v, err = twilio.NewVerifierWithKeyring(base, keyring); err != nil {
				mu.Unlock()
				return // not a configuration NewVerifier accepts
			}
			if len(verifiers) > 1000 {
				clear(verifiers)
			}
			verifiers[base] = v
		}
		mu.Unlock()
		v.SetKeyring(keyring) // fuzz calls of one process run one at a time

		signed := v.SignedURL(uri)
		if _, err := url.Parse(signed); err != nil {
			return // Verify's precondition
		}

		correct := refSign(token, signed, body)
		if _, err := url.ParseQuery(string(body)); err == nil {
			if got := twilio.Sign(token, signed, body); got != correct {
				t.Fatalf("Sign = %q, the reference computes %q", got, correct)
			}
		}
		var sig string
		switch mode % sigModes {
		case sigCorrect:
			sig = correct
		case sigCorrupted:
			raw, _ := base64.StdEncoding.DecodeString(correct)
			raw[int(mode)%len(raw)] ^= 1 << (mode % 8)
			sig = base64.StdEncoding.EncodeToString(raw)
		case sigPortVariant:
			alt := removePort(signed)
			if alt == signed {
				alt = addPort(signed)
			}
			sig = refHMAC(token, alt+refParams(signed, body, false))
		case sigGiven:
			sig = given
		case sigFirstValue:
			sig = refSignFirstValue(token, signed, body)
		}

		account, err := v.VerifyAccount(uri, body, sig)
		want := refVerify(ring, signed, body, sig)
		if (err == nil) != want {
			t.Fatalf("Verify(%q, %q, %q) = %v; the reference says %v for %q", uri, body, sig, err, want, signed)
		}
		if tokens, _ := ring.tokens(named); rulesAgree(signed, body) && refAccountOK(signed, body) {
			goSays := false
			for _, tok := range tokens {
				goSays = goSays || twilioGo(tok, signed, body, sig)
			}
			if goSays != want {
				t.Fatalf("the reference says %v, twilio-go ValidateBody(%q, %q, %q) says %v", want, signed, body, sig, goSays)
			}
		}
		if !rulesAgree(signed, body) && sig == refSignFirstValue(token, signed, body) && sig != correct && err == nil {
			t.Fatalf("Verify(%q, %q) accepts the first-value signature of a repeated parameter", uri, body)
		}
		var verr *twilio.VerifyError
		switch {
		case err == nil:
			if wantAccount := listedAccount(ring, named); account != wantAccount {
				t.Fatalf("Verify's account = %q, want %q", account, wantAccount)
			}
		case !errors.As(err, &verr):
			t.Fatalf("Verify error %v is not a *VerifyError", err)
		case sig == "" && !errors.Is(err, twilio.ErrSignatureMissing):
			t.Fatalf("Verify without signature = %v, want ErrSignatureMissing", err)
		case errors.Is(err, twilio.ErrUnknownAccount):
			if _, listed := ring.tokens(named); listed || verr.Account != "" || verr.Claimed != "" && verr.Claimed != named {
				t.Fatalf("Verify = %v (account %q, claimed %q) for a request naming %q, which the ring lists", err, verr.Account, verr.Claimed, named)
			}
		case sig != "" && !errors.Is(err, twilio.ErrSignatureInvalid):
			t.Fatalf("Verify = %v, want ErrSignatureInvalid", err)
		}
	})
}

// refAccountOK reports whether the request names one account at most.
func refAccountOK(signedURL string, body []byte) bool {
	_, ok := refAccount(signedURL, body)
	return ok
}

// listedAccount is the account VerifyAccount reports for a request naming
// named: itself when ring lists it, "" for the default tokens.
func listedAccount(ring refRing, named string) string {
	if _, ok := ring.accounts[named]; ok && named != "" {
		return named
	}
	return ""
}

// validAccountSid reports whether s is an AccountSid as Twilio writes it.
func validAccountSid(s string) bool {
	if len(s) != 34 || !strings.HasPrefix(s, "AC") {
		return false
	}
	_, err := hex.DecodeString(s[2:])
	return err == nil && strings.ToLower(s) == "ac"+s[2:]
}

func stripFragment(uri string) string {
	uri, _, _ = strings.Cut(uri, "#")
	return uri
}

// addPort and removePort are twilio-go's (client/request_validator.go,
// v1.31.0, MIT), copied so that the port variant is built independently of
// the code under test.
func addPort(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	if len(parsed.Port()) != 0 {
		return u
	}
	if parsed.Scheme == "https" {
		return updatePort(u, 443)
	}
	return updatePort(u, 80)
}

func updatePort(u string, newPort int) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	var newHost string
	if len(parsed.Port()) == 0 {
		newHost = fmt.Sprintf("%s:%d", parsed.Host, newPort)
	} else {
		oldHost := strings.Split(parsed.Host, ":")[0]
		newHost = fmt.Sprintf("%s:%d", oldHost, newPort)
	}
	parsed.Host = newHost
	return parsed.String()
}

func removePort(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	if len(parsed.Port()) == 0 {
		return u
	}
	parsed.Host = strings.Split(parsed.Host, ":")[0]
	return parsed.String()
}

// FuzzParseForm asserts that the form parser agrees with url.ParseQuery on
// every name, every value and on failing, and that Verify signs the
// parameters as the reference does.
func FuzzParseForm(f *testing.F) {
	f.Fuzz(func(t *testing.T, q string) {
		want, wantErr := url.ParseQuery(q)
		got, err := twilio.ParseFormBytes([]byte(q))
		if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseForm(%q) = %v, %v; url.ParseQuery = %v, %v", q, got, err, want, wantErr)
		}
		if err != nil && !errors.Is(err, twilio.ErrMalformedForm) {
			t.Fatalf("ParseForm(%q) error %v is not ErrMalformedForm", q, err)
		}
		if wantErr == nil {
			gotS, errS := twilio.ParseFormString(q)
			if errS != nil || !reflect.DeepEqual(gotS, want) {
				t.Fatalf("ParseFormString(%q) = %v, %v; url.ParseQuery = %v", q, gotS, errS, want)
			}
			if got, signed := twilio.SignedParams([]byte(q)), refSignedParams(want, false); got != signed {
				t.Fatalf("SignedParams(%q) = %q, want %q", q, got, signed)
			}
		}
		// The same text as a URL query: bodySHA256 and AccountSid as
		// url.URL.Query() sees them.
		for _, name := range []string{"bodySHA256", "AccountSid", firstName(q)} {
			u := &url.URL{RawQuery: q}
			v, found := twilio.QueryFirst(q, name)
			if wantV := u.Query().Get(name); v != wantV || found != u.Query().Has(name) {
				t.Fatalf("QueryFirst(%q, %q) = %q, %v; url.Values.Get = %q, Has = %v", q, name, v, found, wantV, u.Query().Has(name))
			}
			first, found, differs := twilio.QueryValues(q, name)
			values := u.Query()[name]
			if first != u.Query().Get(name) || found != (len(values) > 0) || differs != (len(slices.Compact(slices.Sorted(slices.Values(values)))) > 1) {
				t.Fatalf("QueryValues(%q, %q) = %q, %v, %v; url.Values = %q", q, name, first, found, differs, values)
			}
		}
	})
}

// firstName is the unescaped name of q's first setting, or "".
func firstName(q string) string {
	k, _, _ := strings.Cut(q, "&")
	k, _, _ = strings.Cut(k, "=")
	name, err := url.QueryUnescape(k)
	if err != nil {
		return ""
	}
	return name
}

var fuzzKinds = []twilio.Kind{twilio.KindStatus, twilio.KindDial, twilio.KindRecording, twilio.KindEvents, "unknown-kind"}

// fuzzFormKinds are the kinds of the form-encoded callbacks.
var fuzzFormKinds = []twilio.Kind{twilio.KindStatus, twilio.KindDial, twilio.KindRecording, twilio.KindAMD, twilio.KindConference}

// FuzzDeriveForm asserts the invariants of Derive for any form callback:
// never a panic, at least one event, valid deterministic IDs, a call stream
// with a valid CallSid or the kind's quarantine.
func FuzzDeriveForm(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind uint8, get bool, query string, body []byte, header string) {
		k := fuzzFormKinds[int(kind)%len(fuzzFormKinds)]
		if kind >= 200 {
			k = fuzzKinds[4]
		}
		method := http.MethodPost
		if get {
			method = http.MethodGet
		}
		req := &twilio.Request{
			Method: method, URL: corpusPublicURL + "/twilio/voice/" + string(k) + "?" + query, RawQuery: query,
			Body: body, ReceivedAt: receivedAt, Header: http.Header{"X-Twilio-Signature": {header}, header: {"v"}, "Cookie": {"c"}},
		}
		ds := twilio.Derive(k, req)
		checkDerived(t, k, req, ds)
		for _, d := range ds {
			for _, h := range d.Event.GetRequest().GetHeaders() {
				if strings.EqualFold(h.GetName(), "Cookie") {
					t.Fatal("cookie stored")
				}
			}
		}
	})
}

// FuzzDeriveEvents asserts the same invariants for any Event Streams body.
func FuzzDeriveEvents(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		req := &twilio.Request{Method: http.MethodPost, URL: corpusPublicURL + "/twilio/events", Body: body, ReceivedAt: receivedAt}
		ds := twilio.Derive(twilio.KindEvents, req)
		checkDerived(t, twilio.KindEvents, req, ds)
		for i, d := range ds {
			if src := d.Event.GetSource().String(); src != "SOURCE_EVENT_STREAMS" && src != "SOURCE_VOICE_INSIGHTS" {
				t.Fatalf("event %d: source %v", i, d.Event.GetSource())
			}
			if d.Event.GetCallStatusReported() != nil && d.Event.GetCloudEvent().GetId() == "" {
				t.Fatalf("event %d: a status report without CloudEvent id", i)
			}
		}
	})
}

// FuzzParseTimestamp asserts that ParseTimestamp accepts whatever
// net/mail.ParseDate accepts, with the same instant, and that its own
// layout round-trips.
func FuzzParseTimestamp(f *testing.F) {
	const layout = "Mon, 2 Jan 2006 15:04:05 -0700"
	f.Fuzz(func(t *testing.T, s string) {
		got, err := twilio.ParseTimestamp(s)
		if err != nil && !errors.Is(err, twilio.ErrInvalidTimestamp) {
			t.Fatalf("ParseTimestamp(%q) error %v is not ErrInvalidTimestamp", s, err)
		}
		if m, merr := mail.ParseDate(s); merr == nil && (err != nil || !got.Equal(m)) {
			t.Fatalf("ParseTimestamp(%q) = %v, %v; net/mail says %v", s, got, err, m)
		}
		if l, lerr := time.Parse(layout, s); lerr == nil && (err != nil || !got.Equal(l)) {
			t.Fatalf("ParseTimestamp(%q) = %v, %v; the layout says %v", s, got, err, l)
		}
		if err != nil {
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseTimestamp(%q) in %v, want UTC", s, got.Location())
		}
		if y := got.Year(); y >= 0 && y <= 9999 {
			back, err := twilio.ParseTimestamp(got.Format(layout))
			if err != nil || !back.Equal(got) {
				t.Fatalf("ParseTimestamp(%q) = %v, which does not round-trip: %v, %v", s, got, back, err)
			}
		}
	})
}
