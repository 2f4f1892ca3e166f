package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Retention (docs/integrity.md). An event expires when
// event_date + retention_days is before today (UTC): it was kept for at
// least retention_days whole days. Held events never expire: a row is held
// when its legal_hold flag is set or its correlation has an active hold.
//
// A month's partition is dropped (DETACH … CONCURRENTLY, then DROP) when it
// is over, every row in it is expired and none is held. PostgreSQL refuses to
// detach a partition while any row — in another month or in the same one —
// references one of its rows through the parent foreign key, so the rows that
// reference the month (those whose parent_event_date falls in it) are deleted
// first, leaves first, but only when they are expired and unheld themselves.
// If one of them must stay (not expired yet, held, or a parent of a row that
// stays), the month is not dropped: its expired, unreferenced rows are deleted
// one by one instead, and the rest waits for a later run.
//
// Any other month with expired rows (some held, some not expired yet) loses
// its expired, unheld rows that no remaining row references, in batches.
// A parent is therefore never deleted before its children.
//
// Every removed link is recorded in audit_chain_tombstones in the same
// transaction, so verify-chain tells retention from tampering.

// retentionLeaderKey is the session advisory lock that makes one replica
// run retention at a time.
const retentionLeaderKey = 0x6473_7265_746e // "dsretn"

// RetentionOptions tune one retention run.
type RetentionOptions struct {
	// DryRun reports what would be deleted without deleting anything.
	DryRun bool
	// BatchSize is the number of rows one DELETE statement aims at; it
	// halves after a statement timeout and grows back after successes.
	// 0 means 5000.
	BatchSize int
	// BatchTimeout is the statement timeout of one batch; 0 means 30 s.
	BatchTimeout time.Duration
	// DetachTimeout bounds detaching one partition, which waits for the
	// transactions that use the table (a long export, for one); 0 means 10 min.
	DetachTimeout time.Duration
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// RetentionReport says what a run did, or (dry run) would do.
type RetentionReport struct {
	// Skipped is true when another replica holds the retention lock; nothing
	// else is set then.
	Skipped bool
	DryRun  bool
	// Today is the UTC date the run judged expiry against.
	Today time.Time
	// HoldsSwept is the number of events flagged as held because their
	// correlation was put under hold after they were written.
	HoldsSwept int64
	// EventsDeleted counts the events deleted, including those of dropped
	// partitions; in a dry run, the events that would be.
	EventsDeleted int64
	// PartitionsDropped names the partitions dropped (or that would be).
	PartitionsDropped []string
	// Partitions has one entry per partition that had expired events.
	Partitions []PartitionRetention
}

// Partition actions of a retention run.
const (
	RetentionDrop   = "drop"   // the whole partition goes
	RetentionDelete = "delete" // expired, unheld rows go one by one
)

// PartitionRetention is what a run did to one partition.
type PartitionRetention struct {
	Name   string
	Action string
	// Expired counts the partition's expired rows (dry run).
	Expired int64
	// Held counts the partition's expired rows kept because they are held
	// (dry run).
	Held int64
	// Deleted counts the rows deleted (or, dry run, that would be).
	Deleted int64
	Dropped bool
	// Note explains a partition kept in part.
	Note string
}

type retentionRun struct {
	s      *Store
	conn   *pgxpool.Conn
	opts   RetentionOptions
	log    *slog.Logger
	today  time.Time
	report *RetentionReport
	batch  int // current batch size in rows; shrinks after timeouts
}

// RunRetention runs retention once. It returns a report with Skipped set,
// and no error, when another replica is running it.
func (s *Store) RunRetention(ctx context.Context, opts RetentionOptions) (_ RetentionReport, err error) {
	defer classifyErr(&err)
	if opts.BatchSize <= 0 {
		opts.BatchSize = 5000
	}
	if opts.BatchTimeout <= 0 {
		opts.BatchTimeout = 30 * time.Second
	}
	if opts.DetachTimeout <= 0 {
		opts.DetachTimeout = 10 * time.Minute
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	report := RetentionReport{DryRun: opts.DryRun}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return report, fmt.Errorf("store: retention: %w", err)
	}
	defer conn.Release()
	var leader bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(retentionLeaderKey)).Scan(&leader); err != nil {
		return report, fmt.Errorf("store: retention: %w", err)
	}
	if !leader {
		return RetentionReport{Skipped: true, DryRun: opts.DryRun}, nil
	}
	defer func() {
		// Unlock on a context that outlives a cancelled run; if even that
		// fails, the connection is closed and the lock goes with it.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(retentionLeaderKey)); err != nil {
			_ = conn.Conn().Close(uctx)
		}
	}()
	r := &retentionRun{s: s, conn: conn, opts: opts, log: log, report: &report, batch: opts.BatchSize}
	err = r.run(ctx)
	if err != nil {
		return report, fmt.Errorf("store: retention: %w", err)
	}
	return report, nil
}

// partitionRef is one of audit_events' monthly partitions.
type partitionRef struct {
	Partition
	detachPending bool
}

func (r *retentionRun) run(ctx context.Context) error {
	if err := r.conn.QueryRow(ctx, `SELECT (now() AT TIME ZONE 'UTC')::date`).Scan(&r.today); err != nil {
		return err
	}
	r.report.Today = r.today
	parts, err := r.partitions(ctx)
	if err != nil {
		return err
	}
	if err := r.warnDetached(ctx); err != nil {
		return err
	}
	if !r.opts.DryRun {
		if r.report.HoldsSwept, err = sweepHolds(ctx, r.conn); err != nil {
			return err
		}
		for _, p := range parts {
			if p.detachPending {
				if err := r.finishDetach(ctx, p.Partition); err != nil {
					return err
				}
			}
		}
	}
	for _, p := range parts {
		if p.detachPending {
			continue
		}
		// A row expires at the earliest two days after its month starts
		// (event_date + 1 day < today).
		if !p.From.Before(r.today.AddDate(0, 0, -1)) {
			continue
		}
		if err := r.partition(ctx, p.Partition); err != nil {
			return fmt.Errorf("partition %s: %w", p.Name, err)
		}
	}
	return nil
}

// partitions lists audit_events' monthly partitions, oldest first, with
// those a crashed run left half-detached.
func (r *retentionRun) partitions(ctx context.Context) ([]partitionRef, error) {
	rows, err := r.conn.Query(ctx, `
		SELECT c.relname, i.inhdetachpending
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass
		ORDER BY c.relname`)
	if err != nil {
		return nil, err
	}
	var out []partitionRef
	var name string
	var pending bool
	_, err = pgx.ForEachRow(rows, []any{&name, &pending}, func() error {
		var y, m int
		if _, err := fmt.Sscanf(name, "audit_events_y%04dm%02d", &y, &m); err != nil {
			return nil // not one of ours
		}
		from := time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
		out = append(out, partitionRef{Partition{Name: name, From: from, To: from.AddDate(0, 1, 0)}, pending})
		return nil
	})
	return out, err
}

// warnDetached logs the tables that look like monthly partitions but are
// not attached: a month an operator detached (to archive it), or one a
// crash left between detach and drop. Retention leaves them alone.
func (r *retentionRun) warnDetached(ctx context.Context) error {
	rows, err := r.conn.Query(ctx, `SELECT c.relname FROM pg_class c
		WHERE c.relkind = 'r' AND NOT c.relispartition AND c.relname ~ '^audit_events_y[0-9]{4}m[0-9]{2}$'
		  AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'audit_events'::regclass)`)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, n := range names {
		r.log.Warn("a monthly table is not attached to audit_events: its events are invisible to the service; "+
			"attach it back (ALTER TABLE audit_events ATTACH PARTITION …) or drop it", "table", n)
	}
	return nil
}

// Conditions on a row e, with $today a parameter named by the caller.
const (
	expiredCond = `e.event_date + e.retention_days < $today::date`
	unheldCond  = `NOT e.legal_hold AND NOT EXISTS (
		SELECT 1 FROM legal_holds h WHERE h.correlation_id = e.correlation_id AND h.released_at IS NULL)`
	leafCond = `NOT EXISTS (
		SELECT 1 FROM audit_events c WHERE c.parent_event_date = e.event_date AND c.parent_event_id = e.event_id)`
)

// partition applies retention to one partition.
func (r *retentionRun) partition(ctx context.Context, p Partition) error {
	ident := pgx.Identifier{p.Name}.Sanitize()
	var expired, live, held bool
	err := r.conn.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM `+ident+` e WHERE e.event_date + e.retention_days < $1::date),
		EXISTS (SELECT 1 FROM `+ident+` e WHERE e.event_date + e.retention_days >= $1::date),
		EXISTS (SELECT 1 FROM `+ident+` e WHERE e.legal_hold) OR EXISTS (
			SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL
			AND EXISTS (SELECT 1 FROM `+ident+` e WHERE e.correlation_id = h.correlation_id))`,
		r.today).Scan(&expired, &live, &held)
	if err != nil {
		return err
	}
	if !expired {
		return nil
	}
	pr := PartitionRetention{Name: p.Name, Action: RetentionDelete}
	droppable := !live && !held && !p.To.After(r.today)
	if r.opts.DryRun {
		if err := r.dryRun(ctx, p, &pr, droppable); err != nil {
			return err
		}
		r.report.Partitions = append(r.report.Partitions, pr)
		r.report.EventsDeleted += pr.Deleted
		if pr.Dropped {
			r.report.PartitionsDropped = append(r.report.PartitionsDropped, p.Name)
		}
		return nil
	}
	if droppable {
		pr.Action = RetentionDrop
		dropped, note, err := r.dropPartition(ctx, p, &pr)
		if err != nil {
			return err
		}
		if dropped {
			r.report.Partitions = append(r.report.Partitions, pr)
			r.report.PartitionsDropped = append(r.report.PartitionsDropped, p.Name)
			return nil
		}
		pr.Note = note
	}
	n, err := r.deleteRows(ctx, p)
	pr.Deleted += n
	r.report.EventsDeleted += n
	r.report.Partitions = append(r.report.Partitions, pr)
	if err != nil {
		return err
	}
	if pr.Deleted > 0 {
		r.log.Info("retention deleted expired events", "partition", p.Name, "events", pr.Deleted, "note", pr.Note)
	}
	return nil
}

// dryRun fills pr with what a real run would do, without writing.
func (r *retentionRun) dryRun(ctx context.Context, p Partition, pr *PartitionRetention, droppable bool) error {
	ident := pgx.Identifier{p.Name}.Sanitize()
	// An estimate: a row whose children all go is counted, though a
	// grandchild that stays would keep its parent, and so it, too.
	var total, unheld, deletable int64
	err := r.conn.QueryRow(ctx, named(`SELECT count(*),
		count(*) FILTER (WHERE `+expiredCond+`),
		count(*) FILTER (WHERE `+expiredCond+` AND `+unheldCond+`),
		count(*) FILTER (WHERE `+expiredCond+` AND `+unheldCond+` AND NOT EXISTS (
			SELECT 1 FROM audit_events c WHERE c.parent_event_date = e.event_date AND c.parent_event_id = e.event_id
			AND NOT (c.event_date + c.retention_days < $today::date AND NOT c.legal_hold AND NOT EXISTS (
				SELECT 1 FROM legal_holds h WHERE h.correlation_id = c.correlation_id AND h.released_at IS NULL))))
		FROM `+ident+` e`), r.today).Scan(&total, &pr.Expired, &unheld, &deletable)
	if err != nil {
		return err
	}
	pr.Held = pr.Expired - unheld
	if droppable {
		// Rows of other months that reference this one and cannot go.
		var blockers int64
		err := r.conn.QueryRow(ctx, named(`SELECT count(*) FROM audit_events e
			WHERE e.parent_event_id IS NOT NULL AND e.parent_event_date >= $from AND e.parent_event_date < $to
			AND NOT (e.event_date >= $from AND e.event_date < $to)
			AND NOT (`+expiredCond+` AND `+unheldCond+`)`), r.today, p.From, p.To).Scan(&blockers)
		if err != nil {
			return err
		}
		if blockers == 0 {
			pr.Action, pr.Dropped, pr.Deleted = RetentionDrop, true, total
			return nil
		}
		pr.Note = fmt.Sprintf("not dropped: %d event(s) of other months that must stay reference it", blockers)
	}
	pr.Deleted = deletable
	var notes []string
	if pr.Note != "" {
		notes = append(notes, pr.Note)
	}
	if pr.Held > 0 {
		notes = append(notes, fmt.Sprintf("%d expired event(s) kept under legal hold", pr.Held))
	}
	if n := unheld - deletable; n > 0 {
		notes = append(notes, fmt.Sprintf("%d expired event(s) kept as parents of events that stay", n))
	}
	pr.Note = strings.Join(notes, "; ")
	return nil
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

// deleteRows deletes the partition's expired, unheld rows that nothing
// references, walking it a block range at a time; it repeats while a pass
// deletes something, since a parent becomes deletable once its children are
// gone. It returns the number of rows deleted.
func (r *retentionRun) deleteRows(ctx context.Context, p Partition) (int64, error) {
	ident := pgx.Identifier{p.Name}.Sanitize()
	sql := named(`WITH gone AS (
		DELETE FROM ` + ident + ` e
		WHERE e.ctid >= $2::tid AND e.ctid < $3::tid
		  AND ` + expiredCond + ` AND ` + unheldCond + ` AND ` + leafCond + `
		RETURNING ` + goneColumns + `
	),` + tombstonesFrom)
	var total int64
	for {
		var pages, rowsPerPage int64
		err := r.conn.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint,
			CASE WHEN c.relpages > 0 AND c.reltuples > 0 THEN ceil(c.reltuples / c.relpages)::bigint ELSE 10 END
			FROM pg_class c WHERE c.oid = $1::regclass`, ident).Scan(&pages, &rowsPerPage)
		if err != nil {
			return total, err
		}
		var pass int64
		for start := int64(0); start < pages; {
			span := max(1, int64(r.batch)/max(1, rowsPerPage))
			from, to := tid(start), tid(start+span)
			var n int64
			err := r.batchTx(ctx, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, sql, r.today, from, to).Scan(&n)
			})
			switch {
			case err == nil:
				pass += n
				start += span
				r.batch = min(r.batch*2, r.opts.BatchSize)
			case isTimeout(err) && span > 1:
				r.batch = max(1, r.batch/2)
				r.log.Warn("retention batch timed out; shrinking it", "partition", p.Name, "batch", r.batch)
			case isTimeout(err) || isForeignKey(err):
				// One block range that cannot be done now (a child was
				// written meanwhile, or it is too slow even alone): skip it
				// this run.
				r.log.Warn("retention skipped a block range", "partition", p.Name, "from", from, "error", err)
				start += span
			default:
				return total + pass, err
			}
		}
		total += pass
		if pass == 0 {
			return total, nil
		}
	}
}

// tid is the first tuple id of heap block n.
func tid(n int64) string { return "(" + strconv.FormatInt(n, 10) + ",0)" }

// batchTx runs one deletion batch: a transaction marked as retention (the
// DELETE trigger allows nothing else) with the batch's statement timeout.
func (r *retentionRun) batchTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, r.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('datastorage.retention', 'on', true),
			set_config('statement_timeout', $1, true)`, strconv.FormatInt(r.opts.BatchTimeout.Milliseconds(), 10)); err != nil {
			return err
		}
		return fn(tx)
	})
}

// dropPartition removes a partition whose rows are all expired and unheld:
// first the rows that reference it, then the partition itself. It returns
// false and why when the partition has to stay.
func (r *retentionRun) dropPartition(ctx context.Context, p Partition, pr *PartitionRetention) (bool, string, error) {
	n, err := r.deleteReferencing(ctx, p)
	pr.Deleted += n
	r.report.EventsDeleted += n
	if err != nil {
		return false, "", err
	}
	var blockers int64
	if err := r.conn.QueryRow(ctx, `SELECT count(*) FROM audit_events
		WHERE parent_event_id IS NOT NULL AND parent_event_date >= $1 AND parent_event_date < $2`, p.From, p.To).Scan(&blockers); err != nil {
		return false, "", err
	}
	if blockers > 0 {
		return false, fmt.Sprintf("not dropped: %d event(s) that must stay still reference it", blockers), nil
	}

	// The gate keeps legal holds out from the last check to the drop.
	if _, err := r.conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(holdGateKey)); err != nil {
		return false, "", err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := r.conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(holdGateKey)); err != nil {
			_ = r.conn.Conn().Close(uctx)
		}
	}()
	ident := pgx.Identifier{p.Name}.Sanitize()
	var held bool
	if err := r.conn.QueryRow(ctx, named(`SELECT EXISTS (SELECT 1 FROM `+ident+` e WHERE NOT (`+unheldCond+`))`)).Scan(&held); err != nil {
		return false, "", err
	}
	if held {
		return false, "not dropped: a legal hold was placed meanwhile", nil
	}
	// CONCURRENTLY takes no lock that stops reads or writes of the other
	// months; it waits for the transactions using the table instead.
	if _, err := r.conn.Exec(ctx, `SET statement_timeout = `+strconv.FormatInt(r.opts.DetachTimeout.Milliseconds(), 10)); err != nil {
		return false, "", err
	}
	_, err = r.conn.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+ident+` CONCURRENTLY`)
	if _, rerr := r.conn.Exec(context.WithoutCancel(ctx), `RESET statement_timeout`); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		if isForeignKey(err) {
			// A row referencing the month was written meanwhile.
			return false, "not dropped: an event referencing it was written meanwhile", nil
		}
		if !isTimeout(err) {
			return false, "", err
		}
		// Cancelled while waiting for the transactions using the table. If
		// that was in the second phase, the partition is left "detach
		// pending" (invisible to new queries): finish it now, or the next
		// run will.
		var pending bool
		if qerr := r.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_inherits
			WHERE inhrelid = $1::regclass AND inhdetachpending)`, ident).Scan(&pending); qerr != nil {
			return false, "", qerr
		}
		if !pending {
			return false, "not dropped: detaching timed out waiting for long transactions; next run retries", nil
		}
		if _, err := r.conn.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+ident+` FINALIZE`); err != nil {
			return false, "", fmt.Errorf("finish detaching %s (the next run retries): %w", p.Name, err)
		}
	}
	dropped, n, err := r.dropDetached(ctx, p)
	if err != nil || !dropped {
		return false, "not dropped: rows written meanwhile must stay", err
	}
	pr.Deleted += n
	pr.Dropped = true
	r.report.EventsDeleted += n
	r.log.Info("retention dropped a partition", "partition", p.Name, "events", n)
	return true, "", nil
}

// dropDetached drops a partition that was just detached, recording its
// links as tombstones in the same transaction, after checking once more
// that every row is expired and unheld (nothing can change it now: it is no
// longer reachable through audit_events). If a row must stay, the partition
// is attached again.
func (r *retentionRun) dropDetached(ctx context.Context, p Partition) (bool, int64, error) {
	ident := pgx.Identifier{p.Name}.Sanitize()
	var n int64
	var ok bool
	err := pgx.BeginFunc(ctx, r.conn, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, named(`SELECT NOT EXISTS (SELECT 1 FROM `+ident+` e
			WHERE NOT (`+expiredCond+`) OR NOT (`+unheldCond+`))`), r.today).Scan(&ok); err != nil {
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
	// Attach it back (cheap: the detach left a CHECK constraint that
	// proves the partition bound), also after an error, so no month is left
	// outside audit_events.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.DetachTimeout)
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

// finishDetach completes a detach that a crashed or cancelled run left
// pending, then drops the partition or attaches it back.
func (r *retentionRun) finishDetach(ctx context.Context, p Partition) error {
	ident := pgx.Identifier{p.Name}.Sanitize()
	if _, err := r.conn.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+ident+` FINALIZE`); err != nil {
		return fmt.Errorf("finish detaching %s: %w", p.Name, err)
	}
	dropped, n, err := r.dropDetached(ctx, p)
	if err != nil {
		return fmt.Errorf("drop %s: %w", p.Name, err)
	}
	if dropped {
		r.report.EventsDeleted += n
		r.report.PartitionsDropped = append(r.report.PartitionsDropped, p.Name)
		r.report.Partitions = append(r.report.Partitions, PartitionRetention{Name: p.Name, Action: RetentionDrop, Deleted: n, Dropped: true})
	}
	return nil
}

// deleteReferencing deletes, leaves first, the expired and unheld rows
// whose parent is in partition p, wherever they are, so that p can be
// detached. Rows that must stay are left; the caller then finds p still
// referenced.
func (r *retentionRun) deleteReferencing(ctx context.Context, p Partition) (int64, error) {
	var total int64
	for {
		var pass int64
		// Keyset over the parent index; the child's own key breaks ties
		// between siblings.
		afterPDate, afterPID, afterDate, afterID := p.From, uuid.Nil, time.Time{}, uuid.Nil
		for {
			rows, err := r.conn.Query(ctx, `SELECT parent_event_date, parent_event_id, event_date, event_id
				FROM audit_events
				WHERE parent_event_id IS NOT NULL AND parent_event_date >= $1 AND parent_event_date < $2
				  AND (parent_event_date, parent_event_id, event_date, event_id) > ($3, $4, $5, $6)
				ORDER BY parent_event_date, parent_event_id, event_date, event_id LIMIT $7`,
				p.From, p.To, afterPDate, afterPID, afterDate, afterID, r.batch)
			if err != nil {
				return total + pass, err
			}
			byMonth := map[time.Time][]uuid.UUID{}
			var months []time.Time
			var pdate, date time.Time
			var pid, id uuid.UUID
			count := 0
			if _, err := pgx.ForEachRow(rows, []any{&pdate, &pid, &date, &id}, func() error {
				m := monthStart(date)
				if _, ok := byMonth[m]; !ok {
					months = append(months, m)
				}
				byMonth[m] = append(byMonth[m], id)
				afterPDate, afterPID, afterDate, afterID = pdate, pid, date, id
				count++
				return nil
			}); err != nil {
				return total + pass, err
			}
			for _, m := range months {
				n, err := r.deleteIDs(ctx, partitionName(m), byMonth[m])
				if err != nil {
					return total + pass, err
				}
				pass += n
			}
			if count < r.batch {
				break
			}
		}
		total += pass
		if pass == 0 {
			return total, nil
		}
	}
}

// deleteIDs deletes those of the given rows of one partition that are
// expired, unheld and unreferenced.
func (r *retentionRun) deleteIDs(ctx context.Context, partition string, ids []uuid.UUID) (int64, error) {
	sql := named(`WITH gone AS (
		DELETE FROM ` + pgx.Identifier{partition}.Sanitize() + ` e
		WHERE e.event_id = ANY($2::uuid[])
		  AND ` + expiredCond + ` AND ` + unheldCond + ` AND ` + leafCond + `
		RETURNING ` + goneColumns + `
	),` + tombstonesFrom)
	var n int64
	err := r.batchTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, sql, r.today, ids).Scan(&n)
	})
	if isTimeout(err) || isForeignKey(err) {
		r.log.Warn("retention skipped a batch of referencing events", "partition", partition, "error", err)
		return 0, nil
	}
	return n, err
}

// isTimeout reports a statement cancelled by statement_timeout.
func isTimeout(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57014"
}

// isForeignKey reports a foreign key violation.
func isForeignKey(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
