package twilio

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// ErrInvalidTimestamp reports a Timestamp that is not an RFC 2822 date.
var ErrInvalidTimestamp = errors.New("invalid RFC 2822 timestamp")

// rfc2822 is Twilio's Timestamp layout with a one- or two-digit day.
// time.RFC1123Z would reject "Sun, 1 Mar 2026 04:07:50 +0000".
const rfc2822 = "Mon, 2 Jan 2006 15:04:05 -0700"

// ParseTimestamp parses Twilio's Timestamp parameter (RFC 2822, e.g.
// "Fri, 17 Mar 2023 11:28:31 +0000" or "Sun, 1 Mar 2026 04:07:50 +0000")
// and returns it in UTC. Twilio's own layout is tried first, being the
// common case; net/mail's parser takes the rest of RFC 2822 (no weekday,
// zone names, comments). Last come the shapes simulators and
// Twilio-compatible providers send (lenient).
func ParseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(rfc2822, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := mail.ParseDate(s); err == nil {
		return t.UTC(), nil
	}
	if t, ok := lenient(s); ok {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("twilio: timestamp %q: %w", truncate(s), ErrInvalidTimestamp)
}

// utcNames are the zone names, beyond RFC 2822's, that mean UTC.
var utcNames = []string{" Etc/UTC", " Etc/GMT", " UTC", " Z"}

// lenientLayouts take what lenient leaves of a timestamp: no weekday, a
// numeric zone.
var lenientLayouts = []string{
	"2 January 2006 15:04:05 -0700", // full month name
	"2006-01-02 15:04:05 -0700",     // "2024-06-17 16:49:31 UTC"
}

// lenient parses the timestamps that are not RFC 2822 but say plainly
// what they mean: a zone written as a name of UTC ("Etc/UTC", "UTC"), a
// zero offset cut to three digits ("+000"), a long weekday or month name
// ("Thurs, 20 July 1989"), a date written as in ISO 8601 with a space.
// Anything else stays invalid (and the raw request keeps it).
func lenient(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, z := range utcNames {
		if rest, ok := strings.CutSuffix(s, z); ok {
			s = rest + " +0000"
			break
		}
	}
	for _, z := range []string{" +000", " -000"} {
		if rest, ok := strings.CutSuffix(s, z); ok {
			s = rest + " +0000"
		}
	}
	if day, rest, ok := strings.Cut(s, ", "); ok && len(day) >= 3 && len(day) <= 9 && letters(day) {
		s = rest
	}
	if t, err := mail.ParseDate(s); err == nil {
		return t, true
	}
	for _, layout := range lenientLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func letters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
