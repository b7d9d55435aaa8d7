package logsink

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestBufferConcurrentWritesAndTake(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				fmt.Fprintf(&b, "w%d-%d\n", i, j)
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 800 {
		t.Fatalf("String holds %d lines, want 800", got)
	}
	if got := strings.Count(b.Take(), "\n"); got != 800 {
		t.Fatalf("Take returned %d lines, want 800", got)
	}
	if s := b.String(); s != "" {
		t.Fatalf("after Take the buffer holds %q, want nothing", s)
	}
}
