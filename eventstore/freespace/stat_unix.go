//go:build linux || darwin || freebsd

package freespace

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Stat reads the space of the filesystem that holds dir with statfs(2).
func Stat(dir string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return Space{Free: uint64(st.Bavail) * bs, Total: uint64(st.Blocks) * bs}, nil
}
