package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/internal/audit"
)

// Window is a closed interval of event_timestamp. Every aggregation is
// bounded by one, and it also bounds event_date so whole months are pruned.
type Window struct {
	From, To time.Time
}

// where returns the window's conditions starting at parameter $n.
func (w Window) where(b *sqlBuilder) {
	b.where("event_timestamp >= "+b.arg(w.From), "event_timestamp <= "+b.arg(w.To),
		"event_date >= "+b.arg(audit.DateOf(w.From).Std())+"::date",
		"event_date <= "+b.arg(audit.DateOf(w.To).Std())+"::date")
}

// OutcomeCounts are the events of a selection by outcome.
type OutcomeCounts struct {
	Successes, Failures, Pending int64
}

// SuccessFilter selects the events of a success rate: exactly one field is set.
type SuccessFilter struct {
	EventType, EventCategory, WorkflowID string
}

// CountOutcomes counts the events in w matching f by outcome.
func (s *Store) CountOutcomes(ctx context.Context, w Window, f SuccessFilter) (OutcomeCounts, error) {
	var b sqlBuilder
	w.where(&b)
	b.eq("event_type", f.EventType)
	b.eq("event_category", f.EventCategory)
	if f.WorkflowID != "" {
		b.where("event_data ->> 'workflow_id' = " + b.arg(f.WorkflowID))
	}
	var c OutcomeCounts
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE event_outcome = 'success'),
		       count(*) FILTER (WHERE event_outcome = 'failure'),
		       count(*) FILTER (WHERE event_outcome = 'pending')
		FROM audit_events`+b.whereClause(), b.args...).Scan(&c.Successes, &c.Failures, &c.Pending)
	if err != nil {
		return c, fmt.Errorf("store: count outcomes: %w", err)
	}
	return c, nil
}

// NamespaceCount is one row of the by-namespace aggregation.
type NamespaceCount struct {
	Namespace    string `json:"namespace"`
	Remediations int64  `json:"remediations"`
	Events       int64  `json:"events"`
}

// CountByNamespace counts remediations (distinct correlation ids) and events
// per namespace in w, most remediations first. Events without a namespace are
// left out.
func (s *Store) CountByNamespace(ctx context.Context, w Window) ([]NamespaceCount, error) {
	var b sqlBuilder
	w.where(&b)
	b.where("namespace IS NOT NULL")
	rows, err := s.pool.Query(ctx, `
		SELECT namespace, count(DISTINCT correlation_id), count(*)
		FROM audit_events`+b.whereClause()+`
		GROUP BY namespace
		ORDER BY 2 DESC, 3 DESC, 1`, b.args...)
	if err != nil {
		return nil, fmt.Errorf("store: count by namespace: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NamespaceCount])
	if err != nil {
		return nil, fmt.Errorf("store: count by namespace: %w", err)
	}
	return out, nil
}

// TrendPoint is one bucket of the trend aggregation.
type TrendPoint struct {
	Bucket   time.Time
	Count    int64
	Failures int64
}

// Trend counts events and failures per bucket ("hour" or "day") of w, with a
// point for every bucket, empty ones included.
func (s *Store) Trend(ctx context.Context, w Window, interval string) ([]TrendPoint, error) {
	if interval != "hour" && interval != "day" {
		return nil, fmt.Errorf("store: trend: unknown interval %q", interval)
	}
	var b sqlBuilder
	from, to := b.arg(w.From), b.arg(w.To)
	step := "'1 " + interval + "'::interval"
	// The buckets come from generate_series, so an empty bucket is a row
	// with zeros rather than a gap the client has to fill.
	sql := `
		WITH buckets AS (
			SELECT generate_series(date_trunc('` + interval + `', ` + from + `::timestamptz),
			                       date_trunc('` + interval + `', ` + to + `::timestamptz), ` + step + `) AS bucket
		), counts AS (
			SELECT date_trunc('` + interval + `', event_timestamp) AS bucket,
			       count(*) AS n,
			       count(*) FILTER (WHERE event_outcome = 'failure') AS failures
			FROM audit_events
			WHERE event_timestamp >= ` + from + ` AND event_timestamp <= ` + to + `
			  AND event_date >= ` + b.arg(audit.DateOf(w.From).Std()) + `::date
			  AND event_date <= ` + b.arg(audit.DateOf(w.To).Std()) + `::date
			GROUP BY 1
		)
		SELECT b.bucket, coalesce(c.n, 0), coalesce(c.failures, 0)
		FROM buckets b LEFT JOIN counts c USING (bucket)
		ORDER BY b.bucket`
	rows, err := s.pool.Query(ctx, sql, b.args...)
	if err != nil {
		return nil, fmt.Errorf("store: trend: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[TrendPoint])
	if err != nil {
		return nil, fmt.Errorf("store: trend: %w", err)
	}
	return out, nil
}

// GroupColumns are the columns a counts aggregation may group by.
var GroupColumns = []string{"event_category", "event_type", "event_outcome", "severity", "namespace", "cluster_id"}

// Group is one group of a counts aggregation: the values of the grouped
// columns (nil for NULL) and how many events have them.
type Group struct {
	Keys  []*string
	Count int64
}

// maxGroups bounds a counts answer; high-cardinality groupings (event_type ×
// namespace × cluster) are cut, largest groups first.
const maxGroups = 1000

// CountGroups counts the events in w grouped by the given columns (each one of
// GroupColumns), largest groups first.
func (s *Store) CountGroups(ctx context.Context, w Window, columns []string) ([]Group, error) {
	for _, c := range columns {
		if !slices.Contains(GroupColumns, c) {
			return nil, fmt.Errorf("store: count groups: unknown column %q", c)
		}
	}
	var b sqlBuilder
	w.where(&b)
	cols := strings.Join(columns, ", ")
	rows, err := s.pool.Query(ctx, `
		SELECT `+cols+`, count(*) FROM audit_events`+b.whereClause()+`
		GROUP BY `+cols+` ORDER BY count(*) DESC, `+cols+` LIMIT `+fmt.Sprint(maxGroups), b.args...)
	if err != nil {
		return nil, fmt.Errorf("store: count groups: %w", err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		texts := make([]pgtype.Text, len(columns))
		dst := make([]any, 0, len(columns)+1)
		for i := range texts {
			dst = append(dst, &texts[i])
		}
		var g Group
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
func (s *Store) CorrelationEvents(ctx context.Context, correlationID string, limit int) ([]audit.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM audit_events
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
