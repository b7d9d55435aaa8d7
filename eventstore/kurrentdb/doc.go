// Package kurrentdb is the distributed [eventstore.Store]: KurrentDB
// (EventStoreDB) through github.com/EventStore/EventStore-Client-Go/v4 v4.2.0.
//
// # Positions
//
// [eventstore.Position] is the event's commit position in $all. Positions
// strictly increase but are not contiguous (they are byte offsets in the
// server's log). The adapter hands them back to the server as
// {commit, prepare} = {p, p}, which is exact for events appended through
// gRPC (implicit transactions, whose commit and prepare positions are
// equal). The server refuses to read from a position that is not a
// record's; the port allows any, so a refused position is resolved to the
// last event at or before it (a backward scan from the end of the log: a
// slow path for positions this adapter never hands out).
//
// The server's $all also holds its own events: $-prefixed streams
// (metadata, users, statistics, projections…) and $-prefixed types
// ($streamDeleted tombstones, $> links). They are not the ledger's: ReadAll,
// Head and subscriptions skip them, and the adapter refuses to write
// $-prefixed stream names or event types.
//
// # Exactly-once appends
//
// The server's own idempotency is reliable only for exact expected
// revisions; with Any it consults a bounded in-memory cache of recent IDs.
// So Append never relies on it: it reads the whole stream (calls have few
// events; it pages), drops the events whose IDs are there (and repeats
// within the append), succeeds with the originals' position and the
// stream's head if nothing is left, else checks the caller's expected state
// against the stream as read and appends the rest with the exact revision
// it read (NoStream for a new stream). If another writer got there first,
// the server answers WrongExpectedVersion; Append reads again and repeats,
// up to Options.MaxAppendAttempts, as long as the caller's expected state
// still holds (otherwise the new read reports the mismatch, or finds the
// events written and reports them as duplicates).
//
// Appends to one stream are serialised within a process: when two appends
// of the same new event race, the server writes it once, but its answer to
// the loser (the events at the expected revision are these very ones) is
// indistinguishable from a write, so AppendResult.Duplicates would miss it.
// Across processes that remains possible: the event is still stored once,
// only the loser's Duplicates is incomplete.
//
// Payloads are stored as application/octet-stream with the caller's
// Metadata as the event's user metadata. For an append of several events
// the reported position is read back (the last event's).
//
// # Subscriptions
//
// SubscribeAll opens a catch-up subscription to $all with a server-side
// stream-prefix filter (the port's prefixes; with none, a filter that
// excludes system streams), so that the server sends checkpoints while it
// skips events. Events are coalesced into batches as they arrive;
// checkpoints become batches without events; CaughtUp is reported once the
// subscription has received everything up to the head it started with (or
// the server says caught_up), in a batch of its own if need be. A live
// subscription that has nothing to deliver for Options.IdleCheckpointInterval
// reads the log after its checkpoint and moves the checkpoint past skipped
// events, since the server checkpoints only once per window of considered
// events.
//
// When the server drops the subscription (restart, unreachable, Aborted
// "consumer too slow", …) the adapter resubscribes with exponential backoff
// and jitter after the last position it received, and ignores anything at
// or before it, so a consumer sees no gap and no repeat. Only Close, the
// end of SubscribeAll's context, or the store's Close end a subscription.
//
// # Errors
//
// Transport loss, Unavailable, NotLeader (after retrying on the leader the
// follower named), deadlines, Aborted and ConnectionClosed wrap
// [eventstore.ErrUnavailable]: the webhook answers 503 and Twilio retries,
// which the exactly-once append makes safe. A wrong expected version is a
// [*eventstore.WrongExpectedVersionError]; a missing or tombstoned stream,
// [eventstore.ErrStreamNotFound] when read (appending to a tombstoned one is
// [eventstore.ErrInvalidArgument]); requests the server refuses as
// malformed (too large, …), ErrInvalidArgument.
//
// # The client
//
// Every call to the client runs on a goroutine of its own, bounded by the
// caller's context and twice Options.OperationTimeout, because parts of the
// v4 client block without a context. When the client closes itself for
// good after a failed discovery, or its transport has been down for a
// while, the adapter builds a new one; a dead client is abandoned, never
// closed (closing it under a blocked call panics inside the client). The
// client's own logging goes to the Logger at Debug.
//
// The adapter needs read access to $all (KurrentDB's default ACL grants it
// to $admins and $ops).
package kurrentdb
