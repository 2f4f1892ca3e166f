package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"kubernaut.ai/datastorage/internal/maintenance"
)

// The statements of a retention run. The policy — which month to drop,
// which rows to delete, how batches shrink, how detach and drop follow each
// other — is internal/maintenance's (retention_run.go); this file only says
// how each step is asked of PostgreSQL.

// retentionLeaderKey is the session advisory lock that makes one replica
// run retention at a time.
const retentionLeaderKey = 0x6473_7265_746e // "dsretn"

// retentionSession is one retention run's connection: it holds the leader
// lock, and the hold gate while a partition is dropped.
type retentionSession struct {
	conn *pgxpool.Conn
}

// OpenRetention takes a connection of its own and tries the retention
// leader lock on it; leader is false (and nothing is held) when another
// replica has it.
func (s *Store) OpenRetention(ctx context.Context) (session maintenance.RetentionSession, leader bool, err error) {
	defer classifyErr(&err)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: retention: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(retentionLeaderKey)).Scan(&leader); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("store: retention: %w", err)
	}
	if !leader {
		conn.Release()
		return nil, false, nil
	}
	return &retentionSession{conn: conn}, true, nil
}

// Close unlocks on a context that outlives a cancelled run; if even that
// fails, the connection is closed and the lock goes with it.
func (r *retentionSession) Close(ctx context.Context) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := r.conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(retentionLeaderKey)); err != nil {
		_ = r.conn.Conn().Close(uctx)
	}
	r.conn.Release()
}

// Today reads the date from the database's clock, so every replica judges
// expiry alike.
func (r *retentionSession) Today(ctx context.Context) (time.Time, error) {
	var today time.Time
	err := r.conn.QueryRow(ctx, `SELECT (now() AT TIME ZONE 'UTC')::date`).Scan(&today)
	return today, err
}

// Partitions lists the monthly partitions, with those a crashed run left
// half-detached.
func (r *retentionSession) Partitions(ctx context.Context) ([]maintenance.PartitionRef, error) {
	rows, err := r.conn.Query(ctx, `
		SELECT c.relname, i.inhdetachpending
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass
		ORDER BY c.relname`)
	if err != nil {
		return nil, err
	}
	var out []maintenance.PartitionRef
	var name string
	var pending bool
	_, err = pgx.ForEachRow(rows, []any{&name, &pending}, func() error {
		var y, m int
		if _, err := fmt.Sscanf(name, "audit_events_y%04dm%02d", &y, &m); err != nil {
			return nil // not one of ours
		}
		from := time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
		out = append(out, maintenance.PartitionRef{
			Partition:     maintenance.Partition{Name: name, From: from, To: from.AddDate(0, 1, 0)},
			DetachPending: pending,
		})
		return nil
	})
	return out, err
}

// DetachedTables finds tables named like monthly partitions that are not
// attached to audit_events.
func (r *retentionSession) DetachedTables(ctx context.Context) ([]string, error) {
	rows, err := r.conn.Query(ctx, `SELECT c.relname FROM pg_class c
		WHERE c.relkind = 'r' AND NOT c.relispartition AND c.relname ~ '^audit_events_y[0-9]{4}m[0-9]{2}$'
		  AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'audit_events'::regclass)`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// SweepHolds flags the rows written after their correlation was put under
// hold, on the run's connection.
func (r *retentionSession) SweepHolds(ctx context.Context) (int64, error) {
	return sweepHolds(ctx, r.conn)
}

// Conditions on a row e, with $today a parameter named by the caller.
const (
	expiredCond = `e.event_date + e.retention_days < $today::date`
	unheldCond  = `NOT e.legal_hold AND NOT EXISTS (
		SELECT 1 FROM legal_holds h WHERE h.correlation_id = e.correlation_id AND h.released_at IS NULL)`
	leafCond = `NOT EXISTS (
		SELECT 1 FROM audit_events c WHERE c.parent_event_date = e.event_date AND c.parent_event_id = e.event_id)`
)

// Assess answers the three questions of a partition in one round trip.
func (r *retentionSession) Assess(ctx context.Context, p maintenance.Partition, today time.Time) (expired, live, held bool, err error) {
	ident := pgx.Identifier{p.Name}.Sanitize()
	err = r.conn.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM `+ident+` e WHERE e.event_date + e.retention_days < $1::date),
		EXISTS (SELECT 1 FROM `+ident+` e WHERE e.event_date + e.retention_days >= $1::date),
		EXISTS (SELECT 1 FROM `+ident+` e WHERE e.legal_hold) OR EXISTS (
			SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL
			AND EXISTS (SELECT 1 FROM `+ident+` e WHERE e.correlation_id = h.correlation_id))`,
		today).Scan(&expired, &live, &held)
	return expired, live, held, err
}

// Estimate counts a dry run's figures in one scan of the partition.
func (r *retentionSession) Estimate(ctx context.Context, p maintenance.Partition, today time.Time) (maintenance.RetentionEstimate, error) {
	ident := pgx.Identifier{p.Name}.Sanitize()
	var est maintenance.RetentionEstimate
	err := r.conn.QueryRow(ctx, named(`SELECT count(*),
		count(*) FILTER (WHERE `+expiredCond+`),
		count(*) FILTER (WHERE `+expiredCond+` AND `+unheldCond+`),
		count(*) FILTER (WHERE `+expiredCond+` AND `+unheldCond+` AND NOT EXISTS (
			SELECT 1 FROM audit_events c WHERE c.parent_event_date = e.event_date AND c.parent_event_id = e.event_id
			AND NOT (c.event_date + c.retention_days < $today::date AND NOT c.legal_hold AND NOT EXISTS (
				SELECT 1 FROM legal_holds h WHERE h.correlation_id = c.correlation_id AND h.released_at IS NULL))))
		FROM `+ident+` e`), today).Scan(&est.Total, &est.Expired, &est.Unheld, &est.Deletable)
	return est, err
}

// OutsideBlockers counts the rows of other months that reference p and
// must stay.
func (r *retentionSession) OutsideBlockers(ctx context.Context, p maintenance.Partition, today time.Time) (int64, error) {
	var n int64
	err := r.conn.QueryRow(ctx, named(`SELECT count(*) FROM audit_events e
		WHERE e.parent_event_id IS NOT NULL AND e.parent_event_date >= $from AND e.parent_event_date < $to
		AND NOT (e.event_date >= $from AND e.event_date < $to)
		AND NOT (`+expiredCond+` AND `+unheldCond+`)`), today, p.From, p.To).Scan(&n)
	return n, err
}

// References counts the rows, anywhere, whose parent is in p.
func (r *retentionSession) References(ctx context.Context, p maintenance.Partition) (int64, error) {
	var n int64
	err := r.conn.QueryRow(ctx, `SELECT count(*) FROM audit_events
		WHERE parent_event_id IS NOT NULL AND parent_event_date >= $1 AND parent_event_date < $2`, p.From, p.To).Scan(&n)
	return n, err
}

// named replaces the $today, $from and $to placeholders of the conditions by
// the positional parameters $1, $2 and $3.
func named(sql string) string { return placeholders.Replace(sql) }

// placeholders lists $today before $to: a Replacer tries its pairs in order.
var placeholders = strings.NewReplacer("$today", "$1", "$from", "$2", "$to", "$3")

// goneColumns are what tombstonesFrom needs of each deleted row.
const goneColumns = `correlation_id, chain_seq, event_hash, event_timestamp, event_type, event_category,
	event_outcome, severity, namespace, cluster_id`

// tombstonesFrom is the tail of a statement that deletes the rows in a CTE
// named gone (goneColumns): it records their links as tombstones, one range
// per run of consecutive chain_seq of a correlation, and subtracts them from
// the rollups (under shard -1, so that it never waits on a writer's
// rows of audit_rollup_hourly), in the transaction that deletes them.
// Tombstones keep last_hash as hex text; event_hash is bytea (00005).
const tombstonesFrom = `
minus_hourly AS (
	INSERT INTO audit_rollup_hourly AS r (bucket, event_type, event_category, event_outcome, severity, shard, events)
	SELECT date_trunc('hour', event_timestamp, 'UTC'), event_type, event_category, event_outcome, severity, -1, -count(*)
	FROM gone GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
	ON CONFLICT (bucket, event_type, event_category, event_outcome, severity, shard)
	DO UPDATE SET events = r.events + EXCLUDED.events
), minus_correlations AS (
	INSERT INTO audit_rollup_correlations AS r (bucket, correlation_id, namespace, cluster_id, events)
	SELECT date_trunc('hour', event_timestamp, 'UTC'), correlation_id, coalesce(namespace, ''), coalesce(cluster_id, ''), -count(*)
	FROM gone GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
	ON CONFLICT (bucket, correlation_id, namespace, cluster_id)
	DO UPDATE SET events = r.events + EXCLUDED.events
), ranked AS (
	SELECT correlation_id, chain_seq, event_hash,
	       chain_seq - row_number() OVER (PARTITION BY correlation_id ORDER BY chain_seq) AS island
	FROM gone
), tombs AS (
	INSERT INTO audit_chain_tombstones (correlation_id, from_seq, to_seq, last_hash)
	SELECT correlation_id, min(chain_seq), max(chain_seq), encode((array_agg(event_hash ORDER BY chain_seq DESC))[1], 'hex')
	FROM ranked GROUP BY correlation_id, island
)
SELECT count(*) FROM gone`

// Blocks reads the partition's heap size and its rows per block from the
// statistics (10 when there are none yet).
func (r *retentionSession) Blocks(ctx context.Context, p maintenance.Partition) (blocks, rowsPerBlock int64, err error) {
	err = r.conn.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint,
		CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN ceil(c.reltuples / c.relpages)::bigint ELSE 10 END
		FROM pg_class c WHERE c.oid = $1::regclass`, pgx.Identifier{p.Name}.Sanitize()).Scan(&blocks, &rowsPerBlock)
	return blocks, rowsPerBlock, err
}

// DeleteBlocks walks the heap by tuple id, so a batch reads only its
// blocks whatever the partition's size.
func (r *retentionSession) DeleteBlocks(ctx context.Context, p maintenance.Partition, today time.Time, from, to int64, timeout time.Duration) (int64, error) {
	sql := named(`WITH gone AS (
		DELETE FROM ` + pgx.Identifier{p.Name}.Sanitize() + ` e
		WHERE e.ctid >= $2::tid AND e.ctid < $3::tid
		  AND ` + expiredCond + ` AND ` + unheldCond + ` AND ` + leafCond + `
		RETURNING ` + goneColumns + `
	),` + tombstonesFrom)
	var n int64
	err := r.batchTx(ctx, timeout, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, sql, today, tid(from), tid(to)).Scan(&n)
	})
	return n, retentionErr(err)
}

// tid is the first tuple id of heap block n.
func tid(n int64) string { return "(" + strconv.FormatInt(n, 10) + ",0)" }

// batchTx runs one deletion batch: a transaction marked as retention (the
// DELETE trigger allows nothing else) with the batch's statement timeout.
func (r *retentionSession) batchTx(ctx context.Context, timeout time.Duration, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, r.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('datastorage.retention', 'on', true),
			set_config('statement_timeout', $1, true)`, strconv.FormatInt(timeout.Milliseconds(), 10)); err != nil {
			return err
		}
		return fn(tx)
	})
}

// ReferencingRows pages over the parent index; the child's own key breaks
// ties between siblings.
func (r *retentionSession) ReferencingRows(ctx context.Context, p maintenance.Partition, after maintenance.RowRef, limit int) ([]maintenance.RowRef, error) {
	rows, err := r.conn.Query(ctx, `SELECT parent_event_date, parent_event_id, event_date, event_id
		FROM audit_events
		WHERE parent_event_id IS NOT NULL AND parent_event_date >= $1 AND parent_event_date < $2
		  AND (parent_event_date, parent_event_id, event_date, event_id) > ($3, $4, $5, $6)
		ORDER BY parent_event_date, parent_event_id, event_date, event_id LIMIT $7`,
		p.From, p.To, after.ParentDate, after.ParentID, after.Date, after.ID, limit)
	if err != nil {
		return nil, err
	}
	var out []maintenance.RowRef
	var ref maintenance.RowRef
	_, err = pgx.ForEachRow(rows, []any{&ref.ParentDate, &ref.ParentID, &ref.Date, &ref.ID}, func() error {
		out = append(out, ref)
		return nil
	})
	return out, err
}

// DeleteIDs deletes by id within one month's partition, so the delete
// opens one partition only.
func (r *retentionSession) DeleteIDs(ctx context.Context, month, today time.Time, ids []uuid.UUID, timeout time.Duration) (int64, error) {
	sql := named(`WITH gone AS (
		DELETE FROM ` + pgx.Identifier{partitionName(month)}.Sanitize() + ` e
		WHERE e.event_id = ANY($2::uuid[])
		  AND ` + expiredCond + ` AND ` + unheldCond + ` AND ` + leafCond + `
		RETURNING ` + goneColumns + `
	),` + tombstonesFrom)
	var n int64
	err := r.batchTx(ctx, timeout, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, sql, today, ids).Scan(&n)
	})
	return n, retentionErr(err)
}

// LockHoldGate takes the gate exclusively for the session: PlaceHold takes
// it shared for its transaction.
func (r *retentionSession) LockHoldGate(ctx context.Context) (unlock func(), err error) {
	if _, err := r.conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(holdGateKey)); err != nil {
		return nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := r.conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(holdGateKey)); err != nil {
			_ = r.conn.Conn().Close(uctx)
		}
	}, nil
}

// Held reports whether any row of p is held, by flag or by an active hold.
func (r *retentionSession) Held(ctx context.Context, p maintenance.Partition) (bool, error) {
	var held bool
	err := r.conn.QueryRow(ctx, named(`SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{p.Name}.Sanitize()+
		` e WHERE NOT (`+unheldCond+`))`)).Scan(&held)
	return held, err
}

// Detach uses CONCURRENTLY, which takes no lock that stops reads or writes
// of the other months; it waits for the transactions using the table
// instead, at most timeout.
func (r *retentionSession) Detach(ctx context.Context, p maintenance.Partition, timeout time.Duration) error {
	if _, err := r.conn.Exec(ctx, `SET statement_timeout = `+strconv.FormatInt(timeout.Milliseconds(), 10)); err != nil {
		return err
	}
	_, err := r.conn.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+pgx.Identifier{p.Name}.Sanitize()+` CONCURRENTLY`)
	if _, rerr := r.conn.Exec(context.WithoutCancel(ctx), `RESET statement_timeout`); rerr != nil && err == nil {
		err = rerr
	}
	return retentionErr(err)
}

// DetachPending reports a detach that was cancelled in its second phase.
func (r *retentionSession) DetachPending(ctx context.Context, p maintenance.Partition) (bool, error) {
	var pending bool
	err := r.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_inherits
		WHERE inhrelid = $1::regclass AND inhdetachpending)`, pgx.Identifier{p.Name}.Sanitize()).Scan(&pending)
	return pending, err
}

// FinalizeDetach completes a detach left pending.
func (r *retentionSession) FinalizeDetach(ctx context.Context, p maintenance.Partition) error {
	_, err := r.conn.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+pgx.Identifier{p.Name}.Sanitize()+` FINALIZE`)
	return err
}

// DropDetached checks once more that every row is expired and unheld
// (nothing can change that now: the partition is no longer reachable through
// audit_events), then records its links as tombstones and drops it, in one
// transaction. If a row must stay, or on an error, the partition is attached
// again (cheap: the detach left a CHECK constraint that proves the bound),
// so no month is left outside audit_events.
func (r *retentionSession) DropDetached(ctx context.Context, p maintenance.Partition, today time.Time, attachTimeout time.Duration) (bool, int64, error) {
	ident := pgx.Identifier{p.Name}.Sanitize()
	var n int64
	var ok bool
	err := pgx.BeginFunc(ctx, r.conn, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, named(`SELECT NOT EXISTS (SELECT 1 FROM `+ident+` e
			WHERE NOT (`+expiredCond+`) OR NOT (`+unheldCond+`))`), today).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if err := tx.QueryRow(ctx, `WITH gone AS (SELECT `+goneColumns+` FROM `+ident+`),`+
			tombstonesFrom).Scan(&n); err != nil {
			return err
		}
		// The month's ids go with it (audit_event_ids, migration 00006);
		// row deletes free theirs by trigger, a DROP fires none.
		if _, err := tx.Exec(ctx, `DELETE FROM audit_event_ids WHERE event_date >= $1 AND event_date < $2`, p.From, p.To); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DROP TABLE `+ident)
		return err
	})
	if err == nil && ok {
		return true, n, nil
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attachTimeout)
	defer cancel()
	_, aerr := r.conn.Exec(actx, fmt.Sprintf(`ALTER TABLE audit_events ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')`,
		ident, p.From.Format(time.DateOnly), p.To.Format(time.DateOnly)))
	if err == nil {
		err = aerr
	} else if aerr != nil {
		err = fmt.Errorf("%w; attaching %s back failed too: %v (attach it by hand)", err, p.Name, aerr)
	}
	return false, 0, err
}

// retentionErr marks the two failures the policy works around: a
// statement cancelled by its timeout (57014) and a foreign key violation
// (23503, a child written meanwhile).
func retentionErr(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "57014":
		return fmt.Errorf("%w: %w", maintenance.ErrBatchTimeout, err)
	case "23503":
		return fmt.Errorf("%w: %w", maintenance.ErrStillReferenced, err)
	}
	return err
}
