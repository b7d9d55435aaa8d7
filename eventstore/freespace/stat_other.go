//go:build !(linux || darwin || freebsd)

package freespace

// Stat reports ErrUnsupported: this platform's free space is not read.
func Stat(string) (Space, error) { return Space{}, ErrUnsupported }
