package callstore

// WithBeforePage returns opts with a hook a watcher's snapshot calls once
// it holds the snapshot for a page, just before reading the page, so that
// tests can end the watcher while the page is read.
func WithBeforePage(opts Options, hook func()) Options {
	opts.beforePage = hook
	return opts
}

// EncodeToken is the page token List would hand out for f after lastKey,
// so that fuzzing gets past the token's filter check with keys of its own.
func EncodeToken(f Filter, lastKey []byte) string { return encodeToken(f, lastKey) }

// WithHotBytes returns opts with a budget of hot records of its own, so
// that tests can make generations turn over at almost every write.
func WithHotBytes(opts Options, n int) Options {
	opts.hotBytes = n
	return opts
}
