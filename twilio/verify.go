package twilio

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Errors of Verify. The HTTP adapter answers 403 to both; they are apart so
// that logs and metrics tell a misconfigured sender from a forged request.
var (
	ErrSignatureMissing = errors.New("X-Twilio-Signature missing")
	ErrSignatureInvalid = errors.New("X-Twilio-Signature invalid")
)

// Errors of NewVerifier: a bad public URL or token would reject every
// genuine request, so they stop the server at start-up instead.
var (
	ErrInvalidPublicURL = errors.New("invalid public URL")
	ErrInvalidAuthToken = errors.New("invalid auth token")
)

// bodySHA256Param is the query parameter through which Twilio signs JSON
// bodies: the URL alone is signed, and the body is bound by its hash.
const bodySHA256Param = "bodySHA256"

// maxPooledBytes bounds the buffers kept for reuse, so one huge request does
// not pin its memory for the life of the process.
const maxPooledBytes = 64 << 10

// Verifier checks X-Twilio-Signature against the public URL Twilio was
// configured with, with the tokens of the account the request names (see
// Keyring). It signs as Twilio does: the URL, then for a form body every
// parameter name in byte order, each followed by its every distinct value
// in byte order, or for a JSON body the URL alone, the body being bound by
// the URL's bodySHA256 parameter. On the common path it computes one HMAC
// per token and allocates nothing. It is safe for concurrent use, and its
// Keyring can be replaced while requests are being checked.
type Verifier struct {
	base    string
	keyring atomic.Pointer[Keyring]
	// stdLimit says net/url's parameter limit was the default when the
	// Verifier was made; otherwise every check asks net/url.
	stdLimit bool
	scratch  sync.Pool // *scratch
}

// signingKey pools HMAC states of one token: creating one costs more than
// hashing a whole callback.
type signingKey struct {
	macs sync.Pool // *macState
}

// macState is a keyed HMAC with room for its sum, so Sum does not allocate
// (a stack array would escape through the hash.Hash interface).
type macState struct {
	h   hash.Hash
	sum [sha1.Size]byte
}

// scratch holds the per-request buffers of Verify.
type scratch struct {
	buf   []byte // decoded parameter names and values
	pairs []pair
	order []uint64 // indexes of pairs, sorted by name
	msg   []byte   // the signed message: URL, then sorted names and values
}

// NewVerifier returns a Verifier for requests Twilio sent to publicURL (for
// example "https://ledger.test" or "https://h:8443/prefix": scheme, host,
// optional port and path prefix; no user info, query or fragment; trailing
// slashes are removed, since the request URI brings its own) and signed
// with one of tokens: the primary auth token and, during a rotation, the
// secondary one. Its Keyring lists no account: every request is checked
// against tokens.
func NewVerifier(publicURL string, tokens ...string) (*Verifier, error) {
	k, err := NewKeyring(tokens)
	if err != nil {
		return nil, err
	}
	return NewVerifierWithKeyring(publicURL, k)
}

// NewVerifierWithKeyring returns a Verifier for requests Twilio sent to
// publicURL (as for NewVerifier), checked against the tokens of k.
func NewVerifierWithKeyring(publicURL string, k *Keyring) (*Verifier, error) {
	if k == nil {
		return nil, fmt.Errorf("twilio: no keyring: %w", ErrInvalidAuthToken)
	}
	base, err := normalizePublicURL(publicURL)
	if err != nil {
		return nil, err
	}
	v := &Verifier{base: base, stdLimit: stdParamLimit()}
	v.keyring.Store(k)
	v.scratch.New = func() any { return new(scratch) }
	return v, nil
}

// SetKeyring replaces the tokens requests are checked against, atomically:
// a check in progress finishes with the Keyring it started with, every
// later one uses k. To rotate a token without refusing a valid request,
// go through a Keyring that holds both the old and the new token. k must
// not be nil.
func (v *Verifier) SetKeyring(k *Keyring) {
	if k == nil {
		panic("twilio: SetKeyring(nil)")
	}
	v.keyring.Store(k)
}

// Keyring returns the tokens requests are checked against now.
func (v *Verifier) Keyring() *Keyring { return v.keyring.Load() }

func normalizePublicURL(raw string) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("twilio: public URL %q: %s: %w", raw, why, ErrInvalidPublicURL)
	}
	if !strings.HasPrefix(raw, "https://") && !strings.HasPrefix(raw, "http://") {
		return "", bad(`want an absolute "https://" or "http://" URL`)
	}
	if strings.ContainsAny(raw, "?#") {
		return "", bad("query and fragment are not allowed")
	}
	base := strings.TrimRight(raw, "/")
	u, err := url.Parse(base)
	if err != nil {
		return "", bad(err.Error())
	}
	switch {
	case u.User != nil:
		return "", bad("user info is not allowed (Twilio does not sign it)")
	case u.Host == "":
		return "", bad("no host")
	}
	return base, nil
}

func newSigningKey(token string) *signingKey {
	key := []byte(token)
	k := &signingKey{}
	k.macs.New = func() any { return &macState{h: hmac.New(sha1.New, key)} }
	return k
}

// matches reports, in constant time, whether want is the HMAC-SHA1 of
// url followed by rest.
func (k *signingKey) matches(want *[sha1.Size]byte, url, rest []byte) bool {
	m := k.macs.Get().(*macState)
	m.h.Reset()
	m.h.Write(url)
	m.h.Write(rest)
	ok := hmac.Equal(m.h.Sum(m.sum[:0]), want[:])
	k.macs.Put(m)
	return ok
}

// SignedURL is the URL Twilio signed for a request with the raw request URI
// requestURI (as net/http's Request.RequestURI): the public URL followed by
// requestURI, without any "#…" connection-override fragment.
func (v *Verifier) SignedURL(requestURI string) string {
	return v.base + stripFragment(requestURI)
}

// VerifyError is every error of Verify and VerifyAccount. It wraps
// ErrSignatureMissing, ErrSignatureInvalid (and ErrMalformedForm for a body
// that does not parse) or ErrUnknownAccount. Its text quotes no signature,
// token or parameter value beyond a well-formed AccountSid.
type VerifyError struct {
	// Account is the listed account whose tokens the request was checked
	// against; "" for the default tokens, or when none were tried (a
	// missing or malformed signature, an unknown account). It comes from
	// the configuration, so a metric may carry it as a label.
	Account string
	// Claimed is, with ErrUnknownAccount, the AccountSid the request named
	// when it has an AccountSid's shape, "" otherwise. Nothing vouches for
	// it: log it, but never make it a metric label.
	Claimed string
	err     error
}

func (e *VerifyError) Error() string { return e.err.Error() }
func (e *VerifyError) Unwrap() error { return e.err }

// Verify checks signature (the X-Twilio-Signature header) for a request with
// the raw request URI requestURI and the raw body, as VerifyAccount does.
func (v *Verifier) Verify(requestURI string, body []byte, signature string) error {
	_, err := v.VerifyAccount(requestURI, body, signature)
	return err
}

// VerifyAccount checks signature (the X-Twilio-Signature header) for a
// request with the raw request URI requestURI and the raw body, and returns
// the listed account whose token signed it ("" for the default tokens).
//
// The tokens are those of the account the request's AccountSid parameter
// names (see Keyring): in the body of a form, else in the URL's query. A JSON
// body (a non-empty bodySHA256 query parameter) is not read before it is
// verified, so only the query can name its account: an Event Streams sink
// is signed with the token of the account that owns the sink, while the
// CloudEvents it delivers may be of that account's subaccounts (a
// subscription can receive its subaccounts' events), so their account_sid
// does not say who signed. A sink of an account other than the default one
// names it in its destination URL: "…/twilio/events?AccountSid=AC…". Values
// of AccountSid that differ, in the body or the query, are refused.
//
// It accepts what twilio-go's RequestValidator.ValidateBody accepts on the
// signed URL with one of those tokens, except that a repeated parameter is
// signed with its every distinct value, sorted, as Twilio signs it (and
// twilio-python and twilio-node check it), where twilio-go signs its first
// value only: a request that verifies under that first-value reading alone
// is refused. The error is a *VerifyError.
//
// Precondition: url.Parse accepts v.SignedURL(requestURI). It always does for
// a request URI that net/http's server accepted; ValidateBody rejects the
// others, which Verify does not parse on its fast path.
func (v *Verifier) VerifyAccount(requestURI string, body []byte, signature string) (string, error) {
	if signature == "" {
		return "", &VerifyError{err: fmt.Errorf("twilio: %w", ErrSignatureMissing)}
	}
	var want [sha1.Size]byte
	if !decodeSignature(&want, signature) {
		return "", invalid(nil, "not the base64 of an HMAC-SHA1")
	}
	requestURI = stripFragment(requestURI)
	ring := v.keyring.Load()

	s := v.scratch.Get().(*scratch)
	defer v.release(s)
	s.msg = append(append(s.msg[:0], v.base...), requestURI...)
	urlLen := len(s.msg)
	_, query, _ := strings.Cut(requestURI, "?")

	// The AccountSid of the query, all of its values the same.
	var qAcct span
	var qFound, qConflict bool
	qAcct, qFound, qConflict, s.buf = queryValues(s.buf[:0], query, accountSidParam, v.paramsWithinLimit)
	if qConflict {
		return "", invalid(nil, "AccountSid repeated with different values")
	}

	// ValidateBody: a non-empty bodySHA256 query parameter means the URL
	// alone is signed and the body is bound by its hash; otherwise the body
	// is a form whose parameters are signed after the URL.
	hash, found, _, grown := queryValues(s.buf, query, bodySHA256Param, v.paramsWithinLimit)
	s.buf = grown
	var keys *keySet
	var claimed span // the AccountSid that picked keys
	if found && hash.end > hash.off {
		keys, claimed = v.keysFor(ring, s.buf, qAcct, qFound), qAcct
		var sum [sha256.Size]byte
		var hexSum [2 * sha256.Size]byte
		sum = sha256.Sum256(body)
		hex.Encode(hexSum[:], sum[:])
		if subtle.ConstantTimeCompare(hexSum[:], s.buf[hash.off:hash.end]) != 1 {
			return "", refused(keys, s.buf[claimed.off:claimed.end], "body does not match "+bodySHA256Param)
		}
	} else {
		if !v.paramsWithinLimit(bytes.Count(body, []byte{'&'}) + 1) {
			return "", &VerifyError{err: fmt.Errorf("twilio: form body: %w: %w", errTooManyParams.err(), ErrSignatureInvalid)}
		}
		var bad formProblem
		s.buf, s.pairs, bad = parseForm(s.buf, s.pairs[:0], body)
		if !bad.ok() {
			// Not bad.err(): it quotes the setting, and the body is not
			// authenticated (the error is logged).
			return "", &VerifyError{err: fmt.Errorf("twilio: form body: %w: %s: %w", ErrMalformedForm, bad.what, ErrSignatureInvalid)}
		}
		s.order = sortByKey(s.buf, s.pairs, s.order)
		acct, found, ok := formAccount(s.buf, s.pairs, s.order)
		switch {
		case !ok:
			return "", invalid(nil, "AccountSid repeated with different values")
		case !found:
			acct, found = qAcct, qFound // none in the body: the query's, if any
		case qFound && !bytes.Equal(s.buf[acct.off:acct.end], s.buf[qAcct.off:qAcct.end]):
			return "", invalid(nil, "AccountSid of the body and of the query differ")
		}
		keys, claimed = v.keysFor(ring, s.buf, acct, found), acct
		s.msg = appendSigned(s.msg, s.buf, s.pairs, s.order)
	}
	if v.matches(keys, &want, s.msg, urlLen) {
		return keys.account, nil
	}
	return "", refused(keys, s.buf[claimed.off:claimed.end], "no auth token of the account signed this URL and body")
}

// accountSidParam names the parameter that picks the tokens.
const accountSidParam = "AccountSid"

var accountSidPrefix = prefix([]byte(accountSidParam))

// keysFor returns the tokens for a request whose AccountSid is buf[acct]
// (none when !found or empty).
func (v *Verifier) keysFor(ring *Keyring, buf []byte, acct span, found bool) *keySet {
	if !found {
		return ring.def
	}
	return ring.lookup(buf[acct.off:acct.end])
}

// formAccount returns the first value of the form's AccountSid parameter
// and whether it has one, and false when it has different values. order
// sorts pairs by name.
func formAccount(buf []byte, pairs []pair, order []uint64) (acct span, found, ok bool) {
	for _, o := range order {
		p := pairs[o]
		if p.prefix != accountSidPrefix || string(buf[p.key.off:p.key.end]) != accountSidParam {
			if found {
				break // past the run of AccountSid
			}
			continue
		}
		switch {
		case !found:
			acct, found = p.val, true
		case !bytes.Equal(buf[p.val.off:p.val.end], buf[acct.off:acct.end]):
			return span{}, false, false
		}
	}
	return acct, found, true
}

// matches tries every token of keys on the URL as received, then (cold
// path: only a request that fails or comes through a port-changing proxy
// gets here) on the other URL twilio-go tries.
func (v *Verifier) matches(keys *keySet, want *[sha1.Size]byte, msg []byte, urlLen int) bool {
	for _, k := range keys.keys {
		if k.matches(want, msg, nil) {
			return true
		}
	}
	alt, ok := portVariant(string(msg[:urlLen]))
	if !ok {
		return false
	}
	for _, k := range keys.keys {
		if k.matches(want, []byte(alt), msg[urlLen:]) {
			return true
		}
	}
	return false
}

func (v *Verifier) release(s *scratch) {
	if cap(s.buf) > maxPooledBytes || cap(s.msg) > maxPooledBytes || cap(s.pairs) > maxPooledBytes/32 || cap(s.order) > maxPooledBytes/8 {
		return
	}
	v.scratch.Put(s)
}

// paramsWithinLimit reports whether net/url's ParseQuery accepts n
// parameters.
func (v *Verifier) paramsWithinLimit(n int) bool {
	if v.stdLimit {
		return n <= defaultMaxParams
	}
	return urlParamsWithinLimit(n)
}

// invalid is ErrSignatureInvalid for why, after trying the tokens of keys
// (nil when none were tried).
func invalid(keys *keySet, why string) error {
	e := &VerifyError{err: fmt.Errorf("twilio: %s: %w", why, ErrSignatureInvalid)}
	if keys != nil {
		e.Account = keys.account
	}
	return e
}

// refused is the error for a request checked against keys that failed for
// why: ErrUnknownAccount when keys were picked for an account the Keyring
// does not list (claimed), ErrSignatureInvalid otherwise.
func refused(keys *keySet, claimed []byte, why string) error {
	if keys.unlisted {
		return unknownAccount(claimed)
	}
	return invalid(keys, why)
}

func unknownAccount(claimed []byte) error {
	const why = "and the default tokens did not sign the request"
	e := &VerifyError{err: fmt.Errorf("twilio: %w, %s", ErrUnknownAccount, why)}
	if accountSidShaped(claimed) {
		e.Claimed = string(claimed)
		e.err = fmt.Errorf("twilio: AccountSid %s: %w, %s", e.Claimed, ErrUnknownAccount, why)
	}
	return e
}

// strictBase64 rejects non-canonical encodings, so that a decoded signature
// equals the MAC only if its text equals the MAC's encoding, as twilio-go
// compares them.
var strictBase64 = base64.StdEncoding.Strict()

// decodeSignature decodes sig into dst when sig is the canonical padded
// standard base64 of sha1.Size bytes, the only form twilio-go's string
// comparison can accept.
func decodeSignature(dst *[sha1.Size]byte, sig string) bool {
	if len(sig) != base64.StdEncoding.EncodedLen(sha1.Size) || strings.ContainsAny(sig, "\r\n") {
		return false // the decoder skips CR and LF; the comparison does not
	}
	var buf [24]byte
	n, err := strictBase64.Decode(buf[:], []byte(sig))
	if err != nil || n != sha1.Size {
		return false
	}
	copy(dst[:], buf[:n])
	return true
}

// appendSigned appends what Twilio signs after the URL: for each name in
// byte order, the name followed by one of its values, for each distinct
// value in byte order. order sorts pairs by name; the values of a repeated
// name are sorted in place.
func appendSigned(msg, buf []byte, pairs []pair, order []uint64) []byte {
	for i := 0; i < len(order); {
		first := pairs[order[i]]
		j := i + 1
		for j < len(order) && sameKey(buf, first, pairs[order[j]]) {
			j++
		}
		if j-i > 1 {
			run := order[i:j]
			slices.SortFunc(run, func(a, b uint64) int {
				return bytes.Compare(buf[pairs[a].val.off:pairs[a].val.end], buf[pairs[b].val.off:pairs[b].val.end])
			})
		}
		for k := i; k < j; k++ {
			p := pairs[order[k]]
			val := buf[p.val.off:p.val.end]
			if k > i {
				prev := pairs[order[k-1]]
				if bytes.Equal(val, buf[prev.val.off:prev.val.end]) {
					continue // a value signed once however often it is sent
				}
			}
			msg = append(msg, buf[p.key.off:p.key.end]...)
			msg = append(msg, val...)
		}
		i = j
	}
	return msg
}

// portVariant returns the second URL twilio-go's Validate checks, built as
// its addPort and removePort build it: a URL with a port is also tried
// without it; one without, with :443 (https) or :80. The first URL it
// checks is always the given one. ok is false when url.Parse fails, where
// twilio-go falls back to the given URL.
func portVariant(u string) (string, bool) {
	parsed, err := url.Parse(u)
	if err != nil {
		return "", false
	}
	if parsed.Port() != "" {
		parsed.Host, _, _ = strings.Cut(parsed.Host, ":") // strings.Split(host, ":")[0]
	} else {
		port := 80
		if parsed.Scheme == "https" {
			port = 443
		}
		parsed.Host = parsed.Host + ":" + strconv.Itoa(port)
	}
	return parsed.String(), true
}

func stripFragment(uri string) string {
	if i := strings.IndexByte(uri, '#'); i >= 0 {
		return uri[:i]
	}
	return uri
}

// BodySHA256 is the value Twilio puts in the bodySHA256 query parameter of
// a JSON request it signs: the lowercase hex SHA-256 of the raw body.
func BodySHA256(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Sign returns the X-Twilio-Signature Twilio sends with token for a request
// to rawURL (a "#…" fragment is left out, as Twilio does) with body: the
// HMAC-SHA1 of the URL followed, for a form body, by its names in byte
// order, each followed by its every distinct value in byte order, or of the
// URL alone when its query has a non-empty bodySHA256 parameter. Tests and
// the traffic simulator use it; a body url.ParseQuery rejects gets a
// signature no Verifier accepts.
func Sign(token, rawURL string, body []byte) string {
	u := stripFragment(rawURL)
	_, query, _ := strings.Cut(u, "?")
	msg := []byte(u)
	if hash, _, _ := queryFirst(nil, query, bodySHA256Param, urlParamsWithinLimit); len(hash) == 0 {
		buf, pairs, _ := parseForm(nil, nil, body)
		msg = appendSigned(msg, buf, pairs, sortByKey(buf, pairs, nil))
	}
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write(msg)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// queryValues returns the first value of name among the settings of query,
// as url.URL.Query()[name][0] sees it (malformed settings are skipped, and a
// query over net/url's parameter limit has no settings at all), decoded into
// buf at val, and whether another of its values differs. buf is returned
// grown; nothing but the first value is left in it.
func queryValues(buf []byte, query, name string, within func(int) bool) (val span, found, differs bool, grown []byte) {
	if query == "" || !within(strings.Count(query, "&")+1) {
		return span{}, false, false, buf
	}
	for len(query) > 0 {
		var setting string
		setting, query, _ = strings.Cut(query, "&")
		if setting == "" || strings.IndexByte(setting, ';') >= 0 {
			continue
		}
		key, v, _ := strings.Cut(setting, "=")
		mark := len(buf)
		var ok bool
		if buf, ok = appendUnescaped(buf, key); !ok {
			buf = buf[:mark]
			continue
		}
		match := string(buf[mark:]) == name
		buf = buf[:mark]
		if !match {
			continue
		}
		if buf, ok = appendUnescaped(buf, v); !ok {
			buf = buf[:mark]
			continue
		}
		if !found {
			val, found = span{mark, len(buf)}, true
			continue
		}
		if !bytes.Equal(buf[mark:], buf[val.off:val.end]) {
			differs = true
		}
		buf = buf[:mark]
	}
	return val, found, differs, buf
}
