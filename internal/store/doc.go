// Package store is the PostgreSQL side of Data Storage: the connection pool,
// the embedded schema migrations, partition upkeep, and every SQL statement the
// service runs. No other package writes SQL.
//
// # Writes
//
// [Store.InsertEvents] writes a whole group-commit batch with one INSERT …
// SELECT FROM unnest(…) statement in one transaction. The statement text never
// changes, so pgx prepares it once per connection. ON CONFLICT DO NOTHING on the
// primary key (event_id, event_date) makes a repeated write of the same event a
// no-op, which is what makes client retries and spool replays idempotent.
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
