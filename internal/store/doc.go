// Package store is the PostgreSQL side of Data Storage: the connection pool,
// the embedded schema migrations, partition upkeep, and every SQL statement the
// service runs. No other package writes SQL.
//
// # Writes
//
// [Store.InsertEvents] writes a whole group-commit batch in one transaction and
// two round trips: BEGIN, the per-correlation chain locks, the chain heads, the
// duplicate check and the parent lookup in one pipeline; then one INSERT …
// SELECT FROM unnest(…) (or, from a few hundred rows, a COPY), the new chain
// heads and COMMIT. The statement texts never change, so pgx prepares each once
// per connection.
//
// An event_id names one event whatever its date: audit_event_ids (migration
// 00006) holds one row per stored event, inserted in the same transaction,
// and is what the duplicate check, the parent lookups and [Store.GetEvent]
// read. An event whose id is already taken is dropped under the chain locks
// when its canonical form equals the stored event's (client retries and
// spool replays are idempotent; the stored rows are read back only when
// such a repeat occurs) and fails the batch with *[ConflictError]
// otherwise. One stored concurrently by a writer that did not hold the same
// lock makes the insert fail on a primary key, and the transaction is run
// again (then it is a repeat or a conflict). The id row costs some 180 WAL
// bytes and one B-tree entry per event (TestMeasureIDTableCost).
//
// Every statement that reads audit_events is bounded by event_date, so the
// planner opens only the partitions that can hold the rows.
//
// # Reads that stream
//
// [Store.EachEvent], [Store.ReadChainAfter] and
// [Store.EachCorrelationEvent] hand rows over one at a time as PostgreSQL
// sends them, so a response of large events is written while it is read,
// never held whole.
//
// # Partitions
//
// audit_events is partitioned by month on event_date. [Store.EnsurePartitions]
// creates the months around now ahead of time; a write that still meets a
// missing month creates it and retries once, so a valid timestamp never turns
// into a server error.
//
// # Errors
//
// Callers decide between "try later elsewhere" and "this data is wrong" with
// [IsUnavailable]; lookups that find nothing return [ErrNotFound].
package store
