// Package pebblelog routes Pebble's messages to slog, shaped for a process
// that must stay up and stay quiet while its disk fails:
//
//   - Infof is Pebble's chatter (flushes, compactions, WAL recycling): Debug,
//     so a healthy store is quiet.
//   - Errorf is logged at Error, but a message repeated with the same format
//     at most once per interval, with how many were held back: Pebble retries
//     a failed flush at once and forever, and a full disk must not fill up
//     further with a log line per retry.
//   - Fatalf is Pebble saying it cannot go on. Pebble requires that it not
//     return (returning from "fatal commit error" would make Batch.Commit
//     report success for a batch that is not durable), so it logs and panics
//     with a *Fatal. A caller that calls Pebble on its own goroutine can turn
//     that panic into an error with Catch; on one of Pebble's background
//     goroutines it ends the process, which is what Pebble designs for (a
//     failed MANIFEST write cannot be unwound; reopening recovers).
package pebblelog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is how often a repeated message is let through when New
// is given no interval.
const DefaultInterval = 10 * time.Second

// Logger implements pebble.Logger. Give each database its own, with the
// attributes that name it.
type Logger struct {
	log   *slog.Logger
	limit *Limiter
}

// New returns a Logger writing to log that lets a repeated error through at
// most once per every (DefaultInterval when every is 0).
func New(log *slog.Logger, every time.Duration) *Logger {
	if every <= 0 {
		every = DefaultInterval
	}
	return &Logger{log: log, limit: NewLimiter(every)}
}

// Infof logs Pebble's informational messages at Debug.
func (l *Logger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

// Errorf logs Pebble's error messages at Error, each format at most once
// per interval.
func (l *Logger) Errorf(format string, args ...any) {
	l.limit.Log(l.log, slog.LevelError, format, fmt.Sprintf(format, args...))
}

// Fatalf logs the message and panics with a *Fatal; see the package
// documentation.
func (l *Logger) Fatalf(format string, args ...any) {
	f := &Fatal{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			f.err = err
			break
		}
	}
	l.log.Error("pebble fatal error", "msg", f.msg)
	panic(f)
}

// Fatal is the panic value of Logger.Fatalf: Pebble's message, and the
// error it formatted, if any, so that errors.Is still finds a cause such
// as syscall.ENOSPC.
type Fatal struct {
	msg string
	err error
}

func (f *Fatal) Error() string { return f.msg }

// Unwrap returns the error Pebble formatted into the message.
func (f *Fatal) Unwrap() error { return f.err }

// Catch calls fn and returns its error or, when a Pebble call inside fn
// panicked through Logger.Fatalf on this goroutine, the *Fatal. Other
// panics go on. Whatever Pebble object raised the Fatal is unusable
// afterwards: close it, or abandon it if closing would block.
func Catch(fn func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if f, ok := r.(*Fatal); ok {
			err = f
			return
		}
		panic(r)
	}()
	return fn()
}

// IsFatal reports whether err is or wraps a *Fatal.
func IsFatal(err error) bool {
	var f *Fatal
	return errors.As(err, &f)
}

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
