// Package e2e holds callledger's end-to-end tests: the webhook HTTP handler
// and the gRPC query service on loopback listeners, on one real Pebble
// event store, with the call-state read model fed by the projection runner,
// exactly as serve wires them (with the command service, the reconciler
// and a fake Twilio REST API for the hang-up tests). The shared Twilio
// capture corpus is sent over HTTP and the state it must produce is read
// back over gRPC.
//
// The package has no code of its own, only tests.
package e2e
