//go:build !unix

// Package cputime reads the CPU time this process has used. Benchmarks
// divide it by the operations done: on a machine shared with other work,
// throughput follows the share of the cores the process gets, while CPU
// per operation does not.
package cputime

import "time"

// Process is not measured here: it returns false.
func Process() (time.Duration, bool) { return 0, false }
