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
// 6–22 % and cut GetCall's CPU per call by 2–20 % (docs/BENCHMARKS.md §6).
const gcPercent = 400

// rebuildMemoryLimit caps the soft memory limit of `callledger rebuild`.
// Its live heap does not grow with the ledger (the calls of the last
// epochs and the batches being decoded: about 150 MB), and Pebble's
// memtables and block caches, outside the Go heap, take about 450 MB
// more: 512 MiB for the Go runtime keeps the whole process near 1 GiB,
// where GOGC=400 alone let the heap grow to five times its live size
// (docs/BENCHMARKS.md §3, round 2).
const rebuildMemoryLimit = 512 << 20

// tuneGC sets the collector for a long-running command: a higher GOGC,
// bounded by a soft memory limit of a quarter of physical memory (or of
// the container's limit), and at most maxLimit when that is positive, so
// that a large heap collects more often rather than grow fivefold. GOGC
// and GOMEMLIMIT in the environment take precedence.
func tuneGC(maxLimit int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := int64(physicalMemory() / 4)
		if maxLimit > 0 && (limit <= 0 || limit > maxLimit) {
			limit = maxLimit
		}
		if limit > 0 {
			debug.SetMemoryLimit(limit)
		}
	}
}

// warnWithoutCgo says, on a build without cgo (CGO_ENABLED=0, or no C
// compiler when it was built), what it costs: every block the embedded
// store reads is then allocated and collected on the Go heap, and a
// rebuild of 1M events took 3.5 times as long (docs/BENCHMARKS.md §12).
func warnWithoutCgo(logger *slog.Logger) {
	if !builtWithCgo {
		logger.Warn("built without cgo (CGO_ENABLED=0, or no C compiler at build time): the embedded store's reads " +
			"are far slower (a rebuild 3.5x, docs/BENCHMARKS.md §12); build with a C compiler present")
	}
}
