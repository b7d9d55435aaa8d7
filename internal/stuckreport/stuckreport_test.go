package stuckreport_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/callledger/callledger/internal/stuckreport"
)

// waitHere blocks on a channel in the project's own code, as a stuck test
// would.
func waitHere(ch chan struct{}, started chan<- struct{}) {
	close(started)
	<-ch
}

// TestSummaryShowsWhereTheProjectWaits: a goroutine blocked in the
// project's code shows in the summary with its state and its frames,
// and frames outside the project do not.
func TestSummaryShowsWhereTheProjectWaits(t *testing.T) {
	ch, started := make(chan struct{}), make(chan struct{})
	defer close(ch)
	go waitHere(ch, started)
	<-started
	var s string
	for deadline := time.Now().Add(20 * time.Second); ; {
		buf := make([]byte, 1<<20)
		s = stuckreport.Summary(string(buf[:runtime.Stack(buf, true)]))
		if strings.Contains(s, "[chan receive") || time.Now().After(deadline) {
			break // the goroutine has reached its receive
		}
		time.Sleep(time.Millisecond)
	}
	wait := strings.Index(s, "internal/stuckreport_test.waitHere stuckreport/stuckreport_test.go:")
	self := strings.Index(s, "internal/stuckreport_test.TestSummaryShowsWhereTheProjectWaits")
	if wait < 0 || self < 0 {
		t.Fatalf("summary misses the waiting goroutine or the test:\n%s", s)
	}
	if !strings.Contains(s[:wait], "[chan receive") {
		t.Errorf("the waiting goroutine's state is not shown:\n%s", s)
	}
	if strings.Contains(s, "runtime.") || strings.Contains(s, "testing.") {
		t.Errorf("frames outside the project in the summary:\n%s", s)
	}
}
