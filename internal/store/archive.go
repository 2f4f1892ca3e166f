package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
)

// The statements of the archive job; the policy is internal/archive's.

// archiveLeaderKey is the session advisory lock that makes one replica run
// the archive job at a time.
const archiveLeaderKey = 0x6473_6172_6368 // "dsarch"

type archiveSession struct {
	conn *pgxpool.Conn
	// pool gives the month's read its other connections (readStreams);
	// nil reads with conn alone.
	pool *pgxpool.Pool
	// exported, tests only, runs when the month's read has exported its
	// snapshot and before the other streams take it.
	exported func(ctx context.Context)
	// rowByRow makes the drop delete the month's child rows with every
	// trigger firing even when it may skip them (deleteChildRows): the
	// tests' way to the path of a role without that privilege.
	rowByRow bool
}

// OpenArchive takes a connection and tries the archive leader lock on it.
func (s *Store) OpenArchive(ctx context.Context) (_ archive.Session, leader bool, err error) {
	defer classifyErr(&err)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: archive: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(archiveLeaderKey)).Scan(&leader); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("store: archive: %w", err)
	}
	if !leader {
		conn.Release()
		return nil, false, nil
	}
	// work_mem stays the server's: with 256MB the month's sort spilled as
	// much (it does not fit) and the sorted read of 1 M events took 24 s
	// against 12 s with the default 4MB, one run each on a quiet machine
	// (bench/results/archive-2026-12-07.md).
	return &archiveSession{conn: conn, pool: s.pool}, true, nil
}

// ArchiveRecords lists audit_archives in month order.
func (s *Store) ArchiveRecords(ctx context.Context) (_ []archive.Record, err error) {
	defer classifyErr(&err)
	rows, err := s.pool.Query(ctx, `SELECT month, status, target, manifest_key, manifest_sha256, events, bytes,
		events_digest, archived_at, dropped_at, restored_at, coalesce(watch_generation, 0)
		FROM audit_archives ORDER BY month`)
	if err != nil {
		return nil, fmt.Errorf("store: archive records: %w", err)
	}
	var out []archive.Record
	var r archive.Record
	_, err = pgx.ForEachRow(rows, []any{&r.Month, &r.Status, &r.Target, &r.ManifestKey, &r.ManifestSHA256,
		&r.Events, &r.Bytes, &r.EventsDigest, &r.ArchivedAt, &r.DroppedAt, &r.RestoredAt, &r.Watch}, func() error {
		r.Month = r.Month.UTC()
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: archive records: %w", err)
	}
	return out, nil
}

// Close unlocks on a context that outlives a cancelled run; if even that
// fails, the connection is closed and the lock goes with it.
func (a *archiveSession) Close(ctx context.Context) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := a.conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, int64(archiveLeaderKey)); err != nil {
		_ = a.conn.Conn().Close(uctx)
	}
	a.conn.Release()
}

func (a *archiveSession) Today(ctx context.Context) (time.Time, error) {
	var today time.Time
	err := a.conn.QueryRow(ctx, `SELECT (now() AT TIME ZONE 'UTC')::date`).Scan(&today)
	return today.UTC(), err
}

func (a *archiveSession) Months(ctx context.Context) ([]time.Time, error) {
	rows, err := a.conn.Query(ctx, `
		SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass AND NOT i.inhdetachpending ORDER BY c.relname`)
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, n := range names {
		var y, m int
		if _, err := fmt.Sscanf(n, "audit_events_y%04dm%02d", &y, &m); err != nil {
			continue
		}
		out = append(out, time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC))
	}
	return out, nil
}

// blockersSQL counts a month's held rows and the rows of other months
// that reference it ($1 = month start, $2 = next month). Every part is
// driven by an index, not by a scan of the month: held rows are the flagged
// ones (the partial index audit_events_held_idx) and the others of the
// correlations under an active hold (legal_holds_active_idx, then the
// correlation index); unheldCond over every row was a sequential scan of
// the partition, 8 s at 10 M events, run twice by the job
// (bench/results/archive.md).
func blockersSQL(month time.Time) string {
	ident := pgx.Identifier{partitionName(month)}.Sanitize()
	return `SELECT
		(SELECT count(*) FROM ` + ident + ` e WHERE e.legal_hold)
		+ (SELECT count(*) FROM legal_holds h JOIN ` + ident + ` e ON e.correlation_id = h.correlation_id
			WHERE h.released_at IS NULL AND NOT e.legal_hold),
		(SELECT count(*) FROM audit_events e WHERE e.parent_event_id IS NOT NULL
			AND e.parent_event_date >= $1 AND e.parent_event_date < $2
			AND NOT (e.event_date >= $1 AND e.event_date < $2))`
}

func (a *archiveSession) Blockers(ctx context.Context, month time.Time) (held, referenced int64, err error) {
	err = a.conn.QueryRow(ctx, blockersSQL(month), month, month.AddDate(0, 1, 0)).Scan(&held, &referenced)
	return held, referenced, err
}

// EachRow reads the partition in physical order with binary COPY, sorts
// it in the job (archivesort.go) and decodes the sorted rows straight into
// Parquet rows (archiverow.go).
func (a *archiveSession) EachRow(ctx context.Context, month time.Time, o archive.SortOptions, fn func(*archive.Row) error) error {
	sorters, err := a.readMonth(ctx, pgx.Identifier{partitionName(month)}.Sanitize(), o)
	defer func() {
		for _, s := range sorters {
			s.close()
		}
	}()
	if err != nil {
		return err
	}
	var (
		d   rowDecoder
		row archive.Row
	)
	decode := func(r *sortedRow) error {
		if err := d.decode(r.row, &row); err != nil {
			return err
		}
		return fn(&row)
	}
	if len(sorters) == 1 {
		return sorters[0].each(decode)
	}
	return mergeSorted(sorters, decode)
}

// snapshotID is what pg_export_snapshot returns; checked before it is
// spliced into SET TRANSACTION SNAPSHOT, which takes no parameter.
var snapshotID = regexp.MustCompile(`^[0-9A-Fa-f-]+$`)

// readMonth reads the partition table into sorters. A month that fits in
// one run is one COPY on the session's connection, sorted in memory.
// Larger, it is read by readStreams COPYs at once, each of a range of its
// pages on its own connection, all in one snapshot (exported by the first
// transaction, as pg_dump's parallel workers share one), so the rows are
// exactly those one statement would have read. Each stream sorts into its
// own sorter with its share of SortOptions.Memory, so the job's memory
// stays bounded as with one.
func (a *archiveSession) readMonth(ctx context.Context, table string, o archive.SortOptions) (_ []*rowSorter, err error) {
	limit := o.Memory
	if limit <= 0 {
		limit = defaultSortMemory
	}
	var size, block int64
	if err := a.conn.QueryRow(ctx, `SELECT pg_relation_size($1::regclass), current_setting('block_size')::bigint`,
		table).Scan(&size, &block); err != nil {
		return nil, err
	}
	if a.pool == nil || size <= limit {
		s := newRowSorter(o)
		return []*rowSorter{s}, readSorted(ctx, a.conn.Conn(), table, s)
	}
	conns := []*pgx.Conn{a.conn.Conn()}
	for range readStreams - 1 {
		c, err := a.pool.Acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("store: archive read: %w", err)
		}
		defer c.Release()
		conns = append(conns, c.Conn())
	}
	txs := make([]pgx.Tx, 0, len(conns))
	defer func() {
		// Read-only transactions: nothing to commit; ended on a context
		// that outlives a cancelled run.
		uctx := context.WithoutCancel(ctx)
		for _, tx := range txs {
			_ = tx.Rollback(uctx)
		}
	}()
	var snapshot string
	for i, c := range conns {
		tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("store: archive read: %w", err)
		}
		txs = append(txs, tx)
		if i == 0 {
			err = tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&snapshot)
			if err == nil && !snapshotID.MatchString(snapshot) {
				err = fmt.Errorf("snapshot id %q", snapshot)
			}
			if err == nil && a.exported != nil {
				a.exported(ctx)
			}
		} else {
			_, err = tx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+snapshot+`'`)
		}
		if err != nil {
			return nil, fmt.Errorf("store: archive read: %w", err)
		}
	}
	share := o
	share.Memory = max(limit/int64(len(conns)), 1)
	ranges := pageRanges(size/block+1, len(conns))
	sorters := make([]*rowSorter, len(conns))
	errs := make([]error, len(conns))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, c := range conns {
		sorters[i] = newRowSorter(share)
		wg.Go(func() {
			errs[i] = copySorted(rctx, c, `SELECT `+eventColumns+` FROM `+table+` WHERE `+ranges[i], sorters[i])
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return sorters, errors.Join(errs...)
}

// hashSumsSQL computes archive.Sums of a partition: a sequential scan and
// an aggregate, no sort and no row sent, so that comparing a month of
// millions of events with its archive costs one pass over the heap.
func hashSumsSQL(month time.Time) string {
	return `SELECT count(*), coalesce(sum(hi), 0)::text, coalesce(bit_xor(lo), 0) FROM (
		SELECT ('x' || encode(substr(event_hash, 1, 8), 'hex'))::bit(64)::bigint AS hi,
			('x' || encode(substr(event_hash, 9, 8), 'hex'))::bit(64)::bigint AS lo
		FROM ` + pgx.Identifier{partitionName(month)}.Sanitize() + `) AS h`
}

func hashSums(ctx context.Context, q querier, month time.Time) (archive.Sums, error) {
	var s archive.Sums
	err := q.QueryRow(ctx, hashSumsSQL(month)).Scan(&s.Count, &s.Sum, &s.Xor)
	return s, err
}

func (a *archiveSession) RollupTotals(ctx context.Context, month time.Time) ([]archive.RollupTotal, error) {
	rows, err := a.conn.Query(ctx, `SELECT event_type, event_category, event_outcome, severity, sum(events)::bigint
		FROM audit_rollup_hourly WHERE bucket >= $1 AND bucket < $2
		GROUP BY 1, 2, 3, 4 HAVING sum(events) <> 0 ORDER BY 1, 2, 3, 4`, month, month.AddDate(0, 1, 0))
	if err != nil {
		return nil, err
	}
	out := []archive.RollupTotal{}
	var t archive.RollupTotal
	_, err = pgx.ForEachRow(rows, []any{&t.EventType, &t.EventCategory, &t.EventOutcome, &t.Severity, &t.Events}, func() error {
		out = append(out, t)
		return nil
	})
	return out, err
}

func (a *archiveSession) SaveRecord(ctx context.Context, r archive.Record) error {
	_, err := a.conn.Exec(ctx, `INSERT INTO audit_archives (month, status, target, manifest_key, manifest_sha256,
			events, bytes, events_digest, archived_at, watch_generation)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (month) DO UPDATE SET status = EXCLUDED.status, target = EXCLUDED.target,
			manifest_key = EXCLUDED.manifest_key, manifest_sha256 = EXCLUDED.manifest_sha256,
			events = EXCLUDED.events, bytes = EXCLUDED.bytes, events_digest = EXCLUDED.events_digest,
			archived_at = EXCLUDED.archived_at, watch_generation = EXCLUDED.watch_generation,
			dropped_at = NULL, restored_at = NULL`,
		r.Month, r.Status, r.Target, r.ManifestKey, r.ManifestSHA256, r.Events, r.Bytes, r.EventsDigest, r.ArchivedAt,
		optWatch(r.Watch))
	return err
}

// watchTrigger names the triggers WatchMonth installs on a partition.
const watchTrigger = "audit_archive_watch"

// WatchMonth arms the watch on the month's partition (migration 00011) and
// returns its new generation. It must commit before the month is read for
// its files, and it does:
//
//   - CREATE TRIGGER takes SHARE ROW EXCLUSIVE on the partition, which
//     conflicts with the ROW EXCLUSIVE lock every writer of the partition
//     holds until it ends (an insert through audit_events takes it when it
//     routes its first row there). So it waits for the writers in flight,
//     and no writer can start on the partition until this commits. A
//     writer that ended before is committed (or rolled back) before the
//     read's snapshot, which is taken after this commits: the read sees it.
//   - A writer that takes the lock after the commit sees the new trigger
//     (taking a lock processes the catalog invalidations), so its row
//     trigger notes the month in audit_archive_writes in its own
//     transaction: a write that rolls back notes nothing, one that commits
//     is noted, whether it commits before the read's snapshot (then it is
//     in the files too: a false alarm, which costs the drop a full
//     comparison, never a wrong drop) or after it.
//   - The notes of earlier writes are deleted while no writer can add one,
//     and the new generation ties the files written next to this arming:
//     an archive recorded under another generation proves nothing by the
//     watch (a later run armed again, maybe without writing its files).
//
// ENABLE ALWAYS makes the triggers fire even for a session with
// session_replication_role = replica; TRUNCATE (which the append-only
// guard refuses anyway) is noted by a statement trigger. Writes to other
// months pay nothing: only this partition has the triggers, and they go
// with its DROP.
func (a *archiveSession) WatchMonth(ctx context.Context, month time.Time) (generation int64, err error) {
	ident := pgx.Identifier{partitionName(month)}.Sanitize()
	arg := "'" + month.Format("2006-01-02") + "'"
	err = pgx.BeginFunc(ctx, a.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`,
			strconv.Itoa(int((30 * time.Second).Milliseconds()))); err != nil {
			return err
		}
		for _, q := range []string{
			`CREATE OR REPLACE TRIGGER ` + watchTrigger + ` AFTER INSERT OR UPDATE OR DELETE ON ` + ident +
				` FOR EACH ROW EXECUTE FUNCTION audit_archive_note_write(` + arg + `)`,
			`CREATE OR REPLACE TRIGGER ` + watchTrigger + `_truncate AFTER TRUNCATE ON ` + ident +
				` FOR EACH STATEMENT EXECUTE FUNCTION audit_archive_note_write(` + arg + `)`,
			`ALTER TABLE ` + ident + ` ENABLE ALWAYS TRIGGER ` + watchTrigger,
			`ALTER TABLE ` + ident + ` ENABLE ALWAYS TRIGGER ` + watchTrigger + `_truncate`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_archive_writes WHERE month = $1`, month); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO audit_archive_watch (month, generation)
			VALUES ($1, nextval('audit_archive_watch_generation'))
			ON CONFLICT (month) DO UPDATE SET generation = EXCLUDED.generation
			RETURNING generation`, month).Scan(&generation)
	})
	if err != nil {
		return 0, fmt.Errorf("store: archive watch: %w", err)
	}
	return generation, nil
}

// watchSQL reads the watch of month $1 on its partition ($3): armed when
// generation $2 is the month's last arming and both triggers are still
// there and fire always (a trigger dropped or disabled could have missed a
// write); written when a write was noted since that arming.
const watchSQL = `SELECT
	EXISTS (SELECT 1 FROM audit_archive_watch WHERE month = $1 AND generation = $2)
	AND (SELECT count(*) FROM pg_trigger WHERE tgrelid = $3::regclass AND tgenabled = 'A'
		AND tgname IN ('` + watchTrigger + `', '` + watchTrigger + `_truncate')) = 2,
	EXISTS (SELECT 1 FROM audit_archive_writes WHERE month = $1)`

// optWatch stores generation 0 (no watch) as NULL.
func optWatch(g int64) *int64 {
	if g == 0 {
		return nil
	}
	return &g
}

// DropMonth holds the hold gate (no hold can be placed until commit) and a
// SHARE lock on the partition (no row can be written to it) while it
// proves the month is the one archived, so what is dropped is exactly what
// was verified. The proof is the watch of generation watch (WatchMonth):
// armed for these files and no write noted, the month is the one read for
// them; a write noted is ErrChanged, whatever it was (an insert, a delete,
// a hold placed and released: the files may differ from the rows in a
// column outside the hash, so no comparison of hashes could clear it).
// Only when the watch cannot speak (an archive written before it existed,
// a later arming, a trigger dropped or disabled) is the whole month
// compared with the files by check, the second read of PostgreSQL the
// watch saves. The statement that reads the watch runs after the LOCK
// returned, in READ COMMITTED: every writer of the partition has ended by
// then, and its note, if it committed, is visible.
//
// The detach is the plain one, not CONCURRENTLY, so that it commits or
// rolls back with the drop: it takes an ACCESS EXCLUSIVE lock on
// audit_events (waiting at most lock_timeout for it), held until the
// commit, so it comes last, after the deletes.
func (a *archiveSession) DropMonth(ctx context.Context, month time.Time, watch int64, check func(archive.Sums) error) (compared bool, err error) {
	ident := pgx.Identifier{partitionName(month)}.Sanitize()
	err = pgx.BeginTxFunc(ctx, a.conn, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1), set_config('lock_timeout', $2, true)`,
			int64(holdGateKey), strconv.Itoa(int((30 * time.Second).Milliseconds()))); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+ident+` IN SHARE MODE`); err != nil {
			return err
		}
		var held, refs int64
		if err := tx.QueryRow(ctx, blockersSQL(month), month, month.AddDate(0, 1, 0)).Scan(&held, &refs); err != nil {
			return err
		}
		if held > 0 || refs > 0 {
			return archive.ErrBlocked
		}
		armed, written := false, false
		if watch != 0 {
			if err := tx.QueryRow(ctx, watchSQL, month, watch, ident).Scan(&armed, &written); err != nil {
				return err
			}
		}
		switch {
		case armed && written:
			return fmt.Errorf("%w: a write to the month committed after its watch (generation %d) was armed, before the files were read or since: not dropping",
				archive.ErrChanged, watch)
		case !armed:
			compared = true
			sums, err := hashSums(ctx, tx, month)
			if err != nil {
				return err
			}
			if err := check(sums); err != nil {
				return err
			}
		}
		// The watch's triggers go now: the deletes below are the job's own.
		for _, q := range []string{`DROP TRIGGER IF EXISTS ` + watchTrigger + ` ON ` + ident,
			`DROP TRIGGER IF EXISTS ` + watchTrigger + `_truncate ON ` + ident} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		if err := deleteChildRows(ctx, tx, month, ident, a.rowByRow); err != nil {
			return err
		}
		// The month's ids go with it (audit_event_ids, migration 00006): a
		// DROP fires no row trigger. Before the detach, whose ACCESS
		// EXCLUSIVE lock on audit_events (every read and write of every
		// month waits for it) is held until the commit: this delete takes
		// seconds at millions of events, the detach and the drop do not.
		if _, err := tx.Exec(ctx, `DELETE FROM audit_event_ids WHERE event_date >= $1 AND event_date < $2`,
			month, month.AddDate(0, 1, 0)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+ident); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DROP TABLE `+ident); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_archive_writes WHERE month = $1`, month); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE audit_archives SET status = 'dropped', dropped_at = now() WHERE month = $1`, month)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("store: archive: month %s is not recorded", month.Format("2006-01"))
		}
		return err
	})
	return compared, err
}

// deleteChildRows deletes the month's rows that name a parent: they
// reference the partition, which PostgreSQL will not detach while they
// exist (migration 00009), even though they go with it.
//
// Row by row, each deleted row fires the append-only guard, the id
// release and, above all, the foreign key's check that no row references
// it, a query over every partition of audit_events: 64 µs per row, 6.4 s
// for 100,000 child rows where the rest of the drop took 0.3 s
// (bench/results/archive-2026-12-07d.md). With session_replication_role
// = replica none of them fires (3.3 µs per row), and none is needed here:
// the drop has checked holds and references under the hold gate and its
// lock, the guard's conditions; the ids of these rows are deleted with the
// month's below; and the detach still checks, as it always does, that no
// row of another month references the partition. The setting is the
// transaction's, for this statement only (audit_archives' trigger must
// fire after it). A role that may not set it (a superuser may, or a role
// granted SET ON PARAMETER session_replication_role) deletes them row by
// row, as before, by the guard's archive exception.
func deleteChildRows(ctx context.Context, tx pgx.Tx, month time.Time, ident string, rowByRow bool) error {
	if _, err := tx.Exec(ctx, `SELECT set_config('datastorage.archive', $1, true)`, month.Format("2006-01")); err != nil {
		return err
	}
	replica := false
	if !rowByRow {
		if err := tx.QueryRow(ctx, `SELECT has_parameter_privilege('session_replication_role', 'SET')`).Scan(&replica); err != nil {
			return err
		}
	}
	if replica {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+ident+` WHERE parent_event_id IS NOT NULL`); err != nil {
		return err
	}
	if replica {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = origin`); err != nil {
			return err
		}
	}
	return nil
}

// Restore copies the events into a temporary table first, so that events
// still in the partition (a month restored twice) are skipped by ON
// CONFLICT, and the foreign key of parents is checked once for the whole
// statement.
func (a *archiveSession) Restore(ctx context.Context, month time.Time, each func(yield func(*audit.Event) error) error) (int64, error) {
	// Partition creation takes its own transaction and lock; a month
	// restored into an empty partition that a later failure leaves
	// behind is harmless (an empty month).
	if _, err := ensureMonthsOn(ctx, a.conn, []time.Time{month}); err != nil {
		return 0, err
	}
	var n int64
	err := pgx.BeginFunc(ctx, a.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE archive_restore (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DROP`); err != nil {
			return err
		}
		src := &restoreRows{ch: make(chan *audit.Event), errc: make(chan error, 1)}
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			err := each(func(e *audit.Event) error {
				select {
				case src.ch <- e:
					return nil
				case <-pctx.Done():
					return pctx.Err()
				}
			})
			close(src.ch)
			src.errc <- err
		}()
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"archive_restore"}, restoreColumns, src); err != nil {
			cancel()
			for range src.ch {
			}
			if perr := <-src.errc; perr != nil && perr != context.Canceled {
				return perr
			}
			return err
		}
		if err := <-src.errc; err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO audit_events (`+restoreList+`) SELECT `+restoreList+` FROM archive_restore
			ON CONFLICT DO NOTHING`)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `INSERT INTO audit_event_ids (event_id, event_date)
			SELECT event_id, event_date FROM archive_restore ON CONFLICT DO NOTHING`); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE audit_archives SET status = 'restored', restored_at = now() WHERE month = $1`, month)
		return err
	})
	return n, err
}

// restoreColumns are insertColumns and the columns the write path leaves to
// their defaults, which a restore must bring back as they were.
var restoreColumns = append(slices.Clone(insertColumns),
	"legal_hold", "legal_hold_reason", "legal_hold_placed_by", "legal_hold_placed_at", "created_at")

var restoreList = strings.Join(restoreColumns, ", ")

// restoreRows feeds COPY from the events a producer goroutine sends.
type restoreRows struct {
	ch   chan *audit.Event
	errc chan error
	cur  *audit.Event
	err  error
}

func (r *restoreRows) Next() bool {
	e, ok := <-r.ch
	r.cur = e
	return ok
}

func (r *restoreRows) Values() ([]any, error) {
	one := eventRows{events: []*audit.Event{r.cur}, i: 1}
	v, err := one.Values()
	if err != nil {
		return nil, err
	}
	e := r.cur
	out := make([]any, 0, len(restoreColumns))
	out = append(out, v...)
	placed := pgtype.Timestamptz{}
	if e.HoldPlacedAt != nil {
		placed = pgtype.Timestamptz{Time: e.HoldPlacedAt.Std(), Valid: true}
	}
	return append(out, e.LegalHold, optText(e.HoldReason), optText(e.HoldPlacedBy), placed, e.CreatedAt.Std()), nil
}

func (r *restoreRows) Err() error { return r.err }
