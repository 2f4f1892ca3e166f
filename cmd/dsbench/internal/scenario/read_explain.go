package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
)

// readEventColumns is the store's select list of every list and timeline
// query.
var readEventColumns = store.EventColumns()

// readExplains EXPLAINs (ANALYZE, BUFFERS) the statements the server runs
// for each timed request shape: the list statements written as
// internal/store/read.go writes them (the WHERE clauses kept in step by hand), the
// aggregations exactly as the store sends them, with the benchmark's values
// as parameters.
func readExplains(ctx context.Context, conn *pgx.Conn, corr string, cur query.Cursor) []readExplain {
	now := time.Now().UTC()
	week := now.Add(-7 * 24 * time.Hour)
	day := func(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }
	var lastTS time.Time
	_ = conn.QueryRow(ctx, `SELECT max(event_timestamp) FROM audit_events`).Scan(&lastTS)
	hourFrom := lastTS.Add(-72 * time.Hour).Truncate(time.Hour)
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
	// The aggregations are EXPLAINed as the store sends them: a store
	// with a tracer runs each one, and the statement it sent is replayed
	// under EXPLAIN.
	rec := &lastStatement{}
	ds, err := store.Open(ctx, conn.Config().ConnString(), store.Options{Tracer: rec})
	if err == nil {
		defer ds.Close()
		w := query.Window{From: week, To: now}
		for _, a := range []struct {
			name string
			run  func() error
		}{
			{"success-rate event_type", func() error {
				_, err := ds.CountOutcomes(ctx, w, query.SuccessFilter{EventType: "aiagent.llm.response"})
				return err
			}},
			{"success-rate event_category", func() error {
				_, err := ds.CountOutcomes(ctx, w, query.SuccessFilter{EventCategory: "workflowexecution"})
				return err
			}},
			{"success-rate workflow_id", func() error {
				_, err := ds.CountOutcomes(ctx, w, query.SuccessFilter{WorkflowID: "wf-007"})
				return err
			}},
			{"by-namespace", func() error { _, err := ds.CountByNamespace(ctx, w); return err }},
			{"by-severity", func() error { _, err := ds.CountGroups(ctx, w, []string{"severity"}); return err }},
			{"trend 7d / day", func() error { _, err := ds.Trend(ctx, w, "day"); return err }},
			{"trend 7d / hour", func() error { _, err := ds.Trend(ctx, w, "hour"); return err }},
			{"counts event_category,event_outcome", func() error {
				_, err := ds.CountGroups(ctx, w, []string{"event_category", "event_outcome"})
				return err
			}},
		} {
			if err := a.run(); err != nil {
				harness.Logf("  %s: %v", a.name, err)
				continue
			}
			shapes = append(shapes, struct {
				name, sql string
				args      []any
			}{a.name, rec.sql, rec.args})
		}
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
		harness.Logf("  explained %s", s.name)
		out = append(out, ex)
	}
	return out
}

// lastStatement is a pgx tracer that keeps the last statement sent.
type lastStatement struct {
	sql  string
	args []any
}

func (l *lastStatement) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.sql, l.args = d.SQL, d.Args
	return ctx
}

func (l *lastStatement) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
