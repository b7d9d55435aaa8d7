package pebblestore

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// WithBeforeGroup returns opts with a hook the committer calls before it
// processes each group, so that tests can hold the committer and queue
// appends behind it deterministically.
func WithBeforeGroup(opts Options, hook func()) Options {
	opts.beforeGroup = hook
	return opts
}

// WithCommit returns opts with commit replacing batch.Commit(pebble.Sync),
// so that tests can inject commit failures.
func WithCommit(opts Options, commit func(*pebble.Batch) error) Options {
	opts.commit = commit
	return opts
}

// WithScanIDs returns opts with n replacing scanIDs, so that tests reach
// the dedup index of long streams with short ones.
func WithScanIDs(opts Options, n int) Options {
	opts.scanIDs = n
	return opts
}

// WithReindex returns opts with a re-index batch of n events and a hook
// called after each batch with the position the index then reaches.
func WithReindex(opts Options, n int, after func(applied uint64)) Options {
	opts.reindexBatch = n
	opts.afterRebuild = after
	return opts
}

// IndexDir is the index database's directory inside the store directory.
const IndexDir = indexDir

// FlushIndex flushes the index's memtables to its tables.
func FlushIndex(s *Store) error { return s.index.Flush() }

// QueueLen reports how many appends wait for the committer.
func QueueLen(s *Store) int { return len(s.reqs) }

// Closing reports whether Close has begun refusing appends.
func Closing(s *Store) bool {
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	return s.closing
}

// WriteAmp is the store's write amplification: the bytes both databases
// wrote (WAL, flushes, compactions) over the bytes appended to the log.
func WriteAmp(s *Store) float64 {
	var in, written uint64
	for _, db := range []*pebble.DB{s.db, s.index} {
		m := db.Metrics()
		t := m.Total()
		in += m.WAL.BytesIn + t.TableBytesIngested
		written += t.TableBytesFlushed + t.TableBytesCompacted + t.BlobBytesFlushed + t.BlobBytesCompacted
	}
	return float64(written) / float64(max(in, 1))
}

// WithFaultTiming returns opts that wait wait before the first try again
// to open or recover, and log a repeated error once per every.
func WithFaultTiming(opts Options, wait, every time.Duration) Options {
	opts.retryWait, opts.logEvery = wait, every
	return opts
}

// Broken reports whether the store refuses appends after a failed write.
func Broken(s *Store) bool { return s.broken.Load() }

// BlockCacheSize is the block cache s opened its databases with.
func BlockCacheSize(s *Store) int64 { return s.blockCacheSize() }
