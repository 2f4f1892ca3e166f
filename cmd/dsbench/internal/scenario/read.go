package scenario

// The read benchmark (`dsbench -read`, `make bench-read`): load N events
// (read_load.go), then time the read API of the running server binary over
// HTTP, one request at a time, and EXPLAIN (ANALYZE, BUFFERS) each query
// shape. Writes bench/results/read.md.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
	"kubernaut.ai/datastorage/internal/benchdata"
	"kubernaut.ai/datastorage/internal/query"
)

// readPGSettings are the read benchmark's PostgreSQL: the write benchmark's
// settings (harness.PGSettings) with more memory for reads.
var readPGSettings = [][2]string{
	{"shared_buffers", "2GB"},
	{"work_mem", "32MB"},
	{"maintenance_work_mem", "1GB"},
	{"effective_cache_size", "12GB"},
	{"random_page_cost", "1.1"},
	{"max_wal_size", "16GB"},
	{"checkpoint_timeout", "30min"},
}

// readResult is one timed request shape.
type readResult struct {
	name, path, target string
	limit              time.Duration // target p99; 0 = none
	lat                []time.Duration
	errs               int
	firstErr           string
	bytes              int64
	note               string
}

func (r *readResult) pct(p float64) time.Duration {
	return report.Quantile(r.lat, p)
}

type readExplain struct {
	name, sql, plan string
}

type readReport struct {
	started, finished time.Time
	facts             facts
	load              loadStats
	results           []*readResult
	explains          []readExplain
	sizes             []partSize
	rollupSizes       []partSize
	cursorDepth       int
}

type partSize struct {
	name             string
	rows             int64
	heap, idx, total int64
}

// RunRead is `dsbench -read` (`make bench-read`): it loads o.ReadEvents
// events and the remediation history, times list, cursor, timeline,
// aggregation and history reads over HTTP, EXPLAINs each shape, and writes
// o.Out, keeping the analysis below readMarker.
func RunRead(ctx context.Context, o Options) error {
	workDir, bin, err := harness.Prepare(ctx, o.ServerBin)
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)
	e, err := harness.StartEnv(ctx, bin, workDir, o.ServerEnv, harness.MergeSettings(harness.PGSettings(), readPGSettings))
	if err != nil {
		return err
	}
	defer e.Close()
	r := &readReport{started: time.Now()}
	r.facts = collectFacts(ctx, e)

	if r.load, err = loadReadData(ctx, e, o.ReadEvents); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	history, err := loadHistoryData(ctx, e) // read_history.go
	if err != nil {
		return fmt.Errorf("load remediations: %w", err)
	}
	if r.sizes, err = readSizes(ctx, e); err != nil {
		return err
	}
	if r.rollupSizes, err = tableSizes(ctx, e, "audit_rollup_hourly", "audit_rollup_correlations"); err != nil {
		return err
	}

	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var corrs []string
	rows, err := conn.Query(ctx, `SELECT correlation_id FROM audit_chain_heads ORDER BY md5(correlation_id || 'x') LIMIT 220`)
	if err != nil {
		return err
	}
	if corrs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return err
	}

	cl := harness.LoopbackClient(2)
	n := o.ReadRequests
	rng := rand.New(rand.NewPCG(7, 11))
	get := func(path string) (time.Duration, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.API+path, nil)
		t := time.Now()
		resp, err := cl.Do(req)
		if err != nil {
			return 0, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: HTTP %d: %.200s", path, resp.StatusCode, b)
		}
		return d, b, err
	}
	// measure runs warm-up requests, then n timed ones (or as many as fit
	// in the budget).
	measure := func(res *readResult, path func(i int) string) {
		for i := range 3 {
			_, _, _ = get(path(n + i))
		}
		deadline := time.Now().Add(o.ReadBudget)
		for i := 0; i < n && ctx.Err() == nil; i++ {
			if time.Now().After(deadline) {
				res.note = fmt.Sprintf("budget %s reached after %d requests", o.ReadBudget, i)
				break
			}
			d, b, err := get(path(i))
			if err != nil {
				res.errs++
				if res.firstErr == "" {
					res.firstErr = err.Error()
				}
				continue
			}
			res.lat = append(res.lat, d)
			res.bytes += int64(len(b))
		}
		res.path = path(0)
		harness.Logf("%-44s n=%d p50 %s p99 %s errors %d %s", res.name, len(res.lat), report.Dur(res.pct(.5)), report.Dur(res.pct(.99)), res.errs, res.note)
		if res.firstErr != "" {
			harness.Logf("  first error: %s", res.firstErr)
		}
		r.results = append(r.results, res)
	}
	const events = "/api/v1/audit/events"
	first := &readResult{name: "first page (limit 50)"}
	measure(first, func(int) string { return events + "?limit=50" })

	// Walk 1,000 pages by next_cursor.
	cursor := ""
	walkStart := time.Now()
	depth := 0
	for depth < o.ReadCursorPages && ctx.Err() == nil {
		p := events + "?limit=50"
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		_, b, err := get(p)
		if err != nil {
			return fmt.Errorf("cursor walk at page %d: %w", depth, err)
		}
		var page struct {
			Pagination struct {
				NextCursor string `json:"next_cursor"`
			} `json:"pagination"`
		}
		if err := json.Unmarshal(b, &page); err != nil || page.Pagination.NextCursor == "" {
			return fmt.Errorf("cursor walk at page %d: no next_cursor (%v)", depth, err)
		}
		cursor = page.Pagination.NextCursor
		depth++
	}
	r.cursorDepth = depth
	harness.Logf("walked %d pages by cursor in %s", depth, time.Since(walkStart).Round(time.Millisecond))
	deep := &readResult{name: fmt.Sprintf("cursor page %d pages deep", depth),
		target: "p99 ≤ 2 × first page p99", limit: 2 * first.pct(.99)}
	measure(deep, func(int) string { return events + "?limit=50&cursor=" + url.QueryEscape(cursor) })
	measure(&readResult{name: "offset 100,000 (limit 50)", target: "(comparison)"},
		func(int) string { return events + "?limit=50&offset=100000" })
	measure(&readResult{name: "timeline, random correlation", target: "p99 ≤ 5 ms", limit: 5 * time.Millisecond},
		func(i int) string { return "/api/v1/audit/timeline/" + corrs[i%len(corrs)] })

	span := r.load.end.Sub(r.load.start) - time.Hour
	typeWindow := func(int) string {
		t := benchdata.Types[rng.IntN(len(benchdata.Types))][0]
		from := r.load.start.Add(time.Duration(rng.Int64N(int64(span)))).Truncate(time.Second)
		return events + "?limit=100&event_type=" + url.QueryEscape(t) +
			"&since=" + url.QueryEscape(from.Format(time.RFC3339)) + "&until=" + url.QueryEscape(from.Add(time.Hour).Format(time.RFC3339))
	}
	measure(&readResult{name: "event_type + 1 h window, limit 100", target: "p99 ≤ 10 ms", limit: 10 * time.Millisecond}, typeWindow)

	agg := "/api/v1/audit/aggregations/"
	aggs := []struct{ name, path string }{
		{"success-rate event_type (7 d)", "success-rate?event_type=aiagent.llm.response"},
		{"success-rate event_category (7 d)", "success-rate?event_category=workflowexecution"},
		{"success-rate workflow_id (7 d)", "success-rate?workflow_id=wf-007"},
		{"by-namespace (7 d)", "by-namespace"},
		{"by-severity (7 d)", "by-severity"},
		{"trend 7d / day", "trend?period=7d&interval=day"},
		{"trend 7d / hour", "trend?period=7d&interval=hour"},
		{"counts event_category,event_outcome (7 d)", "counts?group_by=event_category,event_outcome"},
	}
	for _, a := range aggs {
		p := agg + a.path
		measure(&readResult{name: a.name, target: "p99 ≤ 200 ms", limit: 200 * time.Millisecond}, func(int) string { return p })
	}

	measureHistory(ctx, conn, e.DBURL, history, measure)

	harness.Logf("EXPLAIN (ANALYZE, BUFFERS) of each query shape")
	cur, err := query.DecodeCursor(cursor)
	if err != nil {
		return err
	}
	r.explains = readExplains(ctx, conn, corrs[0], cur)
	r.finished = time.Now()

	out := o.Out
	md := r.markdown(o) + history.markdown()
	if err := report.Write(out, md, readMarker); err != nil {
		return err
	}
	harness.Logf("report written to %s", out)
	if o.Keep {
		harness.Logf("-keep: server %s, database %s; Ctrl-C to stop", e.API, e.DBURL)
		<-ctx.Done()
	}
	return nil
}

const readMarker = "<!-- analysis: written by hand, kept by dsbench -read across runs -->"

// tableSizes measures the named tables.
func tableSizes(ctx context.Context, e *harness.Env, names ...string) ([]partSize, error) {
	return sizes(ctx, e, `WHERE c.relname = ANY($1)`, names)
}

// readSizes measures every partition of audit_events.
func readSizes(ctx context.Context, e *harness.Env) ([]partSize, error) {
	return sizes(ctx, e, `JOIN pg_inherits i ON c.oid = i.inhrelid WHERE i.inhparent = 'audit_events'::regclass`)
}

// sizes measures the tables of pg_class c that where selects, by name.
func sizes(ctx context.Context, e *harness.Env, where string, args ...any) ([]partSize, error) {
	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `
		SELECT c.relname, c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid)
		FROM pg_class c `+where+` ORDER BY 1`, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (partSize, error) {
		var p partSize
		err := row.Scan(&p.name, &p.rows, &p.heap, &p.idx, &p.total)
		p.rows = max(p.rows, 0)
		return p, err
	})
}
