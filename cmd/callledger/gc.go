package main

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// gcPercent is the GOGC that serve and rebuild run with. Both allocate
// mostly garbage that dies with one request or one batch, over a live heap
// that is small (serve's block caches live outside the Go heap) or only
// grows (a rebuild's folded calls), so the default GOGC of 100 collects
// far more often than it needs to. 400 saves about a fifth of a rebuild's
// CPU, and in interleaved runs raised in-process webhook throughput by
// 6–22 % and cut GetCall's CPU per call by 2–20 % (docs/BENCHMARKS.md §5.1).
const gcPercent = 400

// tuneGC sets the collector for a long-running command: a higher GOGC,
// bounded by a soft memory limit of a quarter of physical memory (or of
// the container's limit), so that a large heap collects more often rather
// than grow fivefold. GOGC and GOMEMLIMIT in the environment take
// precedence.
func tuneGC(logger *slog.Logger, command string) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
		logger.Debug("GOGC set", "command", command, "gc_percent", gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if mem := physicalMemory(); mem > 0 {
			debug.SetMemoryLimit(int64(mem / 4))
			logger.Debug("memory limit set", "command", command, "bytes", mem/4)
		}
	}
}
