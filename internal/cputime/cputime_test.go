//go:build unix

package cputime_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/callledger/callledger/internal/cputime"
)

// TestProcessCountsWork: work done on the CPU shows in Process, which never
// goes back.
func TestProcessCountsWork(t *testing.T) {
	t0, ok := cputime.Process()
	if !ok {
		t.Fatal("Process: not measured on a unix system")
	}
	sum := sha256.Sum256(nil)
	deadline := time.Now().Add(time.Minute) // only a hang trips this
	for time.Now().Before(deadline) {
		for range 10000 {
			sum = sha256.Sum256(sum[:])
		}
		t1, ok := cputime.Process()
		if !ok {
			t.Fatal("Process: not measured the second time")
		}
		if t1 < t0 {
			t.Fatalf("Process went back from %v to %v", t0, t1)
		}
		if t1 > t0 {
			return
		}
	}
	t.Fatalf("a minute of hashing left Process at %v", t0)
}
