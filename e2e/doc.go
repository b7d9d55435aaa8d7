// Package e2e holds callledger's end-to-end tests: the webhook HTTP handler
// and the gRPC services on loopback listeners, on a real event store (the
// embedded Pebble store, and KurrentDB through its adapter on the in-process
// stand-in of kurrentdbtest), with the call-state read model fed by the
// projection runner, exactly as serve wires them (with the command service,
// the reconciler and a fake Twilio REST API for the hang-up tests). The
// shared Twilio capture corpus is sent over HTTP and the state it must
// produce is read back over gRPC; on KurrentDB, faults are injected under
// the running service.
//
// The package has no code of its own, only tests.
package e2e
