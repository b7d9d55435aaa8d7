package twilio_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// The reference implementation the differential tests hold Verify to,
// written plainly with net/url and sort from Twilio's description of its
// signature and from twilio-python's RequestValidator (compute_signature,
// validate) and twilio-node's getExpectedTwilioSignature, both of which sign
// each name's distinct values, sorted. It shares no code with the package.

// refSignedParams is what Twilio signs after the URL for form: each name in
// sorted order, followed by one of its values, for each distinct value in
// sorted order. With firstOnly, it is what twilio-go signs instead: each
// name followed by its first value.
func refSignedParams(form url.Values, firstOnly bool) string {
	names := make([]string, 0, len(form))
	for k := range form {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		if firstOnly {
			b.WriteString(k + form[k][0])
			continue
		}
		values := slices.Clone(form[k])
		sort.Strings(values)
		for _, v := range slices.Compact(values) {
			b.WriteString(k + v)
		}
	}
	return b.String()
}

// refMessage is the message signed for a request to rawURL with body: the
// URL (fragment removed), followed by refParams.
func refMessage(rawURL string, body []byte, firstOnly bool) string {
	rawURL, _, _ = strings.Cut(rawURL, "#")
	return rawURL + refParams(rawURL, body, firstOnly)
}

// refParams is what is signed after the URL of a request to rawURL with
// body: the body's parameters, unless the URL has a non-empty bodySHA256
// query parameter (then nothing).
func refParams(rawURL string, body []byte, firstOnly bool) string {
	rawURL, _, _ = strings.Cut(rawURL, "#")
	u, err := url.Parse(rawURL)
	if err == nil && u.Query().Get("bodySHA256") != "" {
		return ""
	}
	form, _ := url.ParseQuery(string(body))
	return refSignedParams(form, firstOnly)
}

func refHMAC(token, msg string) string {
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// refSign is the X-Twilio-Signature Twilio sends with token.
func refSign(token, rawURL string, body []byte) string {
	return refHMAC(token, refMessage(rawURL, body, false))
}

// refSignFirstValue is the signature twilio-go expects with token: first
// values only.
func refSignFirstValue(token, rawURL string, body []byte) string {
	return refHMAC(token, refMessage(rawURL, body, true))
}

// refRing is a Keyring, plainly: the default tokens, and the tokens of each
// listed account (nil: the default ones).
type refRing struct {
	def      []string
	accounts map[string][]string
}

// tokens returns the tokens a request naming account ("" for none) is
// checked against, and whether the ring lists the account (or lists none,
// or account is "").
func (r refRing) tokens(account string) (tokens []string, listed bool) {
	if account == "" || len(r.accounts) == 0 {
		return r.def, true
	}
	toks, ok := r.accounts[account]
	if !ok || toks == nil {
		return r.def, ok
	}
	return toks, true
}

// refAccount is the AccountSid a request to signedURL with body names, from
// the form body (unless the URL has a non-empty bodySHA256) and the query;
// ok is false when they name different ones.
func refAccount(signedURL string, body []byte) (account string, ok bool) {
	u, err := url.Parse(signedURL)
	if err != nil {
		return "", false
	}
	q := u.Query()
	named := q["AccountSid"]
	if q.Get("bodySHA256") == "" {
		form, _ := url.ParseQuery(string(body))
		named = append(named, form["AccountSid"]...)
	}
	for _, a := range named {
		if a != named[0] {
			return "", false
		}
	}
	if len(named) == 0 {
		return "", true
	}
	return named[0], true
}

// refVerify is the verdict Verify must give on a request to signedURL (the
// public URL and the request URI, fragment removed) with body and sig:
// twilio-go's ValidateBody, every value signed, with the tokens of the
// account the request names.
func refVerify(ring refRing, signedURL string, body []byte, sig string) bool {
	u, err := url.Parse(signedURL)
	if err != nil {
		return false
	}
	account, ok := refAccount(signedURL, body)
	if !ok {
		return false
	}
	tokens, _ := ring.tokens(account)
	if hash := u.Query().Get("bodySHA256"); hash != "" {
		sum := sha256.Sum256(body)
		if hex.EncodeToString(sum[:]) != hash {
			return false
		}
	} else if _, err := url.ParseQuery(string(body)); err != nil {
		return false
	}
	params := refParams(signedURL, body, false) // what follows each URL tried
	for _, tok := range tokens {
		// twilio-go's Validate: the URL with its port added and removed.
		for _, variant := range []string{addPort(signedURL), removePort(signedURL)} {
			if hmac.Equal([]byte(refHMAC(tok, variant+params)), []byte(sig)) {
				return true
			}
		}
	}
	return false
}

// rulesAgree reports whether Twilio's rule and twilio-go's sign the same
// message for body: it is not a form, or no name in it has two different
// values.
func rulesAgree(signedURL string, body []byte) bool {
	return refMessage(signedURL, body, false) == refMessage(signedURL, body, true)
}
