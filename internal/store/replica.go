package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kubernaut.ai/datastorage/internal/failure"
	"kubernaut.ai/datastorage/internal/readroute"
)

// The reads that a standby may serve (lists, counts, get by id, timelines,
// aggregations, exports, the remediation read models) take their pool from
// reads(ctx); everything else (writes, chain verification, legal holds, the
// catalog, partition and retention work, parent lookups) uses s.pool, the
// primary, so it sees its own writes. readroute decides; this file only
// applies the decision.

// replicaLagSQL samples the standby. Replay lag is the age of the last
// replayed commit, but on an idle primary that age grows while the standby
// is perfectly current, so a standby that is connected to its primary
// (a WAL receiver runs) and has replayed everything it received counts as 0
// behind. A server that is not in recovery (a promoted standby, or a primary
// named as replica) is never behind itself. A standby that never replayed a
// commit and is not current has an unknown lag: -1, read as "too far".
const replicaLagSQL = `
SELECT CASE
         WHEN NOT pg_is_in_recovery() THEN 0
         WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver)
              AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
         ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, -1)
       END`

// probeReplica is the router's Probe for the replica pool.
func probeReplica(replica *pgxpool.Pool) readroute.Probe {
	return func(ctx context.Context) (time.Duration, error) {
		var secs float64
		err := replica.QueryRow(ctx, replicaLagSQL).Scan(&secs)
		if err != nil && ctx.Err() == nil {
			// A pooled connection from before a standby restart fails
			// once and is dropped; the standby is down only if a fresh
			// connection fails too.
			err = replica.QueryRow(ctx, replicaLagSQL).Scan(&secs)
		}
		if err != nil {
			return 0, fmt.Errorf("store: sample replica lag: %w", err)
		}
		if secs < 0 {
			return time.Duration(1<<63 - 1), nil
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
}

// ReadRouter returns the router that sends reads to the standby or the
// primary; its Run samples the standby (the service runs it in the
// background). Without database.replicaUrl it routes everything to the
// primary and Run returns at once.
func (s *Store) ReadRouter() *readroute.Router { return s.router }

// reader is the pool one read uses, chosen once per store call.
type reader struct {
	s      *Store
	target readroute.Target
}

// reads routes one read.
func (s *Store) reads(ctx context.Context) reader {
	t, _ := s.router.Route(ctx)
	return reader{s: s, target: t}
}

func (r reader) pool() *pgxpool.Pool {
	if r.target == readroute.Replica && r.s.replica != nil {
		return r.s.replica
	}
	return r.s.pool
}

// reroute reports whether a read that failed on the standby with err, before
// any row reached the caller, may be sent to the primary instead: the
// standby could not be reached, lost the connection, or cancelled the query
// (a recovery conflict) — an outage, not an answer. A read has no effect, so
// running it again elsewhere is safe. The standby counts as down from then on
// until its next good sample.
func (r reader) reroute(ctx context.Context, err error) bool {
	if r.target != readroute.Replica || err == nil || ctx.Err() != nil {
		return false
	}
	if Classify(err) != failure.Unavailable {
		return false
	}
	r.s.router.Rerouted(err)
	return true
}

// done is deferred by each routed read: a standby that failed mid-way (the
// read answered 503) counts as down until its next good sample, so the next
// reads go to the primary instead of failing the same way.
func (r reader) done(err *error) {
	if r.target != readroute.Replica || *err == nil {
		return
	}
	if errors.Is(*err, context.Canceled) || errors.Is(*err, context.DeadlineExceeded) {
		return
	}
	if Classify(*err) == failure.Unavailable {
		r.s.router.MarkDown(*err)
	}
}

// Query runs a query on the routed pool; a standby that fails before the
// first row is replaced by the primary (see routedRows).
func (r reader) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := r.pool().Query(ctx, sql, args...)
	if r.reroute(ctx, err) {
		return r.s.pool.Query(ctx, sql, args...)
	}
	if err != nil || r.target != readroute.Replica {
		return rows, err
	}
	return &routedRows{Rows: rows, r: r, ctx: ctx, sql: sql, args: args}, nil
}

// routedRows are a standby's rows. pgx reports most failures through the
// rows, not Query: if the first Next fails for an outage, the query runs on
// the primary and its rows take over, the caller none the wiser.
type routedRows struct {
	pgx.Rows
	r       reader
	ctx     context.Context
	sql     string
	args    []any
	settled bool // a row was read, or the query was rerouted: no more retries
}

func (rr *routedRows) Next() bool {
	if rr.Rows.Next() {
		rr.settled = true
		return true
	}
	if rr.settled {
		return false
	}
	rr.settled = true
	rr.Rows.Close()
	if !rr.r.reroute(rr.ctx, rr.Rows.Err()) {
		return false
	}
	rows, err := rr.r.s.pool.Query(rr.ctx, rr.sql, rr.args...)
	rr.Rows = rows
	if err != nil {
		return false
	}
	return rr.Rows.Next()
}

// QueryRow is Query for one row.
func (r reader) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return &routedRow{r: r, ctx: ctx, sql: sql, args: args}
}

// routedRow defers the query to Scan, where a standby that fails is
// replaced by the primary.
type routedRow struct {
	r    reader
	ctx  context.Context
	sql  string
	args []any
}

func (rr *routedRow) Scan(dest ...any) error {
	err := rr.r.pool().QueryRow(rr.ctx, rr.sql, rr.args...).Scan(dest...)
	if rr.r.reroute(rr.ctx, err) {
		return rr.r.s.pool.QueryRow(rr.ctx, rr.sql, rr.args...).Scan(dest...)
	}
	return err
}

// SendBatch sends a batch of queries. A batch is not re-sent: its queued
// callbacks may have run.
func (r reader) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return r.pool().SendBatch(ctx, b)
}

// BeginTx begins a transaction on the routed pool, on the primary if the
// standby cannot be reached.
func (r reader) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := r.pool().BeginTx(ctx, opts)
	if r.reroute(ctx, err) {
		return r.s.pool.BeginTx(ctx, opts)
	}
	return tx, err
}
