// Package privatefs keeps callledger's data directory to its owner: every
// directory 0700 and every file 0600, whatever the umask. The data
// directory holds phone numbers, raw Twilio requests and tokens, and a
// umask of 022 (the usual default) would leave all of it readable by every
// local user. Directories are created 0700, so that nothing inside them is
// reachable by others even in the instant before a new file's mode is set;
// files are set to 0600 as they are created, including Pebble's (whose
// default filesystem creates them 0666 less the umask), through Pebble.
package privatefs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Modes of everything in a data directory.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// skip reports whether modes are left alone: Windows has no such bits (its
// ACLs are the administrator's).
func skip() bool { return runtime.GOOS == "windows" }

// MkdirAll creates dir and its missing parents with mode 0700 (less the
// umask) and sets dir itself to 0700 when it grants more, as an existing
// data directory created by an older version or by hand may.
func MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	return tighten(dir, DirMode)
}

// WriteFile writes a new file, or replaces one, with mode 0600 whatever
// the umask and whatever mode a file it replaces had.
func WriteFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, FileMode); err != nil {
		return err
	}
	return tighten(path, FileMode)
}

// Tighten takes group and others' permissions away from root and every
// directory and file under it (symbolic links are not followed), so that a
// data directory written under a lax umask by an older version is private
// from the next start on. It returns the first error, after trying
// everything.
func Tighten(root string) error {
	if skip() {
		return nil
	}
	var first error
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			first = cmpErr(first, err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 || !(d.IsDir() || d.Type().IsRegular()) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				first = cmpErr(first, err)
			}
			return nil
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(path, perm&^0o077); err != nil && !errors.Is(err, fs.ErrNotExist) {
				first = cmpErr(first, fmt.Errorf("make %s private: %w", path, err))
			}
		}
		return nil
	})
	return cmpErr(first, err)
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// tighten sets path to mode when its mode grants group or others anything.
func tighten(path string, mode os.FileMode) error {
	if skip() {
		return nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("make %s private: %w", path, err)
	}
	return nil
}

// Pebble returns fs with every directory it creates 0700 and every file it
// creates 0600, for Pebble's Options.FS. fs must be a filesystem of the
// operating system (vfs.Default, or a wrapper of it): the modes are set
// through the os package.
func Pebble(fs vfs.FS) vfs.FS {
	if skip() {
		return fs
	}
	return privateFS{fs}
}

type privateFS struct{ vfs.FS }

func (p privateFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return private(name)(p.FS.Create(name, category))
}

func (p privateFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return private(name)(p.FS.OpenReadWrite(name, category, opts...))
}

func (p privateFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return private(newname)(p.FS.ReuseForWrite(oldname, newname, category))
}

func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	return p.FS.MkdirAll(dir, DirMode)
}

func (p privateFS) Lock(name string) (io.Closer, error) {
	c, err := p.FS.Lock(name)
	if err != nil {
		return nil, err
	}
	if err := tighten(name, FileMode); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (p privateFS) Unwrap() vfs.FS { return p.FS }

// private returns a func that sets the file just opened at name to 0600
// when it grants more, closing it on failure.
func private(name string) func(vfs.File, error) (vfs.File, error) {
	return func(f vfs.File, err error) (vfs.File, error) {
		if err != nil {
			return f, err
		}
		info, err := f.Stat()
		if err == nil && info.Mode().Perm()&0o077 == 0 {
			return f, nil
		}
		if err == nil {
			err = os.Chmod(name, FileMode)
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("make %s private: %w", name, err)
		}
		return f, nil
	}
}
