package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// physicalMemory is the machine's RAM in bytes, or the memory limit of the
// process's cgroup (v2) when that is lower, as in a container; 0 when
// unknown.
func physicalMemory() uint64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0
	}
	total := uint64(si.Totalram) * uint64(si.Unit)
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		// "max" when unlimited, which does not parse and is ignored.
		if limit, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && limit < total {
			total = limit
		}
	}
	return total
}
