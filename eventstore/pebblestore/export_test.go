package pebblestore

import "github.com/cockroachdb/pebble/v2"

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

// QueueLen reports how many appends wait for the committer.
func QueueLen(s *Store) int { return len(s.reqs) }

// Closing reports whether Close has begun refusing appends.
func Closing(s *Store) bool {
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	return s.closing
}
