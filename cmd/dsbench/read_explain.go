package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/query"
)

// readEventColumns mirrors internal/store's eventColumns (read.go), the
// select list of every list and timeline query.
const readEventColumns = `event_id, event_date, event_timestamp, version, event_type, event_category,
	event_action, event_outcome, correlation_id, event_data, actor_type, actor_id, actor_ip,
	resource_type, resource_id, parent_event_id, parent_event_date, namespace, cluster_id,
	severity, duration_ms, error_code, error_message, retention_days, is_sensitive,
	chain_seq, event_hash, previous_event_hash, hash_algorithm, legal_hold, legal_hold_reason,
	legal_hold_placed_by, legal_hold_placed_at, created_at`

// readExplains EXPLAINs (ANALYZE, BUFFERS) the statements the server runs
// for each timed request shape, written as internal/store/read.go and
// aggregate.go write them (kept in step by hand), with the benchmark's
// values as parameters.
func readExplains(ctx context.Context, conn *pgx.Conn, corr string, cur query.Cursor) []readExplain {
	now := time.Now().UTC()
	week := now.Add(-7 * 24 * time.Hour)
	day := func(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }
	var lastTS time.Time
	_ = conn.QueryRow(ctx, `SELECT max(event_timestamp) FROM audit_events`).Scan(&lastTS)
	hourFrom := lastTS.Add(-72 * time.Hour).Truncate(time.Hour)
	win := `event_timestamp >= $1 AND event_timestamp <= $2 AND event_date >= $3::date AND event_date <= $4::date`
	wargs := []any{week, now, day(week), day(now)}
	count := `SELECT count(*) FROM (SELECT 1 FROM audit_events%s LIMIT 10001) AS matches`
	shapes := []struct {
		name, sql string
		args      []any
	}{
		{"first page: list", `SELECT ` + readEventColumns + ` FROM audit_events ORDER BY event_timestamp DESC, event_id DESC LIMIT 51`, nil},
		{"first page: capped count (every page with has_more runs it)", fmt.Sprintf(count, ""), nil},
		{"cursor page: list", `SELECT ` + readEventColumns + ` FROM audit_events WHERE (event_timestamp, event_id) < ($1, $2) AND event_date <= $3::date
			ORDER BY event_timestamp DESC, event_id DESC LIMIT 51`, []any{cur.Timestamp, cur.ID, day(cur.Timestamp)}},
		{"offset 100,000: list", `SELECT ` + readEventColumns + ` FROM audit_events ORDER BY event_timestamp DESC, event_id DESC LIMIT 51 OFFSET 100000`, nil},
		{"timeline", `SELECT ` + readEventColumns + ` FROM audit_events WHERE correlation_id = $1 ORDER BY event_timestamp, chain_seq LIMIT $2`,
			[]any{corr, query.MaxTimelineEvents + 1}},
		{"event_type + 1 h: list", `SELECT ` + readEventColumns + ` FROM audit_events WHERE event_type = $1 AND event_timestamp >= $2 AND event_date >= $3::date
			AND event_timestamp <= $4 AND event_date <= $5::date ORDER BY event_timestamp DESC, event_id DESC LIMIT 101`,
			[]any{"aiagent.llm.response", hourFrom, day(hourFrom), hourFrom.Add(time.Hour), day(hourFrom.Add(time.Hour))}},
		{"event_type + 1 h: capped count", `SELECT count(*) FROM (SELECT 1 FROM audit_events WHERE event_type = $1 AND event_timestamp >= $2 AND event_date >= $3::date
			AND event_timestamp <= $4 AND event_date <= $5::date LIMIT 10001) AS matches`,
			[]any{"aiagent.llm.response", hourFrom, day(hourFrom), hourFrom.Add(time.Hour), day(hourFrom.Add(time.Hour))}},
	}
	outcomes := `SELECT count(*) FILTER (WHERE event_outcome = 'success'), count(*) FILTER (WHERE event_outcome = 'failure'),
		count(*) FILTER (WHERE event_outcome = 'pending') FROM audit_events WHERE ` + win
	trend := func(iv string) string {
		return `WITH buckets AS (SELECT generate_series(date_trunc('` + iv + `', $1::timestamptz), date_trunc('` + iv + `', $2::timestamptz), '1 ` + iv + `'::interval) AS bucket),
		counts AS (SELECT date_trunc('` + iv + `', event_timestamp) AS bucket, count(*) AS n, count(*) FILTER (WHERE event_outcome = 'failure') AS failures
			FROM audit_events WHERE ` + win + ` GROUP BY 1)
		SELECT b.bucket, coalesce(c.n, 0), coalesce(c.failures, 0) FROM buckets b LEFT JOIN counts c USING (bucket) ORDER BY b.bucket`
	}
	for _, a := range []struct {
		name, sql string
		extra     []any
	}{
		{"success-rate event_type", outcomes + ` AND event_type = $5`, []any{"aiagent.llm.response"}},
		{"success-rate event_category", outcomes + ` AND event_category = $5`, []any{"workflowexecution"}},
		{"success-rate workflow_id", outcomes + ` AND event_data ->> 'workflow_id' = $5`, []any{"wf-007"}},
		{"by-namespace", `SELECT namespace, count(DISTINCT correlation_id), count(*) FROM audit_events WHERE ` + win +
			` AND namespace IS NOT NULL GROUP BY namespace ORDER BY 2 DESC, 3 DESC, 1`, nil},
		{"by-severity", `SELECT severity, count(*) FROM audit_events WHERE ` + win + ` GROUP BY severity ORDER BY count(*) DESC, severity LIMIT 1000`, nil},
		{"trend 7d / day", trend("day"), nil},
		{"trend 7d / hour", trend("hour"), nil},
		{"counts event_category,event_outcome", `SELECT event_category, event_outcome, count(*) FROM audit_events WHERE ` + win +
			` GROUP BY event_category, event_outcome ORDER BY count(*) DESC, event_category, event_outcome LIMIT 1000`, nil},
	} {
		shapes = append(shapes, struct {
			name, sql string
			args      []any
		}{a.name, a.sql, append(append([]any{}, wargs...), a.extra...)})
	}
	var out []readExplain
	for _, s := range shapes {
		ex := readExplain{name: s.name, sql: strings.Join(strings.Fields(s.sql), " ")}
		rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+s.sql, s.args...)
		if err == nil {
			var lines []string
			lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
			ex.plan = strings.Join(lines, "\n")
		}
		if err != nil {
			ex.plan = "EXPLAIN failed: " + err.Error()
		}
		logf("  explained %s", s.name)
		out = append(out, ex)
	}
	return out
}
