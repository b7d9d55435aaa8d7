package twilio

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// ErrMalformedForm reports a form body or query that url.ParseQuery rejects.
// twilio-go refuses to validate such a body, and Derive quarantines it.
var ErrMalformedForm = errors.New("malformed form")

// defaultMaxParams is net/url's default limit on the number of parameters
// ParseQuery accepts (Go 1.26, GODEBUG urlmaxqueryparams unset): beyond it
// ParseQuery fails before looking at a single parameter.
const defaultMaxParams = 10000

// ampersands probes net/url's parameter limit without allocating: n-1
// ampersands are n empty settings, which ParseQuery skips, so the only error
// it can return for them is the limit's.
var ampersands = strings.Repeat("&", defaultMaxParams+1)

// urlParamsWithinLimit asks net/url whether it would parse n parameters. It
// honours a GODEBUG urlmaxqueryparams setting, which no exported API reveals.
func urlParamsWithinLimit(n int) bool {
	probe := ampersands
	if n-1 <= len(probe) {
		probe = probe[:n-1]
	} else {
		probe = strings.Repeat("&", n-1)
	}
	_, err := url.ParseQuery(probe)
	return err == nil
}

// stdParamLimit reports whether net/url's limit currently is the default:
// its test is monotonic (n <= limit, or n < custom), so accepting 10000 and
// refusing 10001 pins it to exactly the default.
func stdParamLimit() bool {
	return !urlParamsWithinLimit(defaultMaxParams+1) && urlParamsWithinLimit(defaultMaxParams)
}

// span is a half-open range of a decoded buffer.
type span struct{ off, end int }

// pair is one decoded name=value setting, as ranges of a decoded buffer.
// prefix holds the first 8 bytes of the name, big-endian and zero-padded,
// which orders nearly every pair of Twilio parameter names without
// touching the buffer.
type pair struct {
	key, val span
	prefix   uint64
}

// formProblem says why url.ParseQuery would fail; its zero value means it
// would not. Building an error value is left to the (cold) callers.
type formProblem struct {
	what    string // "" when the form is well-formed
	setting string // the offending setting, truncated
}

func (p formProblem) ok() bool { return p.what == "" }

func (p formProblem) err() error {
	if p.ok() {
		return nil
	}
	if p.setting == "" {
		return fmt.Errorf("%w: %s", ErrMalformedForm, p.what)
	}
	return fmt.Errorf("%w: %s in %q", ErrMalformedForm, p.what, p.setting)
}

func problem[S ~string | ~[]byte](what string, setting S) formProblem {
	const maxShown = 64
	if len(setting) > maxShown {
		setting = setting[:maxShown]
	}
	return formProblem{what: what, setting: string(setting)}
}

var errTooManyParams = formProblem{what: "more parameters than net/url accepts"}

// Byte classes of the form scanner: what ends a setting, what ParseQuery
// refuses in one, what separates name and value, what needs unescaping.
const (
	classAmp = 1 + iota
	classSemicolon
	classEquals
	classEscape
)

var formClass = [256]uint8{'&': classAmp, ';': classSemicolon, '=': classEquals, '%': classEscape, '+': classEscape}

// parseForm decodes the settings of q exactly as url.ParseQuery does,
// appending the unescaped names and values to buf and one pair per valid
// setting, in order, to pairs. Like ParseQuery, it keeps every valid setting
// when others are malformed and reports the first problem. It does not
// check the parameter limit: callers do, because it depends on GODEBUG.
func parseForm[S ~string | ~[]byte](buf []byte, pairs []pair, q S) ([]byte, []pair, formProblem) {
	var bad formProblem
	for start := 0; start < len(q); {
		// One pass over the setting: ParseQuery's strings.Cut(query, "&"),
		// strings.Contains(key, ";") and strings.Cut(key, "=").
		eq, semicolon, escaped := -1, false, false
		end := start
	scan:
		for ; end < len(q); end++ {
			switch formClass[q[end]] {
			case 0:
			case classAmp:
				break scan
			case classSemicolon:
				semicolon = true
			case classEquals:
				if eq < 0 {
					eq = end
				}
			case classEscape:
				escaped = true
			}
		}
		setting := q[start:end]
		keyEnd, valStart := end, end
		if eq >= 0 {
			keyEnd, valStart = eq, eq+1
		}
		key, val := q[start:keyEnd], q[valStart:end]
		start = end + 1
		switch {
		case semicolon:
			if bad.ok() {
				bad = problem("semicolon separator", setting)
			}
			continue
		case len(setting) == 0:
			continue
		}
		mark := len(buf)
		var p pair
		if !escaped {
			p.key = span{mark, mark + len(key)}
			buf = append(buf, key...)
			p.val = span{len(buf), len(buf) + len(val)}
			buf = append(buf, val...)
		} else {
			var keyOK, valOK bool
			buf, keyOK = appendUnescaped(buf, key)
			p.key = span{mark, len(buf)}
			buf, valOK = appendUnescaped(buf, val)
			p.val = span{p.key.end, len(buf)}
			if !keyOK || !valOK {
				buf = buf[:mark]
				if bad.ok() {
					bad = problem("invalid %-escape", setting)
				}
				continue
			}
		}
		p.prefix = prefix(buf[p.key.off:p.key.end])
		pairs = append(pairs, p)
	}
	return buf, pairs, bad
}

// prefix packs the first 8 bytes of name, big-endian, zero-padded: names
// compare as their prefixes do, unless the prefixes are equal.
func prefix(name []byte) uint64 {
	if len(name) >= 8 {
		return binary.BigEndian.Uint64(name)
	}
	var p uint64
	for i, c := range name {
		p |= uint64(c) << (56 - 8*i)
	}
	return p
}

// appendUnescaped appends s, query-unescaped as url.QueryUnescape does ('+'
// is a space, %XX a byte), to dst. It reports false, leaving garbage after
// the original length of dst, where QueryUnescape would fail: a '%' not
// followed by two hexadecimal digits.
func appendUnescaped[S ~string | ~[]byte](dst []byte, s S) ([]byte, bool) {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '%' && s[i] != '+' {
			i++
		}
		dst = append(dst, s[:i]...)
		if i == len(s) {
			break
		}
		if s[i] == '+' {
			dst = append(dst, ' ')
			s = s[i+1:]
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return dst, false
		}
		dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
		s = s[i+3:]
	}
	return dst, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// sortByKey returns in order the indexes of pairs sorted by name, request
// order among equal names, so that the first of each run of names is the
// value url.Values.Get returns. A callback's few dozen parameters sort as
// packed integers (7 bytes of name, 1 byte of index), inline comparisons;
// only names sharing 7 bytes (CalledCity, CalledCountry) are compared in
// full. A forger's thousands of parameters take pdqsort with a comparator.
func sortByKey(buf []byte, pairs []pair, order []uint64) []uint64 {
	order = order[:0]
	if len(pairs) > 1<<8 {
		for i := range pairs {
			order = append(order, uint64(i))
		}
		slices.SortFunc(order, func(a, b uint64) int {
			if c := compareKeys(buf, pairs[a], pairs[b]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		return order
	}
	const indexBits = 0xff
	for i, p := range pairs {
		order = append(order, p.prefix&^indexBits|uint64(i))
	}
	slices.Sort(order)
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && order[j]&^indexBits == order[i]&^indexBits {
			j++
		}
		// A run sharing 7 bytes of name, in request order: insertion sort
		// by full name keeps that order among equal names.
		for k := i + 1; k < j; k++ {
			o := order[k]
			l := k
			for ; l > i && compareKeys(buf, pairs[o&indexBits], pairs[order[l-1]&indexBits]) < 0; l-- {
				order[l] = order[l-1]
			}
			order[l] = o
		}
		i = j
	}
	for k := range order {
		order[k] &= indexBits
	}
	return order
}

func compareKeys(buf []byte, a, b pair) int {
	if a.prefix != b.prefix {
		return cmp.Compare(a.prefix, b.prefix)
	}
	return bytes.Compare(buf[a.key.off:a.key.end], buf[b.key.off:b.key.end])
}

// sameKey reports whether a and b have the same name.
func sameKey(buf []byte, a, b pair) bool {
	return a.prefix == b.prefix && bytes.Equal(buf[a.key.off:a.key.end], buf[b.key.off:b.key.end])
}

// queryFirst returns the first value of name among the settings of query,
// as url.URL.Query().Get(name) sees them: malformed settings are skipped,
// and a query over net/url's parameter limit has no settings at all. The
// value is decoded into buf, which is returned grown.
func queryFirst(buf []byte, query, name string, within func(int) bool) (val, grown []byte, found bool) {
	if !within(strings.Count(query, "&") + 1) {
		return nil, buf, false
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
		if buf, ok = appendUnescaped(buf, v); !ok {
			buf = buf[:mark]
			continue
		}
		if match {
			return buf[mark:], buf, true
		}
		buf = buf[:mark]
	}
	return nil, buf, false
}
