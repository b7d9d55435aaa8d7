package twilio

import (
	"errors"
	"fmt"
	"net/mail"
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
// zone names, comments).
func ParseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(rfc2822, s); err == nil {
		return t.UTC(), nil
	}
	t, err := mail.ParseDate(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("twilio: timestamp %q: %w", truncate(s), ErrInvalidTimestamp)
	}
	return t.UTC(), nil
}
