// Package e2e holds callledger's end-to-end tests: the server built by the
// composition root (internal/server) exactly as `callledger serve` builds
// it, from a Config, on loopback listeners and a real event store (the
// embedded Pebble store, and KurrentDB on the in-process stand-in of
// kurrentdbtest, named by its connection string as --store names it).
// Webhooks go over HTTP, queries and commands over gRPC; the hang-up tests
// add REST credentials and reach a fake Twilio REST API through the
// server's one test seam for it. The shared Twilio capture corpus is sent
// over HTTP and the state it must produce is read back over gRPC; on
// KurrentDB, faults are injected under the running service. The call board
// is driven in headless Chromium (chromedp) on the server's API listener.
//
// The package has no code of its own, only tests.
package e2e
