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
// refuses appends until it has recovered (see Disk faults). After a failed
// sync Pebble may hold the batch in its memtable without it being durable;
// appending on top of that state could acknowledge events that follow a
// hole after a crash, so the store stops writing and reopens. Readers are
// bounded by the published head, so they never see the failed group.
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
// # Disk faults
//
// A full disk (ENOSPC), a failing one (EIO) or a failed fsync never gets an
// append acknowledged, never leaves a gap or a double in the log, and does
// not end the process:
//
//   - A commit whose WAL write or sync fails: Pebble calls Logger.Fatalf
//     ("fatal commit error"); internal/pebblelog panics with a value that the
//     committer catches on its own goroutine (returning from Fatalf would
//     make Batch.Commit report the batch committed). The group's callers get
//     ErrUnavailable, saying their events may or may not be in the log (a
//     retry with the same IDs is safe), and the store is broken: appends are
//     refused at once and [Store.Ping] fails with the cause. After a failed
//     fsync nothing in Pebble's memory or the page cache can be trusted
//     (PostgreSQL's "fsyncgate"), so the committer recovers as a restart
//     would, in the process: it waits (1 s, doubling to 30 s), checks that
//     the disk takes a write and a sync (a 1 MiB probe file), closes both
//     databases without flushing and reopens them, Pebble recovering the log
//     from the WAL on disk and Open re-indexing what the index lacks. Readers
//     read the old databases up to the head until then and wait for the
//     reopen, or their context, while it runs. The reopened log may hold the
//     failed group; it must hold every acknowledged event, or the store
//     stays broken with ErrCorrupt. The in-process recovery keeps webhooks
//     answered (503, Retry-After) where an exit would leave Twilio with
//     refused connections until a supervisor restarts the process.
//   - A flush whose tables cannot be written: Pebble keeps the data in the
//     WAL and retries the flush at once and forever; once the memtables are
//     full it stalls every commit until a flush succeeds. The store learns of
//     the failure from Pebble's event listener, refuses appends and fails
//     Ping until a flush succeeds, so that no caller (nor Close) waits on
//     the disk. Its filesystem paces Pebble's retries (each new file after a
//     failed write waits, 50 ms doubling to 1 s; a successful sync ends it),
//     so a full disk neither spins a core nor fills with log lines; repeated
//     errors are logged at most once per interval (10 s).
//   - Open on a full or failing disk: the write probe fails before Pebble
//     is involved; Open tries again (1 s, 2 s, 4 s, …) up to
//     Options.OpenAttempts times and returns an error wrapping
//     ErrUnavailable that says what the disk did; OpenContext also gives up
//     when its context ends (SIGTERM). Pebble's own open cannot be
//     interrupted: it waits until the WAL's recovery is flushed, however
//     often that fails. So it runs in a goroutine that Open abandons after
//     OpenAttempts failed flushes (or when ctx ends); the abandoned open
//     closes what it opened once the disk lets it, holding the directory
//     lock until then. A server thus exits with a clear error after a
//     bounded time, and its supervisor's restart comes back once the disk
//     has room: a ledger that cannot be written at start-up has nothing to
//     serve, and a restart loop with one log line per try is what operators
//     expect of a full disk.
//
// Two failures still end the process, as Pebble designs: a failed MANIFEST
// write in a background flush or compaction (Pebble cannot unwind its file
// references; Fatalf on its goroutine panics), and a failure to close the
// previous WAL at a memtable rotation (Pebble v2.1.7 panics there with its
// mutex released, which no recover survives). Both are rare next to the
// WAL write every commit makes, which a disk meets first; the restart
// recovers from the WAL.
//
// # Closing
//
// Close refuses new appends with ErrUnavailable, commits and acknowledges
// the requests already queued, stops the committer and closes Pebble.
// Reads, Head and subscriptions after Close fail with ErrUnavailable. Close
// is safe to call more than once. While the disk fails or hangs, a commit
// in progress may wait for it; Close then gives up after 10 s with an
// error, leaving the databases to the end of the process.
package pebblestore
