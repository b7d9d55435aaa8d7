//go:build unix

// Package cputime reads the CPU time this process has used. Benchmarks
// divide it by the operations done: on a machine shared with other work,
// throughput follows the share of the cores the process gets, while CPU
// per operation does not.
package cputime

import (
	"syscall"
	"time"
)

// Process returns the CPU time (user and system) this process has used,
// and false when the system does not say.
func Process() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
