//go:build !cgo

package main

// builtWithCgo: without cgo, Pebble's manual allocator takes the embedded
// store's blocks from the Go heap.
const builtWithCgo = false
