package scenario

// The write path at the physical limit (issue 15): PostgreSQL's own
// counters per event for every scenario, a naive writer to compare the lone
// event with, and chains on vs off with the rollups on in both. Wall-clock
// throughput on a shared machine is noise; these counters are not.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/store"
)

// statsSettle is how long after an HTTP scenario's window its end reading
// is taken. A busy PostgreSQL 15 backend publishes its table and WAL
// counters at most once a second (PGSTAT_MIN_INTERVAL), so the end reading
// misses up to a second of the window's tail, as the start reading missed
// up to a second of the warm-up before it: at the same rate, a shift of the
// window, not an error in the ratios per event.
const statsSettle = 1500 * time.Millisecond

// statsIdleFlush is how long PostgreSQL 15 may keep an idle backend's
// counters unpublished: one that goes idle within a second of its last
// publication waits PGSTAT_IDLE_INTERVAL (10 s) before the next, plus a
// margin. A reading taken sooner after a load counts part of that load in
// whatever it measures next: the 1.5 s this benchmark waited before
// 2026-12-07 put the tail of batch500 c=4 into the naive writer's window
// (1.6 events per commit for a writer that commits every event) and shifted
// the counters of the chains on/off runs from one run to the next. A
// backend that exits publishes at once (measureWork relies on that).
const statsIdleFlush = 11 * time.Second

// measuredApp is the application_name of the connections whose work
// measureWork measures, so that it can wait for their backends to exit.
const measuredApp = "dsbench-measured"

// pgSnap is one reading of PostgreSQL's cumulative counters and of the CPU
// time of PostgreSQL's processes and the server.
type pgSnap struct {
	events                  int64 // rows inserted into audit_events' partitions
	commits                 int64 // xact_commit of the database
	statements, dirtied     int64 // pg_stat_statements: calls (BEGIN, COMMIT, SET excluded), shared blocks dirtied
	inserted, updated, hot  int64 // pg_stat_user_tables, all tables
	walRecords, walFPI, wal int64 // pg_stat_wal
	lsn                     int64 // pg_current_wal_lsn() in bytes
	lsnText                 string
	pgCPU, serverCPU        float64
	// tables is rows inserted and updated per table, partitions of
	// audit_events summed under audit_events.
	tables map[string][2]int64
}

// pgWork is what a scenario cost PostgreSQL: the difference of two pgSnaps.
type pgWork struct {
	pgSnap
	from, to string // the WAL positions it spans
	walByRM  []rmStat
}

// rmStat is the WAL one resource manager wrote (pg_walinspect).
type rmStat struct {
	rm         string
	records    int64
	bytes, fpi int64
}

// readWALByRM breaks the WAL of w down by resource manager (heap, B-tree,
// transaction...): which kind of work the bytes per event come from.
func (w *pgWork) readWALByRM(ctx context.Context, e *harness.Env) {
	if w.from == "" || w.to == "" {
		return
	}
	withConn(ctx, e, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_walinspect"); err != nil {
			return err
		}
		rows, err := c.Query(ctx, `
			SELECT "resource_manager/record_type", count, record_size, fpi_size
			FROM pg_get_wal_stats($1::pg_lsn, $2::pg_lsn, false) WHERE count > 0 ORDER BY combined_size DESC`, w.from, w.to)
		if err != nil {
			return err
		}
		var r rmStat
		_, err = pgx.ForEachRow(rows, []any{&r.rm, &r.records, &r.bytes, &r.fpi}, func() error {
			w.walByRM = append(w.walByRM, r)
			return nil
		})
		return err
	})
}

func readPGSnap(ctx context.Context, e *harness.Env) pgSnap {
	var s pgSnap
	withConn(ctx, e, func(c *pgx.Conn) error {
		err := c.QueryRow(ctx, `
			SELECT
			  (SELECT coalesce(sum(n_tup_ins), 0)::int8 FROM pg_stat_user_tables
			    WHERE relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'audit_events'::regclass)),
			  (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
			  (SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements
			    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_%' AND query !~* '^\s*(BEGIN|COMMIT|ROLLBACK|SET|START)'),
			  (SELECT coalesce(sum(shared_blks_dirtied), 0)::int8 FROM pg_stat_statements
			    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_%' AND query !~* '^\s*(BEGIN|COMMIT|ROLLBACK|SET|START)'),
			  (SELECT coalesce(sum(n_tup_ins), 0)::int8 FROM pg_stat_user_tables),
			  (SELECT coalesce(sum(n_tup_upd), 0)::int8 FROM pg_stat_user_tables),
			  (SELECT coalesce(sum(n_tup_hot_upd), 0)::int8 FROM pg_stat_user_tables),
			  w.wal_records, w.wal_fpi, w.wal_bytes::int8,
			  (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8, pg_current_wal_lsn()::text
			FROM pg_stat_wal w`).Scan(&s.events, &s.commits, &s.statements, &s.dirtied,
			&s.inserted, &s.updated, &s.hot, &s.walRecords, &s.walFPI, &s.wal, &s.lsn, &s.lsnText)
		if err != nil {
			return err
		}
		rows, err := c.Query(ctx, `
			SELECT CASE WHEN relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'audit_events'::regclass)
			            THEN 'audit_events' ELSE relname END,
			       sum(n_tup_ins)::int8, sum(n_tup_upd)::int8
			FROM pg_stat_user_tables GROUP BY 1 HAVING sum(n_tup_ins) + sum(n_tup_upd) > 0`)
		if err != nil {
			return err
		}
		s.tables = map[string][2]int64{}
		var name string
		var ins, upd int64
		_, err = pgx.ForEachRow(rows, []any{&name, &ins, &upd}, func() error {
			s.tables[name] = [2]int64{ins, upd}
			return nil
		})
		return err
	})
	s.pgCPU, s.serverCPU = harness.TreeCPU(e.PostmasterPID()), harness.ProcCPU(e.ServerPID())
	return s
}

func (s pgSnap) sub(o pgSnap) pgWork {
	tables := map[string][2]int64{}
	for k, v := range s.tables {
		tables[k] = [2]int64{v[0] - o.tables[k][0], v[1] - o.tables[k][1]}
	}
	return pgWork{from: o.lsnText, to: s.lsnText, pgSnap: pgSnap{tables: tables,
		events: s.events - o.events, commits: s.commits - o.commits,
		statements: s.statements - o.statements, dirtied: s.dirtied - o.dirtied,
		inserted: s.inserted - o.inserted, updated: s.updated - o.updated, hot: s.hot - o.hot,
		walRecords: s.walRecords - o.walRecords, walFPI: s.walFPI - o.walFPI, wal: s.wal - o.wal,
		lsn: s.lsn - o.lsn, pgCPU: s.pgCPU - o.pgCPU, serverCPU: s.serverCPU - o.serverCPU,
	}}
}

// measureWork runs f between two exact readings, for the runs that have
// PostgreSQL to themselves from start to end (raw COPY, chains on and off).
// The first is taken once every backend of the load that ended at
// lastLoad has published its counters (statsIdleFlush). f does its work
// on connections to measuredURL and closes them before it returns; the
// second reading waits until their backends have exited, which publishes
// everything they counted.
func measureWork(ctx context.Context, e *harness.Env, lastLoad time.Time, f func() error) (pgWork, error) {
	loadgen.SleepUntil(ctx, lastLoad.Add(statsIdleFlush))
	s0 := readPGSnap(ctx, e)
	err := f()
	awaitMeasuredExit(ctx, e)
	w := readPGSnap(ctx, e).sub(s0)
	w.readWALByRM(ctx, e)
	return w, err
}

// measuredURL is the database's URL for the connections measureWork
// measures.
func measuredURL(e *harness.Env) string {
	sep := "?"
	if strings.Contains(e.DBURL, "?") {
		sep = "&"
	}
	return e.DBURL + sep + "application_name=" + measuredApp
}

// awaitMeasuredExit waits until no backend of measuredApp is left. A
// backend leaves pg_stat_activity just before it publishes its counters on
// exit, so a short margin follows.
func awaitMeasuredExit(ctx context.Context, e *harness.Env) {
	deadline := time.Now().Add(statsIdleFlush)
	n := -1
	// One connection for all the polls: each new one would be a backend
	// more, publishing counters of its own.
	withConn(ctx, e, func(c *pgx.Conn) error {
		for {
			if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, measuredApp).Scan(&n); err != nil {
				return err
			}
			if n == 0 || time.Now().After(deadline) || !loadgen.SleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
				return nil
			}
		}
	})
	if n == 0 {
		loadgen.SleepUntil(ctx, time.Now().Add(250*time.Millisecond))
		return
	}
	// Those still there (or an unanswered poll) publish within statsIdleFlush.
	harness.Logf("%d measured backends still open; waiting %s for their counters", n, statsIdleFlush)
	loadgen.SleepUntil(ctx, time.Now().Add(statsIdleFlush))
}

// per divides by the events the counters saw.
func (w pgWork) per(v int64) float64 {
	if w.events <= 0 {
		return 0
	}
	return float64(v) / float64(w.events)
}

func (w pgWork) pgMicros() float64 {
	if w.events <= 0 {
		return 0
	}
	return w.pgCPU / float64(w.events) * 1e6
}

// writepathReport is what the issue-15 part of a run measured.
type writepathReport struct {
	copyWork  pgWork
	naive     []loadResult // the naive writer, c=1
	again     []loadResult // the product's single c=1, run alternately with it
	chains    []chainOnOff
	chainsErr string
}

// windowWork wraps a scenario's probe so that the PostgreSQL counters are
// read at the start of the measured window and once settled after it. The
// table and WAL counters of the first reading may miss up to a second of
// the warm-up that the backends had not published yet, which the second
// reading then counts: a steady load makes that a shift of the window, not
// an error in the ratios per event, which divide by those same counters.
type windowWork struct {
	ctx  context.Context
	e    *harness.Env
	s0   pgSnap
	cpu1 [2]float64
	done bool
	// ended is when the window ended: the load's backends may keep their
	// counters until statsIdleFlush after it.
	ended time.Time
}

func (w *windowWork) wrap(probe func(string)) func(string) {
	return func(phase string) {
		probe(phase)
		switch phase {
		case "start":
			w.s0 = readPGSnap(w.ctx, w.e)
		case "end":
			w.cpu1 = [2]float64{harness.TreeCPU(w.e.PostmasterPID()), harness.ProcCPU(w.e.ServerPID())}
			w.done, w.ended = true, time.Now()
		}
	}
}

// result reads the counters again once settled; samplerTx are the
// transactions of the wait sampler, which is no part of the load.
func (w *windowWork) result(samplerTx int) *pgWork {
	if !w.done {
		return nil
	}
	loadgen.SleepUntil(w.ctx, time.Now().Add(statsSettle))
	s1 := readPGSnap(w.ctx, w.e)
	s1.pgCPU, s1.serverCPU = w.cpu1[0], w.cpu1[1]
	d := s1.sub(w.s0)
	d.commits -= int64(samplerTx)
	d.readWALByRM(w.ctx, w.e)
	return &d
}

// naiveInsertSQL is the naive writer's statement: one row, one INSERT, in
// its own implicit transaction.
func naiveInsertSQL() string {
	cols := store.BatchInsertColumns()
	ph := make([]string, len(cols))
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	return "INSERT INTO audit_events (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")"
}

// naiveWriter is the write path this service replaces, as the issue
// describes it: the same HTTP request, decoded and validated the same way,
// then one INSERT and its commit per event, nothing else (no chain, no
// rollups, no id table). It runs in a process of its own (RunNaiveWriter).
type naiveWriter struct {
	pool *pgxpool.Pool
	srv  *http.Server
	addr string
}

// NaiveWriterEnv names the variable that makes dsbench run as the naive writer
// (RunNaiveWriter): the database URL. The writer is a process of its own,
// as the service it stands for was, so that it pays the same hops between
// processes as the product's server; inside dsbench it shared the load
// generator's process and, on a busy machine, skipped a wake-up per request.
const NaiveWriterEnv = "DSBENCH_NAIVE_WRITER_DB"

// RunNaiveWriter is main for the naive writer's process: it prints its
// address on stdout and serves until it is killed or interrupted.
func RunNaiveWriter(dbURL string) error {
	ctx := context.Background()
	n, err := startNaive(ctx, dbURL)
	if err != nil {
		return err
	}
	defer n.close()
	fmt.Println(n.addr)
	// Until dsbench kills it, or an interrupt.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// spawnNaive starts the naive writer's process and returns its address and
// the process.
func spawnNaive(ctx context.Context, dbURL string) (string, *exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), NaiveWriterEnv+"="+dbURL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return "", nil, fmt.Errorf("naive writer did not start: %w", err)
	}
	return strings.TrimSpace(line), cmd, nil
}

func startNaive(ctx context.Context, dbURL string) (*naiveWriter, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pool.Close()
		return nil, err
	}
	v := &audit.Validator{MaxAge: 168 * time.Hour, MaxSkew: time.Hour}
	sql := naiveInsertSQL()
	var dates sync.Map // event id → date, of the events it stored
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/audit/events", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ev, fe, err := v.DecodeOne(body)
		if err != nil || fe != nil {
			http.Error(w, fmt.Sprint(err, fe), http.StatusBadRequest)
			return
		}
		if ev.ParentID != nil {
			// The parent is the worker's previous event, which this writer
			// stored: it knows its date without asking PostgreSQL.
			d, ok := dates.Load(*ev.ParentID)
			if !ok {
				http.Error(w, "unknown parent", http.StatusBadRequest)
				return
			}
			ev.ResolveParent(d.(audit.Date))
		}
		one := []*audit.Event{ev}
		loadgen.StampUnchained(one, func(int) int64 { return 1 }) // a fresh id, a stand-in hash
		id := ev.ID
		// The store's own encoding of the row, one column at a time.
		arrays, err := store.BatchInsertArgs(one)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		row := make([]any, len(arrays))
		for i, a := range arrays {
			row[i] = reflect.ValueOf(a).Index(0).Interface()
		}
		if _, err := pool.Exec(r.Context(), sql, row...); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		dates.Store(id, ev.Date)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"event_id": id.String(), "status": "created"})
	})
	n := &naiveWriter{pool: pool, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String()}
	go func() {
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			harness.Logf("naive writer: %v", err)
		}
	}()
	return n, nil
}

func (n *naiveWriter) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	n.pool.Close()
}

// naiveRounds is how many times the naive writer and the product's single
// c=1 run, alternately, so that a change of load on the machine hits both.
const naiveRounds = 2

// runNaiveComparison runs the naive writer and the product's single-event
// c=1, alternately, with the same bodies and load generator.
func runNaiveComparison(ctx context.Context, e *harness.Env, r *writeReport, single [][]byte) error {
	addr, proc, err := spawnNaive(ctx, e.DBURL)
	if err != nil {
		return fmt.Errorf("naive writer: %w", err)
	}
	defer func() {
		_ = proc.Process.Kill()
		_ = proc.Wait()
	}()
	naivePID := proc.Process.Pid
	for range naiveRounds {
		spec := loadgen.Spec{Name: "naive c=1", Batch: 1, Concurrency: 1, ParentEvery: 4, Warmup: r.opts.Warmup, Duration: r.opts.Duration}
		r.awaitPublished(ctx, spec.Warmup)
		waitQuiet(ctx, e, 30*time.Second)
		ww := &windowWork{ctx: ctx, e: e}
		var split cpuSplit
		var c0 [3]float64
		var t0 time.Time
		var vol0, invol0, vol1, invol1 int64
		res := loadResult{Result: loadgen.Run(ctx, addr, spec, single, ww.wrap(func(phase string) {
			if phase == "start" {
				vol0, invol0 = harness.ContextSwitches(naivePID)
				c0, t0 = [3]float64{harness.ProcCPU(naivePID), harness.TreeCPU(e.PostmasterPID()), harness.SelfCPU()}, time.Now()
			} else {
				vol1, invol1 = harness.ContextSwitches(naivePID)
				split = cpuSplit{server: harness.ProcCPU(naivePID) - c0[0], postgres: harness.TreeCPU(e.PostmasterPID()) - c0[1],
					loadgen: harness.SelfCPU() - c0[2], window: time.Since(t0).Seconds()}
			}
		}))}
		res.cpu = split
		res.srv = srvWork{ctxVol: vol1 - vol0, ctxInvol: invol1 - invol0} // the naive writer has no /metrics
		res.work = ww.result(0)
		r.loadEnded = ww.ended
		r.wp.naive = append(r.wp.naive, res)
		harness.Logf("%-13s %8.0f events/s  p50 %s  p99 %s  errors %d", spec.Name, res.EventsPerSec(),
			report.Dur(res.Percentile(.5)), report.Dur(res.Percentile(.99)), res.ErrorCount())
		if res.FirstErr != "" {
			harness.Logf("  first error: %s", res.FirstErr)
		}
		again, err := runScenario(ctx, e, r, loadgen.Spec{Name: "single c=1", Batch: 1, Concurrency: 1, ParentEvery: 4,
			Warmup: r.opts.Warmup, Duration: r.opts.Duration}, single)
		if err != nil {
			return err
		}
		r.wp.again = append(r.wp.again, again)
		harness.Logf("%-13s %8.0f events/s  p50 %s  p99 %s  errors %d (alternating with the naive writer)", "single c=1",
			again.EventsPerSec(), report.Dur(again.Percentile(.5)), report.Dur(again.Percentile(.99)), again.ErrorCount())
	}
	return nil
}

// chainOnOff is one run of the chains on vs off comparison.
type chainOnOff struct {
	batch, writers int
	chain          bool
	rows           int64
	elapsed        time.Duration
	goCPU          float64
	work           pgWork
	roundTrips     int64 // the store's, counted by its pgx tracer
}

// roundTripCounter counts the round trips a store makes: every statement
// sent alone, every pipeline and every COPY is one.
type roundTripCounter struct{ n atomic.Int64 }

func (r *roundTripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (r *roundTripCounter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTripCounter) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

func (c chainOnOff) rowsPerSec() float64 {
	if c.elapsed <= 0 {
		return 0
	}
	return float64(c.rows) / c.elapsed.Seconds()
}

// runChainsOnOff measures the product's write with and without the hash
// chain, the rollups and the id table on in both: on is ingest.Pipeline over
// store.InsertEvents, as in the server; off is store.InsertUnchained, the
// same statements less the chain's (locks, head read and write, hashing).
// Off and on alternate (off, on, off, on, off), each counted as the mean
// rate of its runs, so that a drift of the machine's load does not favour
// either: with one off run before and one after a single on run, the two
// off runs of one report differed by up to 2.2× on a shared machine
// (bench/results/writepath-2026-12-07d.md). One off and one on run of each
// shape go first, unrecorded: the first run of a shape was up to 1.4×
// slower than the later ones of the same kind (bench/results/latest.md of
// 2026-12-07 10:08).
func runChainsOnOff(ctx context.Context, e *harness.Env, gen *loadgen.Generator, lastLoad time.Time) ([]chainOnOff, error) {
	var out []chainOnOff
	for _, shape := range []struct{ batch, writers, total int }{{500, 1, 25_000}, {32, 2, 10_000}} {
		for i, chain := range []bool{false, true, false, true, false, true, false} {
			c, err := chainOnOffOnce(ctx, e, gen, shape.batch, shape.writers, shape.total, chain, lastLoad)
			if err != nil {
				return out, err
			}
			warm := i < 2
			what := ""
			if warm {
				what = " (warm-up, not counted)"
			}
			harness.Logf("  batch %3d × %d writer(s), chain %-5v %8.0f rows/s, PostgreSQL %.0f µs/row%s", c.batch, c.writers, c.chain,
				c.rowsPerSec(), c.work.pgMicros(), what)
			if !warm {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// chainOnOffOnce is one run, on a store of its own that is closed before
// the second reading of the counters, so that they hold exactly this run.
func chainOnOffOnce(ctx context.Context, e *harness.Env, gen *loadgen.Generator, batch, writers, total int, chain bool, lastLoad time.Time) (chainOnOff, error) {
	bodies := make([][]byte, total)
	for i := range bodies {
		bodies[i] = gen.Body()
	}
	events, err := loadgen.DecodeEvents(bodies)
	if err != nil {
		return chainOnOff{}, err
	}
	if !chain {
		loadgen.StampUnchained(events, func(i int) int64 { return int64(i + 1) })
	}
	work := make(chan int, total/batch+1)
	for i := 0; i*batch < total; i++ {
		work <- i
	}
	close(work)
	res := chainOnOff{batch: batch, writers: writers, chain: chain}
	var mu sync.Mutex
	var first error
	res.work, err = measureWork(ctx, e, lastLoad, func() error {
		rt := &roundTripCounter{}
		st, err := store.Open(ctx, measuredURL(e), store.Options{MaxConns: 4, Tracer: rt})
		if err != nil {
			return err
		}
		defer st.Close()
		var pipe *ingest.Pipeline
		if chain {
			pipe = ingest.New(st, nil, ingest.Options{Writers: writers, MaxBatch: 2000}, nil, slog.New(slog.DiscardHandler))
			if err := pipe.Start(ctx); err != nil {
				return err
			}
			defer pipe.Stop(context.Background())
		}
		go0, rt0 := harness.SelfCPU(), rt.n.Load()
		deadline := time.Now().Add(time.Minute)
		start := time.Now()
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				for i := range work {
					if time.Now().After(deadline) || ctx.Err() != nil {
						return
					}
					part := events[i*batch : min((i+1)*batch, total)]
					var err error
					if chain {
						_, err = pipe.Submit(ctx, part)
					} else {
						_, err = st.InsertUnchained(ctx, part)
					}
					mu.Lock()
					if err == nil {
						res.rows += int64(len(part))
					} else if first == nil {
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
		res.elapsed, res.goCPU = time.Since(start), harness.SelfCPU()-go0
		res.roundTrips = rt.n.Load() - rt0
		return first
	})
	if err != nil {
		return res, fmt.Errorf("chains %v: %w", chain, err)
	}
	return res, nil
}
