// Package pebblevfs holds the filesystem wrappers every Pebble database of
// callledger is opened on, so that the event store and the read model meet
// a failing disk the same way.
package pebblevfs

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// NewPaced returns fs with Pebble's retries paced after a failed write (see
// Paced); closing stop ends the waits in progress and to come (the
// database is closing).
func NewPaced(fs vfs.FS, stop <-chan struct{}) *Paced { return &Paced{FS: fs, stop: stop} }

// Paced paces Pebble's retries once the disk has failed a write. Pebble
// retries a failed flush at once and forever (DB.flush: "TODO(peter): count
// consecutive flush errors and backoff"): on a full disk that spins a core
// and, through BackgroundError, floods the log. Each new file Pebble
// creates after a failed write waits, doubling from minPace up to maxPace;
// a successful sync ends the pacing. Pebble creates files outside its
// mutex, so the wait holds up nothing but the retry.
type Paced struct {
	vfs.FS
	stop <-chan struct{} // ends waits: the database is closing

	mu       sync.Mutex
	failures int
	until    time.Time
}

const (
	minPace = 50 * time.Millisecond
	maxPace = time.Second
)

func (fs *Paced) wait() {
	fs.mu.Lock()
	d := time.Until(fs.until)
	fs.mu.Unlock()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-fs.stop:
	}
}

func (fs *Paced) observe(err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err == nil {
		fs.failures, fs.until = 0, time.Time{}
		return
	}
	pace := min(minPace<<min(fs.failures, 16), maxPace)
	fs.failures++
	fs.until = time.Now().Add(pace)
}

func (fs *Paced) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	fs.wait()
	f, err := fs.FS.Create(name, category)
	if err != nil {
		fs.observe(err)
		return nil, err
	}
	return &pacedFile{File: f, fs: fs}, nil
}

func (fs *Paced) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	fs.wait()
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		fs.observe(err)
		return nil, err
	}
	return &pacedFile{File: f, fs: fs}, nil
}

func (fs *Paced) Unwrap() vfs.FS { return fs.FS }

// pacedFile reports its writes' failures, and its syncs' successes, to
// its Paced.
type pacedFile struct {
	vfs.File
	fs *Paced
}

func (f *pacedFile) failed(err error) error {
	if err != nil {
		f.fs.observe(err)
	}
	return err
}

func (f *pacedFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.failed(err)
}

func (f *pacedFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.failed(err)
}

func (f *pacedFile) Preallocate(off, length int64) error {
	return f.failed(f.File.Preallocate(off, length))
}

func (f *pacedFile) Sync() error {
	err := f.File.Sync()
	f.fs.observe(err)
	return err
}

func (f *pacedFile) SyncData() error {
	err := f.File.SyncData()
	f.fs.observe(err)
	return err
}

func (f *pacedFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	f.fs.observe(err)
	return full, err
}
