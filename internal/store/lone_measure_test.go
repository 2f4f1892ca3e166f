package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// TestMeasureLoneCommit measures what PostgreSQL's backend does for a
// commit of one event (single c=1), against a naive writer's one INSERT in
// autocommit into the same table: the backend's own CPU time
// (/proc/<pid>/stat; a busy machine inflates it somewhat, but it counts no
// waiting) and WAL bytes per event (load-independent), alternating the two
// in rounds. With DATASTORAGE_PERF_DIR set it also records the backend with
// perf during each kind's rounds (perf report -i <dir>/<kind>.data). Skipped
// unless DATASTORAGE_IDS_MEASURE=1:
//
//	DATASTORAGE_IDS_MEASURE=1 go test ./internal/store/ -run TestMeasureLoneCommit -v
func TestMeasureLoneCommit(t *testing.T) {
	if os.Getenv("DATASTORAGE_IDS_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_IDS_MEASURE=1 to measure a lone commit")
	}
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	st := measuredStore(t, url, Options{MaxConns: 1})
	naive, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { naive.Close(context.Background()) })

	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30}
	seq := 0
	eventIn := func(prefix string) *audit.Event {
		seq++
		ev, fe, err := v.DecodeOne(fmt.Appendf(nil, `{"version":"1.0","event_type":"gateway.signal.received","event_timestamp":%q,
			"event_category":"gateway","event_action":"received","event_outcome":"success",
			"correlation_id":"%s-%d","event_data":{"signal":"OOMKilled","n":%d}}`,
			time.Now().UTC().Format(time.RFC3339Nano), prefix, seq%1000, seq))
		require.NoError(t, err)
		require.Empty(t, fe)
		return ev
	}
	// Each store writes chains of its own, so that neither finds its
	// remembered heads moved by the other.
	event := func() *audit.Event { return eventIn("rr-lone") }
	var storePID, naivePID int
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&storePID))
	require.NoError(t, naive.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&naivePID))
	cpu := func(pid int) time.Duration {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		require.NoError(t, err)
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ 100
	}
	lsn := func() int64 {
		var n int64
		require.NoError(t, naive.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn`).Scan(&n))
		return n
	}
	size := 1
	if v := os.Getenv("DATASTORAGE_LONE_BATCH"); v != "" {
		// Batches instead of lone events (ours only: the naive writer's
		// figures are then per lone event still).
		size, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	// The same store sends lone events by commitEventsSQL (as before
	// lone.go) on another connection, for a before/after in one run.
	arrays, err := Open(ctx, url, Options{MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(arrays.Close)
	arrays.arrayLone = true
	var arraysPID int
	require.NoError(t, arrays.pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&arraysPID))
	oursArrays := func() {
		_, err := arrays.InsertEvents(ctx, []*audit.Event{eventIn("rr-arrays")})
		require.NoError(t, err)
	}
	ours := func() {
		b := make([]*audit.Event, size)
		for i := range b {
			b[i] = event()
		}
		_, err := st.InsertEvents(ctx, b)
		require.NoError(t, err)
	}
	theirs := func() {
		e := event()
		c, err := e.Canonical()
		require.NoError(t, err)
		prev := ""
		e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = 1, st.hasher.Link("", c), &prev, st.hasher.Algorithm()
		cols, err := batchColumns([]*audit.Event{e})
		require.NoError(t, err)
		_, err = naive.Exec(ctx, insertEventsSQL, cols...)
		require.NoError(t, err)
	}
	for range 300 { // warm-up: plans, heads, rollup rows of the hour
		ours()
		oursArrays()
		theirs()
	}
	if os.Getenv("DATASTORAGE_LONE_ANALYZE") == "1" {
		// Fresh statistics invalidate the plans cached while the tables were
		// empty (autovacuum would, after its naptime).
		_, err := naive.Exec(ctx, `ANALYZE`)
		require.NoError(t, err)
		t.Log("ANALYZE after the warm-up")
	}
	perfDir := os.Getenv("DATASTORAGE_PERF_DIR")
	events := map[string]int{"ours": size, "arrays": 1, "naive": 1}
	type total struct {
		cpu            time.Duration
		wal            int64
		n              int
		mallocs, bytes uint64 // the Go side's, this process (both stores, the naive conn)
	}
	totals := map[string]*total{"ours": {}, "arrays": {}, "naive": {}}
	for round := range 6 {
		for _, k := range []struct {
			name string
			pid  int
			one  func()
		}{{"ours", storePID, ours}, {"arrays", arraysPID, oursArrays}, {"naive", naivePID, theirs}} {
			var perf *exec.Cmd
			if perfDir != "" && round == 5 {
				perf = exec.Command("perf", "record", "-q", "-F", "2999", "-g", "-p", strconv.Itoa(k.pid), "-o", filepath.Join(perfDir, k.name+".data"))
				require.NoError(t, perf.Start())
				time.Sleep(500 * time.Millisecond)
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			c0, w0 := cpu(k.pid), lsn()
			n := 1000
			if k.name == "ours" {
				n = max(1, 1000/size)
			}
			for range n {
				k.one()
			}
			tt := totals[k.name]
			tt.cpu += cpu(k.pid) - c0
			tt.wal += lsn() - w0
			runtime.ReadMemStats(&m1)
			tt.mallocs += m1.Mallocs - m0.Mallocs
			tt.bytes += m1.TotalAlloc - m0.TotalAlloc
			tt.n += n * events[k.name]
			if perf != nil {
				_ = perf.Process.Signal(os.Interrupt)
				_ = perf.Wait()
			}
		}
	}
	// How PostgreSQL plans loneSQL (prepared by pgx on the store's one
	// connection): custom plans would cost a planning per event.
	var generic, custom int64
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`,
		loneExtendSQL).Scan(&generic, &custom))
	t.Logf("loneExtendSQL: %d generic plans, %d custom plans", generic, custom)
	for _, k := range []string{"ours", "arrays", "naive"} {
		tt := totals[k]
		t.Logf("%s: backend CPU %.0f µs/event, WAL %.0f B/event, Go %.0f allocations and %.0f B/event (%d events)", k,
			float64(tt.cpu.Microseconds())/float64(tt.n), float64(tt.wal)/float64(tt.n),
			float64(tt.mallocs)/float64(tt.n), float64(tt.bytes)/float64(tt.n), tt.n)
	}
}

// argsCatcher keeps the arguments of the last commitEventsSQL and the
// last loneExtendSQL sent.
type argsCatcher struct{ args, lone []any }

func (a *argsCatcher) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	switch d.SQL {
	case commitEventsSQL:
		a.args = d.Args
	case loneExtendSQL:
		a.lone = d.Args
	}
	return ctx
}

func (a *argsCatcher) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (a *argsCatcher) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (a *argsCatcher) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if d.SQL == commitEventsSQL {
		a.args = d.Args
	}
}

func (a *argsCatcher) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestExplainLoneCommit prints the plan PostgreSQL runs commitSQL with for
// a commit of one event (generic, as insertFast sets it), with ANALYZE and
// BUFFERS, on tables holding what a few minutes of single c=1 leave.
// Skipped unless DATASTORAGE_IDS_MEASURE=1.
func TestExplainLoneCommit(t *testing.T) {
	if os.Getenv("DATASTORAGE_IDS_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_IDS_MEASURE=1")
	}
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	catcher := &argsCatcher{}
	st := measuredStore(t, url, Options{MaxConns: 1, Tracer: catcher})
	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30}
	for i := range 6000 {
		// The first half by commitEventsSQL (as before lone.go), the
		// second by loneSQL.
		st.arrayLone = i < 3000
		ev, fe, err := v.DecodeOne(fmt.Appendf(nil, `{"version":"1.0","event_type":"gateway.signal.received","event_timestamp":%q,
			"event_category":"gateway","event_action":"received","event_outcome":"success",
			"correlation_id":"rr-lone-%d","event_data":{"n":%d}}`, time.Now().UTC().Format(time.RFC3339Nano), i%1000, i))
		require.NoError(t, err)
		require.Empty(t, fe)
		_, err = st.InsertEvents(ctx, []*audit.Event{ev})
		require.NoError(t, err)
	}
	require.NotNil(t, catcher.args)
	require.NotNil(t, catcher.lone)
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { plans = append(plans, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	// auto_explain, its plans sent to this client as notices: the plan the
	// statement really runs with (EXPLAIN of a statement with parameters
	// plans it custom, with the values).
	for _, q := range []string{`LOAD 'auto_explain'`, `SET auto_explain.log_min_duration = 0`, `SET auto_explain.log_analyze = on`,
		`SET auto_explain.log_buffers = on`, `SET auto_explain.log_level = notice`} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err)
	}
	for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
		for range 3 {
			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, `SELECT set_config('plan_cache_mode', $1, true)`, mode)
			require.NoError(t, err)
			if mode == "force_generic_plan" {
				_, err = tx.Exec(ctx, genericPlansSQL) // as the store runs it
				require.NoError(t, err)
			}
			plans = nil
			// The last commit's arguments again: its heads moved on since,
			// so the guard fails and nothing is written; the plan is the same.
			_, err = tx.Exec(ctx, commitEventsSQL, catcher.args...)
			require.NoError(t, err)
			require.NoError(t, tx.Rollback(ctx))
		}
		lines := plans
		t.Logf("%s:\n%s", mode, strings.Join(lines, "\n"))
	}
	// loneSQL as the store runs it: alone, in autocommit, prepared (a
	// generic plan from the sixth execution on). Its head moved on since:
	// nothing is written, the plan is the same.
	for range 8 {
		plans = nil
		var n int64
		var kept bool
		require.NoError(t, conn.QueryRow(ctx, loneExtendSQL, catcher.lone...).Scan(&n, &kept))
		require.Zero(t, n)
	}
	t.Logf("loneSQL:\n%s", strings.Join(plans, "\n"))
}
