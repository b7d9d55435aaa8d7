package pebblevfs

import (
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestPacedFSBackoff: each failed write pushes the next new file further
// out, doubling from minPace up to maxPace, and a successful sync ends
// the pacing.
func TestPacedFSBackoff(t *testing.T) {
	fs := NewPaced(vfs.NewMem(), nil)
	for i := range 10 {
		before := time.Now()
		fs.observe(syscall.ENOSPC)
		fs.mu.Lock()
		pace := fs.until.Sub(before)
		fs.mu.Unlock()
		want := min(minPace<<i, maxPace)
		// The upper bound allows for the time between the two clocks.
		if pace < want || pace > want+time.Second {
			t.Fatalf("failure %d: next file in %v, want %v", i+1, pace, want)
		}
	}
	fs.observe(nil)
	if fs.failures != 0 || !fs.until.IsZero() {
		t.Errorf("a successful sync left failures %d, until %v", fs.failures, fs.until)
	}
}
