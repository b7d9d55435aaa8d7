package main

import (
	"os"
	"runtime/debug"
)

// gcPercent is the GOGC that serve and rebuild run with. Both allocate
// mostly garbage that dies with one request or one batch, over a live heap
// that is small (serve's block caches live outside the Go heap) or only
// grows (a rebuild's folded calls), so the default GOGC of 100 collects
// far more often than it needs to. 400 saves about a fifth of a rebuild's
// CPU, and in interleaved runs raised in-process webhook throughput by
// 6–22 % and cut GetCall's CPU per call by 2–20 % (docs/BENCHMARKS.md §6).
const gcPercent = 400

// tuneGC sets the collector for a long-running command: a higher GOGC,
// bounded by a soft memory limit of a quarter of physical memory (or of
// the container's limit), so that a large heap collects more often rather
// than grow fivefold. GOGC and GOMEMLIMIT in the environment take
// precedence.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if mem := physicalMemory(); mem > 0 {
			debug.SetMemoryLimit(int64(mem / 4))
		}
	}
}
