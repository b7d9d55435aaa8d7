//go:build cgo

package main

// builtWithCgo: Pebble's manual allocator takes the embedded store's
// blocks from the C heap.
const builtWithCgo = true
