// Package store is the PostgreSQL side of Data Storage: the connection pool,
// the embedded schema migrations, and every SQL statement the service runs.
// No other package writes SQL, and this one decides as little as it can:
// when partitions are created and what a retention run does next are
// internal/maintenance's, which drives the statements here
// ([Store.EnsurePartitions], [Store.OpenRetention]).
//
// # Writes
//
// [Store.InsertEvents] writes a whole group-commit batch in one transaction and
// two round trips: BEGIN, the per-correlation chain locks, the chain heads, the
// duplicate check and the parent lookup in one pipeline; then one INSERT …
// SELECT FROM unnest(…) (or, from a few hundred rows, a COPY), the new chain
// heads and COMMIT. The statement texts never change, so pgx prepares each once
// per connection. When this replica remembers the heads of a commit's chains
// (fewer than 200 events, parents settled), it links without reading them:
// one round trip (the locks and one statement, small.go, in one implicit
// transaction), and for a lone event one statement in autocommit (lone.go);
// both write nothing and fall back to the two round trips above when a head
// moved or an id is taken.
//
// An event_id names one event whatever its date: audit_event_ids (migration
// 00006) holds one row per stored event, inserted in the same transaction,
// and is what the duplicate check, the parent lookups and [Store.GetEvent]
// read. An event whose id is already taken is dropped under the chain locks
// when its canonical form equals the stored event's (client retries and
// spool replays are idempotent; the stored rows are read back only when
// such a repeat occurs) and fails the batch with *[audit.ConflictError]
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
// creates the months around now ahead of time (maintenance.PartitionUpkeep
// calls it at start and hourly); a write that still meets a
// missing month creates it and retries once, so a valid timestamp never turns
// into a server error.
//
// # Errors
//
// The store speaks its callers' vocabulary: internal/query and
// internal/integrity declare the filters, pages, windows, holds and chain
// states they ask for and the interfaces the store implements
// (implements.go), and the sentinels it returns (query.ErrNotFound,
// integrity.ErrNotFound, audit.ErrNotificationExists, the *audit refusals).
// Every other error carries its class ([Classify]); callers read it with
// failure.ClassOf, so none of them imports this package to test an error.
package store
