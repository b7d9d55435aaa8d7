//go:build !linux

package main

// physicalMemory is the machine's RAM in bytes, or 0 when unknown (here:
// no memory limit is set).
func physicalMemory() uint64 { return 0 }
