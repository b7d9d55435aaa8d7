package e2e_test

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain runs the tests under a watchdog. A test stuck in a wait would
// otherwise end in go test's timeout panic, whose list of running tests
// comes first and is lost when only the end of a long log is kept (as CI
// keeps it). The watchdog fires shortly before that timeout and prints, at
// the very end, where the project's own code waits.
func TestMain(m *testing.M) {
	flag.Parse()
	var timeout time.Duration
	if f := flag.Lookup("test.timeout"); f != nil {
		timeout, _ = time.ParseDuration(f.Value.String())
	}
	if timeout > time.Minute {
		t := time.AfterFunc(timeout-30*time.Second, func() {
			fmt.Fprintf(os.Stderr, "\ne2e watchdog: still running %v after start; go test's -timeout is %v\n", timeout-30*time.Second, timeout)
			fmt.Fprint(os.Stderr, stuckReport())
			os.Exit(2)
		})
		defer t.Stop()
	}
	os.Exit(m.Run())
}

// stuckReport is every goroutine's stack, then, last, each distinct stack
// that passes through the project's code reduced to those frames, the
// tests' own goroutines at the very end.
func stuckReport() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var b strings.Builder
	b.Write(buf)
	type group struct {
		header string
		frames []string
		count  int
		test   bool
	}
	groups := map[string]*group{}
	var order []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) < 3 {
			continue
		}
		var frames []string
		test := false
		for i := 1; i+1 < len(lines); i += 2 {
			fn, at := lines[i], strings.TrimSpace(lines[i+1])
			if !strings.Contains(fn, "github.com/callledger/callledger") {
				continue
			}
			if j := strings.LastIndex(at, " +0x"); j > 0 {
				at = at[:j]
			}
			if parts := strings.Split(at, "/"); len(parts) > 2 {
				at = strings.Join(parts[len(parts)-2:], "/")
			}
			fn = strings.TrimPrefix(fn, "created by ")
			if j := strings.LastIndex(fn, " in goroutine "); j > 0 {
				fn = fn[:j]
			} else if j := strings.LastIndex(fn, "("); j > 0 {
				fn = fn[:j]
			}
			if strings.Contains(fn, "e2e_test.TestMain") || strings.Contains(fn, "e2e_test.stuckReport") {
				frames = nil
				break
			}
			frames = append(frames, "\t"+strings.TrimPrefix(fn, "github.com/callledger/callledger/")+" "+at)
			test = test || strings.Contains(fn, "e2e_test.")
		}
		if len(frames) == 0 {
			continue
		}
		state := lines[0]
		if i := strings.Index(state, "["); i >= 0 {
			state = state[i:]
		}
		key := state + strings.Join(frames, "\n")
		if grp, ok := groups[key]; ok {
			grp.count++
			continue
		}
		groups[key] = &group{header: state, frames: frames, count: 1, test: test}
		order = append(order, key)
	}
	b.WriteString("\n=== e2e watchdog: where the project's goroutines wait (tests last) ===\n")
	for _, tests := range []bool{false, true} {
		for _, k := range order {
			if g := groups[k]; g.test == tests {
				fmt.Fprintf(&b, "%d× %s\n%s\n", g.count, g.header, strings.Join(g.frames, "\n"))
			}
		}
	}
	return b.String()
}
