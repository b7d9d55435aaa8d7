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
	"strconv"
	"strings"
	"sync"
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
// configured with. It accepts exactly what twilio-go's RequestValidator
// ValidateBody accepts with either token, but computes one HMAC per token
// on the common path and allocates nothing. It is safe for concurrent use.
type Verifier struct {
	base string
	keys []*signingKey // primary, then secondary
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
// secondary one.
func NewVerifier(publicURL string, tokens ...string) (*Verifier, error) {
	base, err := normalizePublicURL(publicURL)
	if err != nil {
		return nil, err
	}
	if len(tokens) == 0 || len(tokens) > 2 {
		return nil, fmt.Errorf("twilio: %d auth tokens given, want 1 or 2: %w", len(tokens), ErrInvalidAuthToken)
	}
	v := &Verifier{base: base, stdLimit: stdParamLimit()}
	for i, tok := range tokens {
		if tok == "" {
			return nil, fmt.Errorf("twilio: auth token %d is empty: %w", i+1, ErrInvalidAuthToken)
		}
		v.keys = append(v.keys, newSigningKey(tok))
	}
	v.scratch.New = func() any { return new(scratch) }
	return v, nil
}

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

// Verify checks signature (the X-Twilio-Signature header) for a request with
// the raw request URI requestURI and the raw body. It returns nil when
// twilio-go's RequestValidator.ValidateBody(v.SignedURL(requestURI), body,
// signature) accepts it with one of the tokens; otherwise an error wrapping
// ErrSignatureMissing or ErrSignatureInvalid.
//
// Precondition: url.Parse accepts v.SignedURL(requestURI). It always does for
// a request URI that net/http's server accepted; ValidateBody rejects the
// others, which Verify does not parse on its fast path.
func (v *Verifier) Verify(requestURI string, body []byte, signature string) error {
	if signature == "" {
		return fmt.Errorf("twilio: %w", ErrSignatureMissing)
	}
	var want [sha1.Size]byte
	if !decodeSignature(&want, signature) {
		return invalid("not the base64 of an HMAC-SHA1")
	}
	requestURI = stripFragment(requestURI)

	s := v.scratch.Get().(*scratch)
	defer v.release(s)
	s.msg = append(append(s.msg[:0], v.base...), requestURI...)
	urlLen := len(s.msg)
	_, query, _ := strings.Cut(requestURI, "?")

	// ValidateBody: a non-empty bodySHA256 query parameter means the URL
	// alone is signed and the body is bound by its hash; otherwise the body
	// is a form whose first values are signed after the URL.
	var bodyHash []byte
	bodyHash, s.buf, _ = queryFirst(s.buf[:0], query, bodySHA256Param, v.paramsWithinLimit)
	if len(bodyHash) > 0 {
		var sum [sha256.Size]byte
		var hexSum [2 * sha256.Size]byte
		sum = sha256.Sum256(body)
		hex.Encode(hexSum[:], sum[:])
		if subtle.ConstantTimeCompare(hexSum[:], bodyHash) != 1 {
			return invalid("body does not match " + bodySHA256Param)
		}
	} else {
		if !v.paramsWithinLimit(bytes.Count(body, []byte{'&'}) + 1) {
			return fmt.Errorf("twilio: form body: %w: %w", errTooManyParams.err(), ErrSignatureInvalid)
		}
		var bad formProblem
		s.buf, s.pairs, bad = parseForm(s.buf[:0], s.pairs[:0], body)
		if !bad.ok() {
			return fmt.Errorf("twilio: form body: %w: %w", bad.err(), ErrSignatureInvalid)
		}
		s.order = sortByKey(s.buf, s.pairs, s.order)
		s.msg = appendSigned(s.msg, s.buf, s.pairs, s.order)
	}
	if v.matches(&want, s.msg, urlLen) {
		return nil
	}
	return invalid("no auth token signed this URL and body")
}

// matches tries every token on the URL as received, then (cold path: only
// a request that fails or comes through a port-changing proxy gets here)
// on the other URL twilio-go tries.
func (v *Verifier) matches(want *[sha1.Size]byte, msg []byte, urlLen int) bool {
	for _, k := range v.keys {
		if k.matches(want, msg, nil) {
			return true
		}
	}
	alt, ok := portVariant(string(msg[:urlLen]))
	if !ok {
		return false
	}
	for _, k := range v.keys {
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

func invalid(why string) error {
	return fmt.Errorf("twilio: %s: %w", why, ErrSignatureInvalid)
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
// byte order, the name and its first value. order sorts pairs by name.
func appendSigned(msg, buf []byte, pairs []pair, order []uint64) []byte {
	for i, o := range order {
		p := pairs[o]
		if i > 0 && sameKey(buf, p, pairs[order[i-1]]) {
			continue // a later value of the same name: twilio-go signs the first only
		}
		msg = append(msg, buf[p.key.off:p.key.end]...)
		msg = append(msg, buf[p.val.off:p.val.end]...)
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
// HMAC-SHA1 of the URL followed, for a form body, by its names and first
// values in byte order of the names, or of the URL alone when its query has
// a non-empty bodySHA256 parameter. Tests and the traffic simulator use it;
// a body url.ParseQuery rejects gets a signature no Verifier accepts.
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
