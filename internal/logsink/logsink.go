// Package logsink gives tests a place to send a server's log that its
// goroutines may write to while the test reads it: a bytes.Buffer is not
// safe for that, and seven test files had each grown their own copy.
package logsink

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer for slog handlers, safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Take returns everything written so far and empties the buffer, so that a
// test can look at what one step logged.
func (b *Buffer) Take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.b.String()
	b.b.Reset()
	return s
}
