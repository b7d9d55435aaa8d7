// Package callstore is the call-state read model: one record per call in
// its own Pebble directory, indexes for the queries, and the projection's
// checkpoint, all written in one atomic batch per applied batch of events.
// A crash therefore never applies an event twice or skips one; the read
// model can also be deleted at any time and rebuilt from the log.
//
// Keys:
//
//	c<CallSid>                    → statev1.CallRecord
//	t<^start_time><CallSid>       → ""  every call, newest start first
//	a<^start_time><CallSid>       → ""  active calls (status known, not terminal)
//	r<due_time><CallSid>          → ""  calls not redacted, by when retention may erase them (dueKey)
//	s<position>                   → CallSids, one per line: an erasure applied, its scrub pending (ScrubPending)
//	mcheckpoint                   → position of the last applied event (8 bytes BE)
//	mversion                      → the projection version that built the directory
//
// ^start_time is the bitwise complement of the start time in Unix
// nanoseconds, big-endian, so that an ascending scan yields newest first.
//
// Writes are not fsynced: the log is the durable copy, and Pebble's WAL
// keeps batches atomic and in order, so a crash can only lose a suffix of
// applied batches, which the runner re-applies from the checkpoint.
package callstore
