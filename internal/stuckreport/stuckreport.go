// Package stuckreport runs a package's tests under a watchdog that, shortly
// before go test's -timeout, prints where the project's goroutines wait.
// go test's own timeout report lists the running tests first and then
// every goroutine, so a log kept only by its end (as CI keeps it) loses
// the part that says what hung; this report puts it last.
package stuckreport

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// module prefixes the functions of the project.
const module = "github.com/callledger/callledger/"

// margin is how long before go test's timeout the watchdog fires.
const margin = 30 * time.Second

// Run runs m's tests; if they are still running margin before the
// -test.timeout, it writes the report to standard error and exits with
// status 2. Call it from TestMain: os.Exit(stuckreport.Run(m)).
func Run(m *testing.M) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	var timeout time.Duration
	if f := flag.Lookup("test.timeout"); f != nil {
		timeout, _ = time.ParseDuration(f.Value.String())
	}
	if timeout > 2*margin {
		t := time.AfterFunc(timeout-margin, func() {
			fmt.Fprintf(os.Stderr, "\nstuckreport: tests still running %v after start; go test's -timeout is %v\n", timeout-margin, timeout)
			Write(os.Stderr)
			os.Exit(2)
		})
		defer t.Stop()
	}
	return m.Run()
}

// Write writes every goroutine's stack, then, last, each distinct stack
// that passes through the project's code reduced to those frames, the
// tests' own goroutines at the very end.
func Write(w io.Writer) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	_, _ = w.Write(buf)
	_, _ = io.WriteString(w, Summary(string(buf)))
}

// Summary reduces a dump of runtime.Stack(all) to the distinct stacks
// that pass through the project's code, as their state and the project's
// frames (function, file:line), with a count; stacks of tests (a _test
// package or a Test function) come last.
func Summary(dump string) string {
	type group struct {
		header string
		frames []string
		count  int
		test   bool
	}
	groups := map[string]*group{}
	var order []string
	for _, g := range strings.Split(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) < 3 {
			continue
		}
		var frames []string
		test, watchdog := false, false
		for i := 1; i+1 < len(lines); i += 2 {
			fn, at := lines[i], strings.TrimSpace(lines[i+1])
			if strings.Contains(fn, "stuckreport.") {
				watchdog = true
				break
			}
			if !strings.Contains(fn, module) {
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
			fn = strings.TrimPrefix(fn, module)
			if strings.HasSuffix(fn, ".TestMain") {
				watchdog = true
				break
			}
			frames = append(frames, "\t"+fn+" "+at)
			test = test || strings.Contains(fn, "_test.") || strings.Contains(fn, ".Test")
		}
		if watchdog || len(frames) == 0 {
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
	var b strings.Builder
	b.WriteString("\n=== stuckreport: where the project's goroutines wait (tests last) ===\n")
	for _, tests := range []bool{false, true} {
		for _, k := range order {
			if g := groups[k]; g.test == tests {
				fmt.Fprintf(&b, "%d× %s\n%s\n", g.count, g.header, strings.Join(g.frames, "\n"))
			}
		}
	}
	return b.String()
}
