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
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/catalog"
)

// The workflow catalog's tables (migration 00007). Every change of a version
// commits in one transaction with its audit event, which extends the
// workflow/<name> hash chain through the same chain code as the group
// commit (chain, queueLinked, queueRollups in events.go), so the catalog's
// trail is a ledger: no change without its event, no event without its
// change. Changes of one name are serialized by an advisory lock on the name
// (two-key form, a key space apart from the chains' one-key locks) taken
// before the chain's lock; nothing takes them in the other order, so the
// two never deadlock.

const workflowColumns = `workflow_id, workflow_name, version, version_key, is_prerelease, title, description,
	action_type, labels, detected_labels, custom_labels, label_terms, execution, parameters, %s,
	content_hash, status, coalesce(status_reason, ''), is_latest, created_at, created_by, updated_at, updated_by`

// selectWorkflow is the column list with or without content.
func selectWorkflow(content bool) string {
	if content {
		return fmt.Sprintf(workflowColumns, "content")
	}
	return fmt.Sprintf(workflowColumns, "''")
}

const (
	lockWorkflowNameSQL = `SELECT pg_advisory_xact_lock(7007, hashtext($1))`
	insertWorkflowSQL   = `
INSERT INTO workflow_versions (workflow_id, workflow_name, version, version_key, is_prerelease, title, description,
	action_type, labels, detected_labels, custom_labels, label_terms, execution, parameters, content,
	content_hash, status, created_at, created_by, updated_at, updated_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 'active', $17, $18, $17, $18)
ON CONFLICT DO NOTHING`
	// The latest version of a name: the highest-precedence active one,
	// stable versions before pre-releases (CONTRACT §15.1). Two statements,
	// unset before set, because the unique index on (name) WHERE is_latest
	// is checked row by row.
	bestWorkflowSQL = `SELECT workflow_id FROM workflow_versions WHERE workflow_name = $1 AND status = 'active'
ORDER BY is_prerelease, version_key DESC LIMIT 1`
	unsetLatestSQL = `UPDATE workflow_versions SET is_latest = false
WHERE workflow_name = $1 AND is_latest AND workflow_id IS DISTINCT FROM (` + bestWorkflowSQL + `)`
	setLatestSQL = `UPDATE workflow_versions SET is_latest = true
WHERE workflow_id = (` + bestWorkflowSQL + `) AND NOT is_latest`
	// A version that leaves active stops being latest in the same row
	// update (the CHECK on the table wants both together); recomputeLatest
	// then picks the next one.
	updateStatusSQL = `UPDATE workflow_versions SET status = $2, status_reason = $3, updated_at = $4, updated_by = $5,
	is_latest = is_latest AND $2 = 'active'
WHERE workflow_id = $1`
)

func scanWorkflow(row pgx.CollectableRow, extra ...any) (catalog.WorkflowRecord, error) {
	var r catalog.WorkflowRecord
	var id pgtype.UUID
	dest := []any{&id, &r.Name, &r.Version, &r.VersionKey, &r.Prerelease, &r.Title, &r.Description,
		&r.ActionType, &r.Labels, &r.DetectedLabels, &r.CustomLabels, &r.LabelTerms, &r.Execution, &r.Parameters,
		&r.Content, &r.ContentHash, &r.Status, &r.StatusReason, &r.IsLatest, &r.CreatedAt, &r.CreatedBy,
		&r.UpdatedAt, &r.UpdatedBy}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return r, err
	}
	r.ID = id.Bytes
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, nil
}

// getWorkflow reads one version on q; catalog.ErrNotFound when there is none.
func getWorkflow(ctx context.Context, q querier, id uuid.UUID, forUpdate bool) (catalog.WorkflowRecord, error) {
	sql := "SELECT " + selectWorkflow(true) + " FROM workflow_versions WHERE workflow_id = $1"
	if forUpdate {
		sql += " FOR UPDATE"
	}
	rows, _ := q.Query(ctx, sql, pgtype.UUID{Bytes: id, Valid: true})
	r, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (catalog.WorkflowRecord, error) { return scanWorkflow(row) })
	if errors.Is(err, pgx.ErrNoRows) {
		return r, catalog.ErrNotFound
	}
	return r, err
}

// GetWorkflow returns one version with its content; catalog.ErrNotFound when the id
// is unknown.
func (s *Store) GetWorkflow(ctx context.Context, id uuid.UUID) (_ catalog.WorkflowRecord, err error) {
	defer classifyErr(&err)
	r, err := getWorkflow(ctx, s.pool, id, false)
	if err != nil {
		return r, fmt.Errorf("store: get workflow %s: %w", id, err)
	}
	return r, nil
}

// RegisterWorkflow stores a new version (status active) with its audit
// event in one transaction, and makes it the name's latest version if it
// outranks the active ones. When the id is already stored it writes
// nothing and returns the stored record with catalog.ErrWorkflowExists: the caller
// decides between "unchanged" and "conflict".
//
// Three round trips: the insert, the new latest and the read back share
// the first with BEGIN and the name's lock; the chain's reads take the
// second; the event, the chain head, the rollups and COMMIT the third.
func (s *Store) RegisterWorkflow(ctx context.Context, rec catalog.WorkflowRecord, event *audit.Event) (_ catalog.WorkflowRecord, err error) {
	defer classifyErr(&err)
	var out catalog.WorkflowRecord
	var inserted bool
	err = s.catalogTx(ctx, rec.Name, []*audit.Event{event},
		func(b *pgx.Batch) {
			inserted, out = false, catalog.WorkflowRecord{}
			b.Queue(insertWorkflowSQL, pgtype.UUID{Bytes: rec.ID, Valid: true}, rec.Name, rec.Version,
				rec.VersionKey, rec.Prerelease, rec.Title, rec.Description, rec.ActionType, rec.Labels,
				rec.DetectedLabels, rec.CustomLabels, rec.LabelTerms, rec.Execution, rec.Parameters, rec.Content,
				rec.ContentHash, rec.CreatedAt, rec.CreatedBy).Exec(func(t pgconn.CommandTag) error {
				inserted = t.RowsAffected() == 1
				return nil
			})
			queueLatest(b, rec.Name)
			queueGetWorkflow(b, rec.ID, &out)
		},
		func(*pgx.Conn) (bool, error) {
			if !inserted {
				return false, catalog.ErrWorkflowExists
			}
			return true, nil
		})
	if errors.Is(err, catalog.ErrWorkflowExists) {
		return out, catalog.ErrWorkflowExists
	}
	if err != nil {
		return catalog.WorkflowRecord{}, fmt.Errorf("store: register workflow %s %s: %w", rec.Name, rec.Version, err)
	}
	return out, nil
}

// ChangeWorkflowStatus changes a version's status with its audit event in
// one transaction and moves is_latest as needed. decide sees the version
// locked and current: it returns the change and its event, or an error that
// aborts the transaction and is returned as is (an invalid transition, say).
// catalog.ErrNotFound when the id is unknown.
func (s *Store) ChangeWorkflowStatus(ctx context.Context, id uuid.UUID,
	decide func(current catalog.WorkflowRecord) (catalog.StatusChange, *audit.Event, error)) (_ catalog.WorkflowRecord, err error) {
	defer classifyErr(&err)
	var name string
	err = s.pool.QueryRow(ctx, `SELECT workflow_name FROM workflow_versions WHERE workflow_id = $1`,
		pgtype.UUID{Bytes: id, Valid: true}).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.WorkflowRecord{}, fmt.Errorf("store: change workflow %s: %w", id, catalog.ErrNotFound)
	}
	if err != nil {
		return catalog.WorkflowRecord{}, fmt.Errorf("store: change workflow %s: %w", id, err)
	}
	var cur, out catalog.WorkflowRecord
	events := make([]*audit.Event, 1)
	var decideErr error
	err = s.catalogTx(ctx, name, events,
		func(b *pgx.Batch) {
			cur = catalog.WorkflowRecord{}
			b.Queue("SELECT "+selectWorkflow(true)+" FROM workflow_versions WHERE workflow_id = $1 FOR UPDATE",
				pgtype.UUID{Bytes: id, Valid: true}).Query(func(rows pgx.Rows) error {
				r, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (catalog.WorkflowRecord, error) { return scanWorkflow(row) })
				cur = r
				return err
			})
		},
		func(conn *pgx.Conn) (bool, error) {
			change, ev, err := decide(cur)
			if err != nil {
				decideErr = err
				return false, err
			}
			events[0] = ev
			b := &pgx.Batch{}
			b.Queue(updateStatusSQL, pgtype.UUID{Bytes: id, Valid: true}, change.Status, change.Reason, change.At, change.By)
			queueLatest(b, name)
			queueGetWorkflow(b, id, &out)
			return true, conn.SendBatch(ctx, b).Close()
		})
	if decideErr != nil {
		return catalog.WorkflowRecord{}, decideErr
	}
	if err != nil {
		return catalog.WorkflowRecord{}, fmt.Errorf("store: change workflow %s: %w", id, err)
	}
	return out, nil
}

// queueLatest queues the recomputation of a name's latest version.
func queueLatest(b *pgx.Batch, name string) {
	b.Queue(unsetLatestSQL, name)
	b.Queue(setLatestSQL, name)
}

// queueGetWorkflow queues the read of one version (with content) into out.
func queueGetWorkflow(b *pgx.Batch, id uuid.UUID, out *catalog.WorkflowRecord) {
	b.Queue("SELECT "+selectWorkflow(true)+" FROM workflow_versions WHERE workflow_id = $1",
		pgtype.UUID{Bytes: id, Valid: true}).Query(func(rows pgx.Rows) error {
		r, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (catalog.WorkflowRecord, error) { return scanWorkflow(row) })
		*out = r
		return err
	})
}

// catalogTx runs a catalog change in one transaction that holds the name's
// lock. first queues the change's first statements behind BEGIN and the
// lock (one round trip); then change may run more and reports whether it
// wrote: if so, events are appended to their hash chains (the chain code
// of the group commit) and the transaction commits with them, else it is
// rolled back and change's error returned. A month without a partition, a
// deadlock or a serialization failure retries the whole transaction.
func (s *Store) catalogTx(ctx context.Context, name string, events []*audit.Event,
	first func(*pgx.Batch), change func(*pgx.Conn) (bool, error)) error {
	var err error
	for range maxInsertAttempts {
		var fresh []*audit.Event
		fresh, err = s.catalogAttempt(ctx, name, events, first, change)
		switch {
		case err == nil:
			s.recent.add(fresh, time.Now())
			return nil
		case isMissingPartition(err):
			if _, perr := s.ensureMonths(ctx, monthsOf(events)); perr != nil {
				return perr
			}
		case isRetryable(err), errors.Is(err, errChainRace):
		default:
			return err
		}
	}
	return err
}

func (s *Store) catalogAttempt(ctx context.Context, name string, events []*audit.Event,
	first func(*pgx.Batch), change func(*pgx.Conn) (bool, error)) (fresh []*audit.Event, err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer pc.Release()
	conn := pc.Conn()
	defer func() {
		if err != nil {
			rollback(conn)
		}
	}()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(lockWorkflowNameSQL, name)
	first(b)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	wrote, err := change(conn)
	if err != nil {
		return nil, err
	}
	if !wrote {
		rollback(conn)
		return nil, nil
	}
	// The events last: the chain lock and the rollup rows are held from
	// here to COMMIT only.
	fresh, heads, err := s.chain(ctx, conn, events, make([][]byte, len(events)), false)
	if err != nil {
		return nil, err
	}
	b = &pgx.Batch{}
	var tag, commit pgconn.CommandTag
	if err := s.queueLinked(b, fresh, heads, &tag); err != nil {
		return nil, err
	}
	defer s.queueRollups(b, fresh)()
	b.Queue("COMMIT").Exec(func(t pgconn.CommandTag) error {
		commit = t
		return nil
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		if isDuplicateEvent(err) {
			return nil, errChainRace
		}
		return nil, err
	}
	if commit.String() != "COMMIT" {
		return nil, fmt.Errorf("store: transaction rolled back at commit (%s)", commit)
	}
	return fresh, nil
}

// ListWorkflows returns up to f.Limit versions without content, ordered by
// name (byte order) then precedence descending.
func (s *Store) ListWorkflows(ctx context.Context, f catalog.WorkflowFilter) (_ []catalog.WorkflowRecord, err error) {
	defer classifyErr(&err)
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Name != "" {
		where = append(where, "workflow_name = "+arg(f.Name))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(f.Status))
	}
	if f.ActionType != "" {
		where = append(where, "action_type = "+arg(f.ActionType))
	}
	if f.SignalType != "" {
		where = append(where, "label_terms @> ARRAY["+arg("signal_type="+strings.ToLower(f.SignalType))+"]")
	}
	if f.LatestOnly {
		where = append(where, "is_latest")
	}
	if f.After != nil {
		n, k := arg(f.After.Name), arg(f.After.VersionKey)
		where = append(where, fmt.Sprintf(`(workflow_name > %[1]s OR (workflow_name = %[1]s AND version_key < %[2]s))`, n, k))
	}
	sql := "SELECT " + selectWorkflow(false) + " FROM workflow_versions"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += ` ORDER BY workflow_name, version_key DESC LIMIT ` + arg(f.Limit)
	rows, _ := s.pool.Query(ctx, sql, args...)
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (catalog.WorkflowRecord, error) { return scanWorkflow(row) })
	if err != nil {
		return nil, fmt.Errorf("store: list workflows: %w", err)
	}
	return recs, nil
}

// SearchWorkflows returns the latest versions that pass the candidate
// filter, without content, each with its TextRank: ts_rank_cd with
// normalisation 32 (rank/(rank+1)), which maps PostgreSQL's unbounded rank
// onto 0..1 while keeping its order. One query, driven by the partial GIN
// index on label_terms.
func (s *Store) SearchWorkflows(ctx context.Context, q catalog.SearchQuery) (_ []catalog.WorkflowRecord, err error) {
	defer classifyErr(&err)
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{"is_latest", "label_terms @> " + arg(q.Require) + "::text[]"}
	for _, any := range q.AnyOf {
		where = append(where, "label_terms && "+arg(any)+"::text[]")
	}
	if q.ActionType != "" {
		where = append(where, "action_type = "+arg(q.ActionType))
	}
	for k, v := range q.Bools {
		where = append(where, fmt.Sprintf("coalesce(detected_labels->%s, to_jsonb(%s::boolean)) = to_jsonb(%[2]s::boolean)", arg(k), arg(v)))
	}
	for k, v := range q.Named {
		where = append(where, fmt.Sprintf("coalesce(detected_labels->>%s, '*') IN ('*', %s)", arg(k), arg(v)))
	}
	rank := "0::float8"
	if q.Text != "" {
		rank = "ts_rank_cd(search_vector, plainto_tsquery('english', " + arg(q.Text) + "), 32)::float8"
	}
	sql := "SELECT " + selectWorkflow(false) + ", " + rank + " FROM workflow_versions WHERE " + strings.Join(where, " AND ")
	rows, _ := s.pool.Query(ctx, sql, args...)
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (catalog.WorkflowRecord, error) {
		var rank float64
		r, err := scanWorkflow(row, &rank)
		r.TextRank = rank
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: search workflows: %w", err)
	}
	return recs, nil
}

// InsertDiscovery records a search answer, in one round trip and without
// waiting for the WAL flush (synchronous_commit off for this transaction
// only): a search must not pay an fsync for a record that only lets a
// later validate answer. What a crash of PostgreSQL can lose is the last
// few hundred milliseconds of discoveries; validate then answers 404 (the
// caller searches again, never a false "valid"), and the search's audit
// event, which goes through the durable write path, still says what was
// shown.
func (s *Store) InsertDiscovery(ctx context.Context, d catalog.Discovery) (err error) {
	defer classifyErr(&err)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(`INSERT INTO workflow_discoveries (discovery_id, created_at, request, offered) VALUES ($1, $2, $3, $4)`,
		pgtype.UUID{Bytes: d.ID, Valid: true}, d.CreatedAt, d.Request, pgUUIDs(d.Offered))
	var commit pgconn.CommandTag
	b.Queue("COMMIT").Exec(func(t pgconn.CommandTag) error {
		commit = t
		return nil
	})
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: record discovery: %w", err)
	}
	defer conn.Release()
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		rollback(conn.Conn())
		return fmt.Errorf("store: record discovery: %w", err)
	}
	if commit.String() != "COMMIT" {
		return fmt.Errorf("store: record discovery: transaction rolled back at commit (%s)", commit)
	}
	return nil
}

// GetDiscovery returns a discovery recorded at or after notBefore;
// catalog.ErrNotFound for an unknown or older one.
func (s *Store) GetDiscovery(ctx context.Context, id uuid.UUID, notBefore time.Time) (_ catalog.Discovery, err error) {
	defer classifyErr(&err)
	d := catalog.Discovery{ID: id}
	var offered []pgtype.UUID
	err = s.pool.QueryRow(ctx, `SELECT created_at, request, offered FROM workflow_discoveries WHERE discovery_id = $1 AND created_at >= $2`,
		pgtype.UUID{Bytes: id, Valid: true}, notBefore).Scan(&d.CreatedAt, &d.Request, &offered)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("store: discovery %s: %w", id, catalog.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("store: discovery %s: %w", id, err)
	}
	for _, o := range offered {
		d.Offered = append(d.Offered, o.Bytes)
	}
	return d, nil
}

// discoverySweepKey is the transaction advisory lock one discovery sweep
// holds: every replica runs the sweeper, and without it N replicas would
// delete the same rows at once, each waiting on the others' row locks.
const discoverySweepKey = 0x6473_6469_7363 // "dsdisc"

// DeleteDiscoveriesBefore deletes the discoveries recorded before t and
// returns how many it deleted. While another replica's sweep runs it does
// nothing and returns 0: that sweep deletes the same rows.
func (s *Store) DeleteDiscoveriesBefore(ctx context.Context, t time.Time) (_ int64, err error) {
	defer classifyErr(&err)
	var n int64
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(discoverySweepKey)).Scan(&mine); err != nil || !mine {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM workflow_discoveries WHERE created_at < $1`, t)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: delete discoveries: %w", err)
	}
	return n, nil
}
