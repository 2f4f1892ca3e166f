package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

// The experiments answer the write path's design questions with numbers
// instead of opinions: what each index costs per row, what a GIN index on
// event_data would cost, and which statement writes a batch fastest. Each
// variant gets a fresh database with the service's own migrations, and the
// same rows; PostgreSQL's CPU per row and WAL per row are the steady
// figures, rows/s follows the disk's mood.

// expPG starts a PostgreSQL with the benchmark's settings and no server.
func expPG(ctx context.Context) (*env, error) {
	opts := make([]testenv.PostgresOption, 0, len(pgSettings))
	for _, s := range pgSettings {
		opts = append(opts, testenv.WithPostgresSetting(s[0], s[1]))
	}
	// Autovacuum would wake up on the freshly loaded tables and blur the
	// cost of the inserts themselves.
	opts = append(opts, testenv.WithPostgresSetting("autovacuum", "off"))
	pg, err := testenv.StartPostgres(opts...)
	if err != nil {
		return nil, err
	}
	return &env{pg: pg}, nil
}

var dbSeq int

// freshDB creates a database with the service's schema and this month's
// partition, and returns its URL.
func freshDB(ctx context.Context, e *env, ddl ...string) (string, error) {
	dbSeq++
	url, err := e.pg.CreateDatabase(ctx, fmt.Sprintf("exp_%d", dbSeq))
	if err != nil {
		return "", err
	}
	st, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	if err != nil {
		return "", err
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, nil); err != nil {
		return "", err
	}
	if _, err := st.EnsurePartitions(ctx, time.Now(), 0); err != nil {
		return "", err
	}
	for _, q := range ddl {
		if _, err := st.Pool().Exec(ctx, q); err != nil {
			return "", fmt.Errorf("%s: %w", q, err)
		}
	}
	return url, nil
}

// measure is what one experimental run cost.
type measure struct {
	rows     int64
	elapsed  time.Duration
	pgCPU    float64
	walBytes int64
}

func (m measure) rowsPerSec() float64 { return float64(m.rows) / m.elapsed.Seconds() }
func (m measure) cpuPerRow() float64  { return m.pgCPU / float64(max(m.rows, 1)) * 1e6 }
func (m measure) walPerRow() float64  { return float64(m.walBytes) / float64(max(m.rows, 1)) }

func walBytes(ctx context.Context, url string) int64 {
	var n int64
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0
	}
	defer c.Close(context.Background())
	_ = c.QueryRow(ctx, "SELECT wal_bytes::int8 FROM pg_stat_wal").Scan(&n)
	return n
}

// timed runs f and measures the CPU of the backends it used (f reports
// them) and the WAL written, after a checkpoint so every run starts alike.
func timed(ctx context.Context, url string, f func(cpu *backendCPU) (int64, error)) (measure, error) {
	if c, err := pgx.Connect(ctx, url); err == nil {
		_, _ = c.Exec(ctx, "CHECKPOINT")
		c.Close(context.Background())
	}
	w0 := walBytes(ctx, url)
	var cpu backendCPU
	start := time.Now()
	rows, err := f(&cpu)
	m := measure{rows: rows, elapsed: time.Since(start), pgCPU: cpu.total()}
	m.walBytes = walBytes(ctx, url) - w0
	return m, err
}

// backendCPU adds up the CPU time of the PostgreSQL backends serving a
// run's connections, from connect to close: the statement's own cost,
// without the server's background work.
type backendCPU struct {
	mu  sync.Mutex
	sum float64
}

func (b *backendCPU) total() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sum
}

// connect opens a connection whose backend's CPU is counted until the
// returned close function runs.
func (b *backendCPU) connect(ctx context.Context, url string) (*pgx.Conn, func(), error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		conn.Close(context.Background())
		return nil, nil, err
	}
	c0 := procCPU(pid)
	return conn, func() {
		d := procCPU(pid) - c0
		b.mu.Lock()
		b.sum += d
		b.mu.Unlock()
		conn.Close(context.Background())
	}, nil
}

// copyRows COPYs n rows made from events into url's audit_events, chunk rows
// per COPY.
func copyRows(ctx context.Context, cpu *backendCPU, url string, events []*audit.Event, n, chunk int) (int64, error) {
	conn, done0, err := cpu.connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer done0()
	row := make([]any, len(insertColumns))
	var done int64
	for done < int64(n) {
		k := min(int64(chunk), int64(n)-done)
		i := int64(0)
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i == k {
				return nil, nil
			}
			rowOf(row, events[(done+i)%int64(len(events))], uuid.Must(uuid.NewV7()), done+i+1)
			i++
			return row, nil
		})
		got, err := conn.CopyFrom(ctx, pgx.Identifier{"audit_events"}, insertColumns, src)
		if err != nil {
			return done, err
		}
		done += got
	}
	return done, nil
}

type variant struct {
	name string
	ddl  []string
}

type variantResult struct {
	variant
	runs      []measure
	indexMB   float64
	detailMS  float64 // the detail_key query on this variant's data
	detailHow string
}

func (v variantResult) median(f func(measure) float64) float64 {
	xs := make([]float64, len(v.runs))
	for i, m := range v.runs {
		xs[i] = f(m)
	}
	return median(xs)
}

func runExperiments(ctx context.Context, o options) error {
	e, err := expPG(ctx)
	if err != nil {
		return err
	}
	defer e.pg.Close()
	started := time.Now()
	gen := newEventGen(7, 1000, time.Now())
	bodies := make([][]byte, 5000)
	for i := range bodies {
		bodies[i] = gen.body()
	}
	events, err := decodeEvents(bodies)
	if err != nil {
		return err
	}

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# Write-path experiments")
	p("")
	p("Generated by `%s` on %s (%d CPUs; PostgreSQL with the benchmark's durable settings, see latest.md). Every variant runs in a fresh database built by the service's own migrations, with this month's partition, and gets the same generated rows (the benchmark's events, ~%d bytes of JSON). Figures are medians of the rounds; *PostgreSQL CPU µs/row* (the CPU of the backends doing the writes, autovacuum off, a CHECKPOINT before each run) and *WAL bytes/row* are the steady measures, rows/s also depends on the disk.",
		commandLine(), started.UTC().Format("2006-01-02 15:04 MST"), collectFactsCPUs(ctx), avgLen(bodies))
	p("")

	// 1. What each index (and the parent foreign key) costs per row.
	// Whatever secondary indexes the migrations leave, so the list never
	// names one a later migration dropped.
	secondary := existingIndexes(ctx, e)
	variants := []variant{
		{name: "schema as migrated (all indexes)"},
		{name: "primary key only", ddl: dropAll(secondary)},
	}
	for _, ix := range secondary {
		variants = append(variants, variant{name: "without " + ix, ddl: []string{"DROP INDEX " + ix}})
	}
	variants = append(variants,
		variant{name: "without the parent foreign key", ddl: []string{"ALTER TABLE audit_events DROP CONSTRAINT audit_events_parent_fk"}},
		variant{name: "+ GIN (event_data) jsonb_ops", ddl: []string{"CREATE INDEX audit_events_data_gin ON audit_events USING gin (event_data)"}},
		variant{name: "+ GIN (event_data jsonb_path_ops)", ddl: []string{"CREATE INDEX audit_events_data_gin ON audit_events USING gin (event_data jsonb_path_ops)"}},
		variant{name: "+ btree ((event_data->>'workflow_id'), event_timestamp DESC)", ddl: []string{"CREATE INDEX audit_events_data_wf ON audit_events ((event_data->>'workflow_id'), event_timestamp DESC)"}},
	)
	const rowsPerRun, rounds = 80_000, 3
	results := make([]variantResult, len(variants))
	for round := range rounds {
		for i, v := range variants {
			results[i].variant = v
			url, err := freshDB(ctx, e, v.ddl...)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			logf("indexes, round %d: %s", round+1, v.name)
			m, err := timed(ctx, url, func(cpu *backendCPU) (int64, error) {
				return copyRows(ctx, cpu, url, events, rowsPerRun, copyChunk)
			})
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			results[i].runs = append(results[i].runs, m)
			if round == 0 {
				results[i].indexMB = indexMB(ctx, url)
				results[i].detailMS, results[i].detailHow = detailQuery(ctx, url, strings.Contains(v.name, "GIN"))
			}
		}
	}
	p("## Index set: cost per row")
	p("")
	p("COPY of %d rows per round (%d per COPY and commit), %d rounds. The detail query is `event_data ->> 'workflow_id' = <value>` ordered by time, limit 50 (for the GIN variants rewritten as `event_data @> jsonb_build_object(…)`, the only form a GIN index serves), over the variant's %d rows.", rowsPerRun, copyChunk, rounds, rowsPerRun)
	p("")
	p("| variant | rows/s | PostgreSQL CPU µs/row | WAL bytes/row | index size MB | detail query ms |")
	p("|---|--:|--:|--:|--:|--:|")
	for _, r := range results {
		p("| %s | %.0f | %.1f | %.0f | %.1f | %.2f %s |", r.name, r.median(measure.rowsPerSec), r.median(measure.cpuPerRow),
			r.median(measure.walPerRow), r.indexMB, r.detailMS, r.detailHow)
	}
	p("")

	// 2. Which statement writes a batch fastest (no chain: that cost is the
	// same around any of them).
	stmts := []string{"unnest, ON CONFLICT DO NOTHING", "unnest, plain INSERT", "COPY to temp + INSERT … SELECT ON CONFLICT DO NOTHING", "COPY straight into audit_events"}
	type shape struct{ batch, writers, total int }
	shapes := []shape{{32, 2, 16_000}, {500, 1, 50_000}, {2000, 1, 50_000}}
	stmtRes := map[string][]measure{}
	for round := range rounds {
		for _, sh := range shapes {
			for _, st := range stmts {
				url, err := freshDB(ctx, e)
				if err != nil {
					return err
				}
				logf("statements, round %d: %s, batch %d × %d", round+1, st, sh.batch, sh.writers)
				m, err := timed(ctx, url, func(cpu *backendCPU) (int64, error) {
					return writeBatches(ctx, cpu, url, events, st, sh.batch, sh.writers, sh.total)
				})
				if err != nil {
					return fmt.Errorf("%s: %w", st, err)
				}
				key := fmt.Sprintf("%d|%d|%s", sh.batch, sh.writers, st)
				stmtRes[key] = append(stmtRes[key], m)
			}
		}
	}
	p("## Batch statement: unnest or COPY")
	p("")
	p("Each batch in its own transaction (BEGIN … COMMIT), without the chain statements; %d rounds.", rounds)
	p("")
	p("| batch × writers | statement | rows/s | PostgreSQL CPU µs/row | WAL bytes/row |")
	p("|---|---|--:|--:|--:|")
	for _, sh := range shapes {
		for _, st := range stmts {
			r := variantResult{runs: stmtRes[fmt.Sprintf("%d|%d|%s", sh.batch, sh.writers, st)]}
			p("| %d × %d | %s | %.0f | %.1f | %.0f |", sh.batch, sh.writers, st, r.median(measure.rowsPerSec),
				r.median(measure.cpuPerRow), r.median(measure.walPerRow))
		}
	}
	p("")
	p("Finished in %s.", time.Since(started).Round(time.Second))

	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(b.String())
	logf("report written to %s", o.out)
	return nil
}

func collectFactsCPUs(ctx context.Context) int {
	n := 0
	fmt.Sscan(command(ctx, "nproc"), &n)
	return n
}

func avgLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n / max(len(bs), 1)
}

func dropAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "DROP INDEX " + n
	}
	return out
}

// existingIndexes lists the secondary indexes of audit_events in a freshly
// migrated database.
func existingIndexes(ctx context.Context, e *env) []string {
	url, err := freshDB(ctx, e)
	if err != nil {
		return nil
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, `
		SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = 'audit_events'::regclass AND NOT i.indisprimary ORDER BY 1`)
	if err != nil {
		return nil
	}
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	return names
}

func indexMB(ctx context.Context, url string) float64 {
	var n int64
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0
	}
	defer c.Close(context.Background())
	_ = c.QueryRow(ctx, `
		SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0)::int8
		FROM pg_inherits h JOIN pg_index i ON i.indrelid = h.inhrelid
		WHERE h.inhparent = 'audit_events'::regclass`).Scan(&n)
	return float64(n) / (1 << 20)
}

// detailQuery times the detail_key/detail_value filter on the data just
// loaded; with a GIN index, in the containment form that can use it.
func detailQuery(ctx context.Context, url string, gin bool) (float64, string) {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, ""
	}
	defer c.Close(context.Background())
	_, _ = c.Exec(ctx, "ANALYZE audit_events")
	var wf string
	if err := c.QueryRow(ctx, `SELECT event_data->>'workflow_id' FROM audit_events LIMIT 1`).Scan(&wf); err != nil {
		return 0, ""
	}
	q := `SELECT event_id FROM audit_events WHERE event_data ->> 'workflow_id' = $1 ORDER BY event_timestamp DESC LIMIT 50`
	how := "(->>)"
	if gin {
		q = `SELECT event_id FROM audit_events WHERE event_data @> jsonb_build_object('workflow_id', $1::text) ORDER BY event_timestamp DESC LIMIT 50`
		how = "(@>)"
	}
	var times []float64
	for range 5 {
		var raw []byte
		if err := c.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+q, wf).Scan(&raw); err != nil {
			return 0, err.Error()
		}
		var list []explainResult
		if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
			return 0, ""
		}
		times = append(times, list[0].ExecutionTime)
	}
	return median(times), how
}

// writeBatches writes total rows as batches with one statement variant.
func writeBatches(ctx context.Context, cpu *backendCPU, url string, events []*audit.Event, how string, batch, writers, total int) (int64, error) {
	work := make(chan int, total/batch+1)
	for i := 0; i*batch < total; i++ {
		work <- i
	}
	close(work)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		rows  int64
		first error
	)
	deadline := time.Now().Add(2 * time.Minute)
	for range writers {
		wg.Go(func() {
			conn, closeConn, err := cpu.connect(ctx, url)
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
				return
			}
			defer closeConn()
			if strings.HasPrefix(how, "COPY to temp") {
				if _, err := conn.Exec(ctx, `CREATE TEMP TABLE audit_stage (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
			row := make([]any, len(insertColumns))
			for i := range work {
				if time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				part := make([]*audit.Event, 0, batch)
				for j := i * batch; j < min((i+1)*batch, total); j++ {
					part = append(part, events[j%len(events)])
				}
				n, err := writeOneBatch(ctx, conn, part, how, row)
				mu.Lock()
				rows += n
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return rows, first
}

func writeOneBatch(ctx context.Context, conn *pgx.Conn, part []*audit.Event, how string, row []any) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		switch how {
		case "unnest, ON CONFLICT DO NOTHING":
			tag, err := tx.Exec(ctx, onConflictInsertSQL, columnsOf(part)...)
			n = tag.RowsAffected()
			return err
		case "unnest, plain INSERT":
			tag, err := tx.Exec(ctx, unnestInsertSQL, columnsOf(part)...)
			n = tag.RowsAffected()
			return err
		case "COPY to temp + INSERT … SELECT ON CONFLICT DO NOTHING":
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_stage"}, insertColumns, copySource(part, row)); err != nil {
				return err
			}
			cols := strings.Join(insertColumns, ", ")
			tag, err := tx.Exec(ctx, "INSERT INTO audit_events ("+cols+") SELECT "+cols+" FROM audit_stage ON CONFLICT (event_id, event_date) DO NOTHING")
			n = tag.RowsAffected()
			return err
		default:
			got, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, insertColumns, copySource(part, row))
			n = got
			return err
		}
	})
	return n, err
}

func copySource(part []*audit.Event, row []any) pgx.CopyFromSource {
	i := 0
	return pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(part) {
			return nil, nil
		}
		rowOf(row, part[i], uuid.Must(uuid.NewV7()), int64(i+1))
		i++
		return row, nil
	})
}
