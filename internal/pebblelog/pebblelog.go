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
	"time"

	"github.com/callledger/callledger/internal/ratelog"
)

// DefaultInterval is how often a repeated message is let through when New
// is given no interval.
const DefaultInterval = 10 * time.Second

// Logger implements pebble.Logger. Give each database its own, with the
// attributes that name it.
type Logger struct {
	log   *slog.Logger
	limit *ratelog.Limiter
}

// New returns a Logger writing to log that lets a repeated error through at
// most once per every (DefaultInterval when every is 0).
func New(log *slog.Logger, every time.Duration) *Logger {
	if every <= 0 {
		every = DefaultInterval
	}
	return &Logger{log: log, limit: ratelog.NewLimiter(every)}
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
