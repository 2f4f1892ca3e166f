package scenario

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
)

// explainStmt is one hot-path statement, written as the store writes it.
type explainStmt struct {
	name  string
	sql   string
	args  []any
	write bool // EXPLAIN ANALYZE runs it: roll back
}

// explainRow is the EXPLAIN of one statement under one plan-cache mode.
type explainRow struct {
	stmt, mode  string
	planMS      float64 // median over the repetitions
	firstPlanMS float64 // the first execution (builds the generic plan)
	execMS      float64
	scanned     int // partitions whose scan ran
	removed     int // partitions pruned at executor start
	autoGeneric bool
}

const explainReps = 9

// explainSet EXPLAINs (ANALYZE) each hot-path statement through PREPARE and
// EXECUTE, as pgx runs them (named prepared statements), under
// plan_cache_mode force_custom_plan and force_generic_plan, and reports which
// one the default (auto) settles on.
func explainSet(ctx context.Context, e *harness.Env, loaded bool) ([]explainRow, error) {
	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	stmts, err := hotStatements(ctx, conn, loaded)
	if err != nil {
		return nil, err
	}
	var out []explainRow
	for si, st := range stmts {
		auto, err := autoPicksGeneric(ctx, conn, fmt.Sprintf("a%d", si), st)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
		for _, mode := range []string{"custom", "generic"} {
			row, err := explainOne(ctx, conn, fmt.Sprintf("p%d%s", si, mode[:1]), st, mode)
			if err != nil {
				return nil, fmt.Errorf("%s (%s): %w", st.name, mode, err)
			}
			row.autoGeneric = auto
			out = append(out, row)
		}
	}
	return out, nil
}

func hotStatements(ctx context.Context, conn *pgx.Conn, loaded bool) ([]explainStmt, error) {
	today := time.Now().UTC().Truncate(24 * time.Hour)
	ids := make([]uuid.UUID, 32)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	if loaded {
		rows, err := conn.Query(ctx, `SELECT event_id FROM audit_events WHERE event_date >= $1 LIMIT 32`, today.AddDate(0, 0, -1))
		if err != nil {
			return nil, err
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return nil, err
		}
		copy(ids, got)
	}
	gen := loadgen.NewGenerator(99, 1000, time.Now(), loadgen.SpreadRemediation)
	bodies := make([][]byte, 32)
	for i := range bodies {
		bodies[i] = gen.Body()
	}
	events, err := loadgen.DecodeEvents(bodies)
	if err != nil {
		return nil, err
	}
	corrs := make([]string, 32)
	for i := range corrs {
		corrs[i] = events[i].CorrelationID
	}
	loadgen.StampUnchained(events[:1], func(int) int64 { return 1 })
	ins, err := textColumns(events[:1])
	if err != nil {
		return nil, err
	}
	date := func(t time.Time) string { return t.Format(time.DateOnly) }
	hot := store.HotPathSQL()
	// The window a date-bounded parent lookup would use: the maximum event
	// age plus clock skew before the batch, through the batch's last date.
	return []explainStmt{
		{name: "insert (unnest), 1 row", sql: store.BatchInsertSQL(), args: ins, write: true},
		{name: "chain-head read, 32 correlations", sql: hot["chain heads"], args: []any{corrs}},
		{name: "stored-id check, 32 ids", sql: hot["stored ids"], args: []any{uuidText(ids), uuidText(ids), idDates(ids)}},
		{name: "parent lookup, 1 id, unbounded", sql: hot["parents, unbounded"], args: []any{uuidText(ids[:1])}},
		{name: "parent lookup, 1 id, 9-day bound", sql: hot["parents, bounded"],
			args: []any{uuidText(ids[:1]), date(today.AddDate(0, 0, -8)), date(today.AddDate(0, 0, 1)), uuidText(ids[:1]), idDates(ids[:1])}},
	}, nil
}

// textColumns is store.BatchInsertArgs with every array in a form the
// simple protocol can write as a literal (EXECUTE's arguments are literals).
func textColumns(events []*audit.Event) ([]any, error) {
	cols, err := store.BatchInsertArgs(events)
	if err != nil {
		return nil, err
	}
	dates := func(ts []time.Time) []string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = t.Format(time.DateOnly)
		}
		return out
	}
	stamps := func(ts []time.Time) []string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = t.Format(time.RFC3339Nano)
		}
		return out
	}
	data := cols[9].([][]byte)
	js := make([]string, len(data))
	for i, d := range data {
		js[i] = string(d)
	}
	ids := cols[0].([]pgtype.UUID)
	idText := make([]string, len(ids))
	for i, id := range ids {
		idText[i] = uuid.UUID(id.Bytes).String()
	}
	cols[0] = idText
	cols[1] = dates(cols[1].([]time.Time))
	cols[2] = stamps(cols[2].([]time.Time))
	cols[9] = js
	for _, c := range []int{26, 27} { // bytea: its hex input form
		hs := cols[c].([][]byte)
		lits := make([]string, len(hs))
		for i, h := range hs {
			lits[i] = `\x` + hex.EncodeToString(h)
		}
		cols[c] = lits
	}
	cols[15] = make([]*string, len(events)) // parent ids: all NULL
	cols[16] = make([]*string, len(events)) // parent dates: all NULL
	return cols, nil
}

func uuidText(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// executeSQL is "EXECUTE name($1, …)" for the statement's arguments.
func executeSQL(name string, n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("$%d", i+1)
	}
	return "EXECUTE " + name + "(" + strings.Join(ps, ", ") + ")"
}

func explainOne(ctx context.Context, conn *pgx.Conn, name string, st explainStmt, mode string) (explainRow, error) {
	row := explainRow{stmt: st.name, mode: mode}
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_"+mode+"_plan"); err != nil {
		return row, err
	}
	defer conn.Exec(context.Background(), "RESET plan_cache_mode")
	if _, err := conn.Exec(ctx, "PREPARE "+name+" AS "+st.sql); err != nil {
		return row, err
	}
	defer conn.Exec(context.Background(), "DEALLOCATE "+name)
	var plans, execs []float64
	for i := range explainReps {
		res, err := explainExecute(ctx, conn, name, st)
		if err != nil {
			return row, err
		}
		if i == 0 {
			row.firstPlanMS = res.PlanningTime
		}
		plans = append(plans, res.PlanningTime)
		execs = append(execs, res.ExecutionTime)
		row.scanned, row.removed = countPartitions(res.Plan)
	}
	row.planMS, row.execMS = report.Median(plans), report.Median(execs)
	return row, nil
}

type explainResult struct {
	Plan          map[string]any `json:"Plan"`
	PlanningTime  float64        `json:"Planning Time"`
	ExecutionTime float64        `json:"Execution Time"`
}

func explainExecute(ctx context.Context, conn *pgx.Conn, name string, st explainStmt) (explainResult, error) {
	var res explainResult
	err := inTx(ctx, conn, st.write, func() error {
		args := append([]any{pgx.QueryExecModeSimpleProtocol}, st.args...)
		var raw []byte
		if err := conn.QueryRow(ctx, "EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) "+executeSQL(name, len(st.args)), args...).Scan(&raw); err != nil {
			return err
		}
		var list []explainResult
		if err := json.Unmarshal(raw, &list); err != nil {
			return err
		}
		if len(list) != 1 {
			return fmt.Errorf("EXPLAIN returned %d plans", len(list))
		}
		res = list[0]
		return nil
	})
	return res, err
}

// autoPicksGeneric runs the statement more than five times under the default
// plan_cache_mode and reports whether PostgreSQL then switched to a generic
// plan (its conditions show $1 instead of the values).
func autoPicksGeneric(ctx context.Context, conn *pgx.Conn, name string, st explainStmt) (bool, error) {
	if _, err := conn.Exec(ctx, "PREPARE "+name+" AS "+st.sql); err != nil {
		return false, err
	}
	defer conn.Exec(context.Background(), "DEALLOCATE "+name)
	var last []byte
	for range 7 {
		err := inTx(ctx, conn, st.write, func() error {
			args := append([]any{pgx.QueryExecModeSimpleProtocol}, st.args...)
			return conn.QueryRow(ctx, "EXPLAIN (VERBOSE, FORMAT JSON) "+executeSQL(name, len(st.args)), args...).Scan(&last)
		})
		if err != nil {
			return false, err
		}
		// EXPLAIN without ANALYZE plans without running; to advance the
		// plan cache's count the statement has to run too.
		err = inTx(ctx, conn, st.write, func() error {
			args := append([]any{pgx.QueryExecModeSimpleProtocol}, st.args...)
			_, err := conn.Exec(ctx, executeSQL(name, len(st.args)), args...)
			return err
		})
		if err != nil {
			return false, err
		}
	}
	return strings.Contains(string(last), "$1"), nil
}

func inTx(ctx context.Context, conn *pgx.Conn, rollback bool, f func() error) error {
	if !rollback {
		return f()
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	return f()
}

// countPartitions walks a plan: scans of audit_events partitions that ran,
// and the partitions pruned at executor start.
func countPartitions(node map[string]any) (scanned, removed int) {
	if rel, _ := node["Relation Name"].(string); strings.HasPrefix(rel, "audit_events_y") {
		if loops, _ := node["Actual Loops"].(float64); loops > 0 {
			scanned++
		}
	}
	if n, ok := node["Subplans Removed"].(float64); ok {
		removed += int(n)
	}
	if kids, ok := node["Plans"].([]any); ok {
		for _, k := range kids {
			if m, ok := k.(map[string]any); ok {
				s, r := countPartitions(m)
				scanned += s
				removed += r
			}
		}
	}
	return scanned, removed
}

// createPartitions adds months before the earliest partition until
// audit_events has total partitions; it returns how many there were before.
func createPartitions(ctx context.Context, e *harness.Env, total int) (int, error) {
	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `
		SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass ORDER BY c.relname`)
	if err != nil {
		return 0, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("audit_events has no partitions")
	}
	var y, m int
	if _, err := fmt.Sscanf(names[0], "audit_events_y%04dm%02d", &y, &m); err != nil {
		return 0, fmt.Errorf("unexpected partition name %q", names[0])
	}
	first := time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
	for i := len(names); i < total; i++ {
		first = first.AddDate(0, -1, 0)
		sql := fmt.Sprintf(`CREATE TABLE audit_events_y%04dm%02d PARTITION OF audit_events FOR VALUES FROM ('%s') TO ('%s')`,
			first.Year(), int(first.Month()), first.Format(time.DateOnly), first.AddDate(0, 1, 0).Format(time.DateOnly))
		if _, err := conn.Exec(ctx, sql); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}

// idDates are the dates v7 ids name (audit.IDDate), as the lookups' probe of
// the events stored without an id row takes them; the ids here are all v7.
func idDates(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		d, _ := audit.IDDate(id)
		out[i] = d.String()
	}
	return out
}
