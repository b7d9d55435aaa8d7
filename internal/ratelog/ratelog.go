// Package ratelog keeps a repeated log line from flooding the log: a
// failing disk makes Pebble retry at once and forever, and a full disk
// answers every webhook 503; one line per key per interval, with how many
// were held back, says as much.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter lets a repeated message through at most once per interval per
// key, counting the ones it held back. It is safe for concurrent use.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*limited
}

type limited struct {
	last       time.Time
	suppressed int
}

// maxKeys bounds a Limiter's memory; keys are meant to be a few message
// formats, so reaching it means keys older than an interval can go.
const maxKeys = 1024

// NewLimiter returns a Limiter that lets each key through once per every.
func NewLimiter(every time.Duration) *Limiter {
	return &Limiter{every: every, now: time.Now, keys: make(map[string]*limited)}
}

// Allow reports whether a message under key may be logged now and, if so,
// how many were held back since the last one.
func (l *Limiter) Allow(key string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e := l.keys[key]
	if e == nil {
		if len(l.keys) >= maxKeys {
			for k, old := range l.keys {
				if now.Sub(old.last) >= l.every {
					delete(l.keys, k)
				}
			}
		}
		l.keys[key] = &limited{last: now}
		return true, 0
	}
	if now.Sub(e.last) < l.every {
		e.suppressed++
		return false, 0
	}
	suppressed = e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed
}

// Log logs msg with args at level unless a message under key was logged
// less than an interval ago. A message that follows held-back ones says
// how many with a "suppressed" attribute.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, key, msg string, args ...any) {
	ok, n := l.Allow(key)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(context.Background(), level, msg, args...)
}
