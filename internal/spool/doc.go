// Package spool is the Redis Streams queue that holds what PostgreSQL could
// not take yet, and the worker that replays it (docs/architecture.md, the
// write path, steps 4–5; CONTRACT §14).
//
// # Exactly-once storage from two weaker promises
//
// The spool gives at-least-once delivery: an entry leaves the stream only
// after its events are committed, so a crash, a lost acknowledgement or a
// second replica working on the same entry can make it reach PostgreSQL more
// than once, never zero times. The store's insert is idempotent: every event
// carries its final event_id from the moment it is accepted, and the insert
// skips an (event_id, event_date) already stored. Delivered at least once and
// stored at most once is stored exactly once.
//
// # Appending
//
// [Spool.Append] writes a whole group-commit batch with one Lua script: the
// script checks the stream's length against redis.dlqMaxLen and adds every
// entry, or adds none. The check and the adds must be one atomic step,
// otherwise two replicas could both see room for their batch and together
// overfill the stream. Nothing is trimmed, ever (no MAXLEN): trimming drops
// accepted events. A full spool refuses with [ErrFull] and the write path
// answers 503, so the client keeps the event instead of the spool losing it.
//
// Redis confirms a write once it is in memory and in the AOF buffer; with the
// shipped appendfsync everysec at most the last second is lost if the Redis
// machine itself dies. appendfsync always closes that window at a cost in
// throughput.
//
// # Waiting for replicas
//
// Redis replication is asynchronous: an entry a master acknowledged and then
// died with, before a replica had it, is gone after a Sentinel failover. With
// Options.MinReplicas (redis.minReplicas) above 0 the append script and a
// WAIT run in one pipeline, one round trip on one connection, and the append
// succeeds only when WAIT counts that many replicas within
// Options.WaitTimeout. Otherwise the entries are deleted again (XDEL) and
// [ErrNotReplicated] makes the write a 503: left in place they would be
// replayed, and a client retrying without an event_id of its own would get
// its event twice. A replay worker may have read such entries before they
// were withdrawn; it checks a page that waited for the database before
// committing it and drops what is gone. What remains ambiguous is narrow and
// harmless to clients that keep their event ids (the SDK does): a master that
// dies between the script and the WAIT's answer (the service cannot know
// whether a replica got the entries) or before the withdrawal reached a
// replica that got them late, or a database that returns within the WAIT.
// Such a 503'd event may be stored, once, under its id; fault test 2 counts
// them (test/fault/redisha_test.go).
//
// # Replaying
//
// Every replica runs a [Worker] in one consumer group, so each entry is
// delivered to one replica. The worker reads a page (XREADGROUP), commits it
// through the same group-commit pipeline as live writes, and only after the
// commit acknowledges the entries and deletes them (XACK, then XDEL, in one
// MULTI). Deleting committed entries is not trimming: what is deleted is
// already in PostgreSQL. Without it the stream would only grow, and its
// length, which is what the dlqMaxLen check and the depth metric read, would
// stop meaning "events not yet stored".
//
// While PostgreSQL is unavailable the worker holds at most one page and pings
// the database with backoff; the other entries stay undelivered for whichever
// replica sees the database first. Replay is paced by that single page in
// flight per replica: its commits share the pipeline's writers with live
// traffic instead of competing with them, and a page of 500 events per commit
// still drains a million entries in minutes.
//
// Entries delivered to a worker that died stay pending in the group; any
// worker claims them (XAUTOCLAIM) once they have been idle for ClaimIdle. A
// worker whose database is down does not claim: it would only move a page
// from one waiting replica to another. A claimed page may meanwhile be
// committed by its first owner too; the idempotent insert makes that
// harmless. Each worker has a name of its own (hostname-pid-random) and
// leaves the group when it stops, if it holds nothing; a dead replica's name
// is removed once it holds nothing and has been silent for an hour.
//
// # Poison entries
//
// When a page fails for a data reason ([DataError]: PostgreSQL refuses an
// event, or its parent event does not exist) the page is split in halves,
// recursively, so the good entries commit and the bad one is isolated. The bad
// entry stays pending and is tried again when it is claimed after ClaimIdle,
// which also gives a parent spooled elsewhere time to arrive. When it fails
// on its MaxDeliveries-th delivery (Redis counts them; a delivery to a
// replica that then crashed counts too) it moves, with its last error, to the
// dead-letter stream (audit:dead-letter:events). An entry that cannot even be
// decoded can never succeed and moves there at once. Operators inspect dead
// letters and send them back after a fix with `datastorage dlq dead-letters`.
//
// # Parked pages
//
// What a replay failure means is failure.ClassOf's rule. Unavailable: the
// worker waits for the database, holding the page. Data: the poison-entry
// handling above. Internal (neither: a statement that no longer fits the
// schema, an answer that cannot be scanned, a bug): the page is parked — left
// delivered and unacknowledged, so nothing is lost and nothing is
// dead-lettered for a fault that is not the data's — and the worker goes on
// with other pages. A parked page is tried again only when a claim scan takes
// it over, after ClaimIdle: one attempt per page per ClaimIdle, never a loop,
// and it commits by itself once the cause is fixed.
// datastorage_replay_parked_total counts parked records and the
// DataStorageReplayParked alert fires. A one-shot Drain stops with the error.
package spool
