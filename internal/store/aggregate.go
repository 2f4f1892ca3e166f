package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
)

// where returns the window's conditions starting at parameter $n.
func windowWhere(b *sqlBuilder, w query.Window) {
	b.where("event_timestamp >= "+b.arg(w.From), "event_timestamp <= "+b.arg(w.To),
		"event_date >= "+b.arg(audit.DateOf(w.From).Std())+"::date",
		"event_date <= "+b.arg(audit.DateOf(w.To).Std())+"::date")
}

// Aggregations read the rollups (rollup.go) for the whole UTC hours of their
// window and audit_events only for the partial hours at its edges: a 7-day
// window costs some 170 hours × keys rollup rows and at most two hours of
// events, however many events the week holds.

// hours returns the whole UTC hours [from, to) inside w; ok is false when
// there is none. w.To is inclusive at microsecond precision.
func windowHours(w query.Window) (from, to time.Time, ok bool) {
	from = w.From.UTC().Truncate(time.Hour)
	if from.Before(w.From) {
		from = from.Add(time.Hour)
	}
	to = w.To.Add(time.Microsecond).UTC().Truncate(time.Hour)
	return from, to, from.Before(to)
}

// spanConds bounds event_timestamp to from…to (the operators say which ends
// are open) and event_date to the days those can fall on.
func spanConds(b *sqlBuilder, from time.Time, fromOp string, to time.Time, toOp string) []string {
	lastDay := to
	if toOp == "<" {
		lastDay = to.Add(-time.Microsecond)
	}
	return []string{"event_timestamp " + fromOp + " " + b.arg(from), "event_timestamp " + toOp + " " + b.arg(to),
		"event_date >= " + b.arg(audit.DateOf(from).Std()) + "::date",
		"event_date <= " + b.arg(audit.DateOf(lastDay).Std()) + "::date"}
}

// rolledUp is the FROM item of an aggregation over w: the rollup table's
// rows of the whole hours (selecting rollupCols where rollupConds hold),
// and audit_events' rows of the edges (selecting rawCols where rawConds
// hold). Both selections must yield the same columns; the count column is
// conventionally n (the rollup's events, 1 per raw row).
func rolledUp(b *sqlBuilder, w query.Window, table, rollupCols string, rollupConds []string, rawCols string, rawConds []string) string {
	var parts []string
	raw := func(span []string) {
		parts = append(parts, "SELECT "+rawCols+" FROM audit_events WHERE "+strings.Join(append(span, rawConds...), " AND "))
	}
	from, to, ok := windowHours(w)
	if !ok {
		raw(spanConds(b, w.From, ">=", w.To, "<="))
	} else {
		conds := append([]string{"bucket >= " + b.arg(from), "bucket < " + b.arg(to)}, rollupConds...)
		parts = append(parts, "SELECT "+rollupCols+" FROM "+table+" WHERE "+strings.Join(conds, " AND "))
		if w.From.Before(from) {
			raw(spanConds(b, w.From, ">=", from, "<"))
		}
		if !to.After(w.To) {
			raw(spanConds(b, to, ">=", w.To, "<="))
		}
	}
	return "(" + strings.Join(parts, "\n\t\tUNION ALL ") + ") AS s"
}

// CountOutcomes counts the events in w matching f by outcome.
func (s *Store) CountOutcomes(ctx context.Context, w query.Window, f query.SuccessFilter) (_ query.OutcomeCounts, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	var b sqlBuilder
	var from string
	if f.WorkflowID != "" {
		// workflow_id lives in event_data, which the rollups do not keep;
		// the partial index audit_events_workflow_idx serves it.
		windowWhere(&b, w)
		b.where("event_data ->> 'workflow_id' = " + b.arg(f.WorkflowID))
		from = "(SELECT event_outcome, 1 AS n FROM audit_events" + b.whereClause() + ") AS s"
	} else {
		var conds []string
		if f.EventType != "" {
			conds = append(conds, "event_type = "+b.arg(f.EventType))
		}
		if f.EventCategory != "" {
			conds = append(conds, "event_category = "+b.arg(f.EventCategory))
		}
		from = rolledUp(&b, w, "audit_rollup_hourly", "event_outcome, events AS n", conds, "event_outcome, 1 AS n", conds)
	}
	var c query.OutcomeCounts
	err = db.QueryRow(ctx, `
		SELECT coalesce(sum(n) FILTER (WHERE event_outcome = 'success'), 0)::bigint,
		       coalesce(sum(n) FILTER (WHERE event_outcome = 'failure'), 0)::bigint,
		       coalesce(sum(n) FILTER (WHERE event_outcome = 'pending'), 0)::bigint
		FROM `+from, b.args...).Scan(&c.Successes, &c.Failures, &c.Pending)
	if err != nil {
		return c, fmt.Errorf("store: count outcomes: %w", err)
	}
	return c, nil
}

// correlationsByKey is what the correlations counted (the rollup rows and
// the open cells, migration 00012), one row per key. The conditions of a
// rollup read on its key columns (the hours, the namespace) reach the
// tables below the grouping.
const correlationsByKey = `(SELECT bucket, correlation_id, namespace, cluster_id, sum(events) AS events
		FROM audit_rollup_correlations_all GROUP BY bucket, correlation_id, namespace, cluster_id) AS k`

// CountByNamespace counts remediations (distinct correlation ids) and events
// per namespace in w, most remediations first. Events without a namespace are
// left out.
func (s *Store) CountByNamespace(ctx context.Context, w query.Window) (_ []query.NamespaceCount, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	var b sqlBuilder
	// A correlation that retention took down to 0 events is no longer a
	// remediation of its hour. Its count may be in two rows (the rollup's
	// and its open cell, migration 00012), so it is summed by key first.
	from := rolledUp(&b, w, correlationsByKey,
		"namespace, correlation_id, events AS n", []string{"namespace <> ''", "events > 0"},
		"namespace, correlation_id, 1 AS n", []string{"namespace IS NOT NULL"})
	rows, err := db.Query(ctx, `
		SELECT namespace, count(DISTINCT correlation_id), sum(n)::bigint
		FROM `+from+`
		GROUP BY namespace
		ORDER BY 2 DESC, 3 DESC, 1`, b.args...)
	if err != nil {
		return nil, fmt.Errorf("store: count by namespace: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[query.NamespaceCount])
	if err != nil {
		return nil, fmt.Errorf("store: count by namespace: %w", err)
	}
	return out, nil
}

// Trend counts events and failures per bucket ("hour" or "day") of w, with a
// point for every bucket, empty ones included.
func (s *Store) Trend(ctx context.Context, w query.Window, interval string) (_ []query.TrendBucket, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	if interval != "hour" && interval != "day" {
		return nil, fmt.Errorf("store: trend: unknown interval %q", interval)
	}
	var b sqlBuilder
	first, last := b.arg(w.From), b.arg(w.To)
	from := rolledUp(&b, w, "audit_rollup_hourly", "bucket, event_outcome, events AS n", nil,
		"date_trunc('hour', event_timestamp, 'UTC') AS bucket, event_outcome, 1 AS n", nil)
	// The buckets come from generate_series, so an empty bucket is a row
	// with zeros rather than a gap the client has to fill. Sessions run in
	// UTC (Open), so days are UTC days.
	sql := `
		WITH buckets AS (
			SELECT generate_series(date_trunc('` + interval + `', ` + first + `::timestamptz),
			                       date_trunc('` + interval + `', ` + last + `::timestamptz), '1 ` + interval + `'::interval) AS bucket
		), counts AS (
			SELECT date_trunc('` + interval + `', bucket) AS bucket,
			       sum(n) AS n,
			       sum(n) FILTER (WHERE event_outcome = 'failure') AS failures
			FROM ` + from + `
			GROUP BY 1
		)
		SELECT b.bucket, coalesce(c.n, 0)::bigint, coalesce(c.failures, 0)::bigint
		FROM buckets b LEFT JOIN counts c USING (bucket)
		ORDER BY b.bucket`
	rows, err := db.Query(ctx, sql, b.args...)
	if err != nil {
		return nil, fmt.Errorf("store: trend: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[query.TrendBucket])
	if err != nil {
		return nil, fmt.Errorf("store: trend: %w", err)
	}
	return out, nil
}

// Which rollup serves a grouping: audit_rollup_hourly keeps the first four
// of query.GroupColumns, audit_rollup_correlations (with the open cells:
// audit_rollup_correlations_all) the last two. A grouping that
// mixes the two sets reads audit_events for the whole window.
var (
	hourlyColumns      = query.GroupColumns[:4]
	correlationColumns = query.GroupColumns[4:]
)

// maxGroups bounds a counts answer; high-cardinality groupings (event_type ×
// namespace × cluster) are cut, largest groups first.
const maxGroups = 1000

// CountGroups counts the events in w grouped by the given columns (each one of
// GroupColumns), largest groups first.
func (s *Store) CountGroups(ctx context.Context, w query.Window, columns []string) (_ []query.Group, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	for _, c := range columns {
		if !slices.Contains(query.GroupColumns, c) {
			return nil, fmt.Errorf("store: count groups: unknown column %q", c)
		}
	}
	within := func(set []string) bool {
		return !slices.ContainsFunc(columns, func(c string) bool { return !slices.Contains(set, c) })
	}
	var b sqlBuilder
	cols := strings.Join(columns, ", ")
	var from string
	switch {
	case within(hourlyColumns):
		from = rolledUp(&b, w, "audit_rollup_hourly", cols+", events AS n", nil, cols+", 1 AS n", nil)
	case within(correlationColumns):
		// The rollup keeps '' for no namespace or cluster; the answer has NULL.
		exprs := make([]string, len(columns))
		for i, c := range columns {
			exprs[i] = "nullif(" + c + ", '') AS " + c
		}
		from = rolledUp(&b, w, "audit_rollup_correlations_all", strings.Join(exprs, ", ")+", events AS n", nil,
			cols+", 1 AS n", nil)
	default:
		windowWhere(&b, w)
		from = "(SELECT " + cols + ", 1 AS n FROM audit_events" + b.whereClause() + ") AS s"
	}
	rows, err := db.Query(ctx, `
		SELECT `+cols+`, sum(n)::bigint FROM `+from+`
		GROUP BY `+cols+` HAVING sum(n) > 0
		ORDER BY sum(n) DESC, `+cols+` LIMIT `+fmt.Sprint(maxGroups), b.args...)
	if err != nil {
		return nil, fmt.Errorf("store: count groups: %w", err)
	}
	defer rows.Close()
	var out []query.Group
	for rows.Next() {
		texts := make([]pgtype.Text, len(columns))
		dst := make([]any, 0, len(columns)+1)
		for i := range texts {
			dst = append(dst, &texts[i])
		}
		var g query.Group
		dst = append(dst, &g.Count)
		if err := rows.Scan(dst...); err != nil {
			return nil, fmt.Errorf("store: count groups: %w", err)
		}
		for _, t := range texts {
			if t.Valid {
				v := t.String
				g.Keys = append(g.Keys, &v)
			} else {
				g.Keys = append(g.Keys, nil)
			}
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count groups: %w", err)
	}
	return out, nil
}

// CorrelationEvents returns up to limit events of one correlation in time
// order (chain order among equal timestamps).
func (s *Store) CorrelationEvents(ctx context.Context, correlationID string, limit int) (_ []audit.Event, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	rows, err := db.Query(ctx, `SELECT `+eventColumns+` FROM audit_events
		WHERE correlation_id = $1 ORDER BY event_timestamp, chain_seq LIMIT $2`, correlationID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: correlation events: %w", err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("store: correlation events: %w", err)
	}
	return events, nil
}

// CorrelationOutline is CorrelationEvents with only the columns a
// timeline's shape needs (event_id, event_date, event_timestamp,
// parent_event_id, event_outcome; the rest zero), so a timeline of
// thousands of large events is shaped without holding them (issue 18 item
// 6). Same order and limit.
func (s *Store) CorrelationOutline(ctx context.Context, correlationID string, limit int) (_ []audit.Event, err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	rows, err := db.Query(ctx, `SELECT event_id, event_date, event_timestamp, parent_event_id, event_outcome
		FROM audit_events WHERE correlation_id = $1 ORDER BY event_timestamp, chain_seq LIMIT $2`, correlationID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: correlation outline: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (audit.Event, error) {
		var e audit.Event
		var id, parent pgtype.UUID
		var date, ts time.Time
		if err := row.Scan(&id, &date, &ts, &parent, &e.Outcome); err != nil {
			return e, err
		}
		e.ID, e.Date, e.Timestamp = id.Bytes, audit.Date(date), audit.NewTime(ts)
		if parent.Valid {
			p := uuid.UUID(parent.Bytes)
			e.ParentID = &p
		}
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: correlation outline: %w", err)
	}
	return events, nil
}

// EachCorrelationEvent hands each the full rows of the events of
// correlationID with the given ids and dates between from and to, in no
// particular order. The *audit.Event is each's only while it runs.
func (s *Store) EachCorrelationEvent(ctx context.Context, correlationID string, ids []uuid.UUID, from, to time.Time,
	each func(*audit.Event) error) (err error) {
	defer classifyErr(&err)
	db := s.reads(ctx)
	defer db.done(&err)
	rows, err := db.Query(ctx, `SELECT `+eventColumns+` FROM audit_events
		WHERE correlation_id = $1 AND event_id = ANY($2) AND event_date BETWEEN $3 AND $4`,
		correlationID, pgUUIDs(ids), from, to)
	if err != nil {
		return fmt.Errorf("store: correlation events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return fmt.Errorf("store: correlation events: %w", err)
		}
		if err := each(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: correlation events: %w", err)
	}
	return nil
}
