// Package pebblestore is the embedded, default [eventstore.Store]: one
// directory, one process, Pebble v2 underneath.
//
// # Write path: group commit
//
// Append validates its input, copies the events (so the caller may reuse its
// buffers as soon as Append returns, whatever it returns) and queues a
// request on a bounded channel. A single committer goroutine takes the first
// request, drains whatever else is queued (up to Options.MaxGroupAppends) and
// processes the group in arrival order: stream head and dedup lookups, the
// expected-state check, then revisions and global positions. The group is
// written as ONE batch to the log committed with pebble.Sync; only after the
// fsync returns does the committer publish the new head, reply to every
// caller of the group and wake subscribers. Nothing is acknowledged from
// memory.
//
// Requests in the same group see each other's writes through a small
// per-group overlay (stream heads and event IDs written so far), consulted
// before Pebble. We use the overlay rather than an indexed batch because the
// committer only ever needs point lookups of two kinds of keys, and a map is
// cheaper than indexing every key of the batch in a skiplist.
//
// Because one goroutine assigns positions, and assigns them only to events
// it writes, positions are contiguous (1, 2, 3, …) and gap-free by
// construction. A subscriber reading up to the published head can never skip
// an event that commits late: there are no late commits below the head.
//
// If a commit fails, every caller of the group gets an error wrapping
// [eventstore.ErrUnavailable], the head does not advance, and the store
// refuses every later append with ErrUnavailable. After a failed sync Pebble
// may hold the batch in its memtable without it being durable; appending on
// top of that state could acknowledge events that follow a hole after a
// crash, so the only safe course is to stop writing until the process
// reopens the store (reopening recovers whatever reached the disk). Readers
// are bounded by the published head, so they never see the failed group.
//
// # Exactly once
//
// Every written event leaves a permanent dedup entry keyed by stream and
// event ID. An event whose ID the stream already holds (or that repeats an
// earlier event of the same append) is not written and is listed in
// AppendResult.Duplicates. An append whose events are all duplicates
// succeeds whatever its expected state, with Position the highest position
// among the originals and NextRevision the stream's current head. Otherwise
// the expected state is checked against the stream's current head and a
// mismatch writes nothing. Dedup is by ID only: the payload of a duplicate is
// not compared with the original's.
//
// # Two databases: the log and its index
//
// The store directory holds two Pebble databases. The log (the directory
// itself) holds only the events, keyed by position, and is the source of
// truth: every group is one batch committed with pebble.Sync. Its keys are
// written in increasing order, so its flushed tables never overlap and move
// down the LSM without being rewritten. The index (the index/ directory)
// holds the stream and dedup entries; it runs without a WAL and each group
// writes its entries there with NoSync after the log's fsync, together with
// the position it covers (mapplied). A crash can lose only a suffix of the
// index, which Open re-derives from the log past mapplied; deleting index/
// rebuilds it whole. This halves the bytes fsynced per event and keeps the
// index's compactions away from the log.
//
//	log:   e<pos u64 BE>                → event record
//	       _format                      → layout version (2)
//	index: s<stream>\x00<rev u64 BE>    → pos u64 BE, event ID
//	       i<stream>\x00<event id 16B>  → rev u64 BE, pos u64 BE (revisions ≥ 32 only)
//	       mapplied, mformat, mscanids   → covered position, layout, scan length
//
// A stream's first 32 event IDs are found by scanning its s keys (a call has
// 2–10 events, so one index key per event); longer streams also get i keys
// so dedup stays a point lookup. The committer caches recently written
// streams (Options.StreamCacheSize). Stream names cannot hold NUL
// ([eventstore.ValidateStreamName]), so the separator keeps one stream's
// keys from being a prefix of another's. On Open the head position is
// recovered by seeking the last e key.
//
// # Record encoding
//
// A version byte (1), the 16-byte event ID, the revision (uvarint), the
// creation time in unix nanoseconds (varint), then stream, type, metadata and
// data, each a uvarint length followed by the bytes. Decoding checks every
// length and rejects trailing bytes; damage is reported as an error wrapping
// [ErrCorrupt], never a panic. Readers also check that positions are
// contiguous, so a missing record is reported rather than silently skipped.
//
// # Reads and subscriptions
//
// ReadAll and subscriptions stream a bounded Pebble iterator over e keys up
// to the published head. Payload bytes of one call are copied into a few
// large arena slices and sub-sliced, and stream and type names are interned
// per call, so a read allocates per call rather than per event. Events of
// one call therefore share backing arrays: a consumer that keeps a few
// events of a large read for long should copy them.
//
// A subscription reads (checkpoint, head] in batches of at most
// Options.SubscriptionBatchSize matching events; events its filter rejects
// are skipped but still advance Batch.Checkpoint. At the head it waits on a
// channel the committer closes (and replaces) after every commit. The first
// time it reaches the head it had when it started it sets CaughtUp; if that
// happens without events to deliver, it returns one empty batch with
// CaughtUp set so that consumers learn they are live. Closing the store ends
// subscriptions with an error wrapping [eventstore.ErrUnavailable]: the
// subscriber may retry against a reopened store from its checkpoint.
//
// # Closing
//
// Close refuses new appends with ErrUnavailable, commits and acknowledges
// the requests already queued, stops the committer and closes Pebble.
// Reads, Head and subscriptions after Close fail with ErrUnavailable. Close
// is safe to call more than once.
package pebblestore
