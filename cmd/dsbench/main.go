// Command dsbench is the write-path benchmark of Data Storage (`make bench`).
//
// It starts its own PostgreSQL (durable: fsync, full-page writes and
// synchronous commit on) and Redis on 127.0.0.1, builds and runs the
// datastorage server against them, and drives it over HTTP:
//
//   - single-event POSTs at concurrency 1, 8 and 64;
//   - 500-event batch POSTs at concurrency 1 and 4;
//   - the raw limit: COPY of as many equivalent rows straight into
//     audit_events, in the same PostgreSQL;
//   - the cost of the hash chains: the store's insert with and without the
//     chain statements, through pgx directly (the product has no switch to
//     turn chains off);
//   - EXPLAIN of the hot-path statements at 5 and 36 monthly partitions.
//
// It prints a table and writes bench/results/latest.md. Every loop is bounded
// in count and in time, and every connection goes to 127.0.0.1.
//
//	go run ./cmd/dsbench [-duration 10s] [-warmup 3s] [-out bench/results/latest.md]
//	go run ./cmd/dsbench -experiments   # write-path design measurements → bench/results/experiments.md
//	go run ./cmd/dsbench -read [-read-events 10000000]   # read-path benchmark → bench/results/read.md
//	go run ./cmd/dsbench -catalog   # workflow catalog benchmark (catalog.go) → bench/results/catalog.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	duration    time.Duration
	warmup      time.Duration
	out         string
	serverBin   string
	experiments bool
	profileDir  string
	keep        bool
	serverEnv   []string
	only        string
	skipRaw     bool

	// historyCost measures the remediation read models' indexes (history_cost.go).
	historyCost bool
	// The read benchmark (read*.go).
	read            bool
	readEvents      int64
	readRequests    int
	readBudget      time.Duration
	readCursorPages int

	// The workflow catalog benchmark (catalog.go).
	catalog         bool
	catalogRequests int
}

func main() {
	if db := os.Getenv(naiveEnv); db != "" { // the naive writer's process (writepath.go)
		if err := runNaiveProcess(db); err != nil {
			fmt.Fprintln(os.Stderr, "dsbench naive writer:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each HTTP scenario")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up before each HTTP scenario")
	flag.StringVar(&o.out, "out", "", "report file (default bench/results/latest.md, or experiments.md with -experiments)")
	flag.StringVar(&o.serverBin, "server", "", "datastorage binary to run (default: go build ./cmd/datastorage)")
	flag.BoolVar(&o.experiments, "experiments", false, "run the write-path design experiments instead of the benchmark")
	flag.StringVar(&o.profileDir, "profiles", "bench/results/profiles", "where server CPU and heap profiles go (when the server exposes pprof)")
	flag.BoolVar(&o.keep, "keep", false, "leave the server, PostgreSQL and Redis running until Ctrl-C (for inspection)")
	flag.Func("server-env", "extra DATASTORAGE_…=value for the server, e.g. DATASTORAGE_INGEST_WRITERS=1 (repeatable; for tuning runs)", func(v string) error {
		if !strings.HasPrefix(v, "DATASTORAGE_") || !strings.Contains(v, "=") {
			return fmt.Errorf("want DATASTORAGE_KEY=value, got %q", v)
		}
		o.serverEnv = append(o.serverEnv, v)
		return nil
	})
	flag.StringVar(&o.only, "only", "", "run only the HTTP scenarios whose name contains this (e.g. c=64); tuning runs")
	flag.BoolVar(&o.skipRaw, "skip-raw", false, "skip the raw COPY, chain-cost and after-load EXPLAIN parts; tuning runs")
	flag.BoolVar(&o.historyCost, "history-index-cost", false, "measure what the remediation read models' candidate indexes cost the write path (writes bench/results/history-index-cost.md)")
	flag.BoolVar(&o.read, "read", false, "run the read-path benchmark instead (loads -read-events events; writes bench/results/read.md)")
	flag.Int64Var(&o.readEvents, "read-events", 10_000_000, "events the read benchmark loads")
	flag.IntVar(&o.readRequests, "read-requests", 200, "timed requests per read shape")
	flag.DurationVar(&o.readBudget, "read-budget", 60*time.Second, "most time spent timing one read shape")
	flag.IntVar(&o.readCursorPages, "read-cursor-pages", 1000, "pages walked by next_cursor before timing the deep cursor page")
	flag.BoolVar(&o.catalog, "catalog", false, "run the workflow catalog benchmark instead (writes bench/results/catalog.md)")
	flag.IntVar(&o.catalogRequests, "catalog-requests", 3000, "timed requests per catalog search and get shape")
	flag.Parse()
	if o.catalogRequests < 100 || o.catalogRequests > 100_000 {
		fmt.Fprintln(os.Stderr, "dsbench: -catalog-requests in [100, 100k]")
		os.Exit(2)
	}
	if o.readEvents < 10_000 || o.readEvents > 50_000_000 || o.readRequests < 1 || o.readRequests > 10_000 ||
		o.readBudget <= 0 || o.readBudget > 10*time.Minute || o.readCursorPages < 1 || o.readCursorPages > 100_000 {
		fmt.Fprintln(os.Stderr, "dsbench: -read-events in [10k, 50M], -read-requests in [1, 10k], -read-budget in (0, 10m], -read-cursor-pages in [1, 100k]")
		os.Exit(2)
	}
	if o.duration <= 0 || o.duration > 2*time.Minute || o.warmup < 0 || o.warmup > time.Minute {
		fmt.Fprintln(os.Stderr, "dsbench: -duration must be in (0, 2m] and -warmup in [0, 1m]")
		os.Exit(2)
	}
	if o.out == "" {
		o.out = "bench/results/latest.md"
		if o.experiments {
			o.out = "bench/results/experiments.md"
		}
		if o.read {
			o.out = "bench/results/read.md"
		}
		if o.historyCost {
			o.out = "bench/results/history-index-cost.md"
		}
		if o.catalog {
			o.out = "bench/results/catalog.md"
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A hard bound on the whole run, whatever happens.
	limit := 20 * time.Minute
	if o.read {
		// Loading and indexing 10M events takes most of this on 2 CPUs.
		limit = 2 * time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	var err error
	if o.historyCost {
		err = runHistoryIndexCost(ctx, o) // history_cost.go
	} else if o.catalog {
		err = runCatalog(ctx, o)
	} else if o.read {
		err = runRead(ctx, o)
	} else if o.experiments {
		err = runExperiments(ctx, o)
	} else {
		err = runBench(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsbench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "dsbench %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// prepare makes the work directory and the server binary.
func prepare(ctx context.Context, o options) (workDir, bin string, err error) {
	workDir, err = os.MkdirTemp("", "dsbench-")
	if err != nil {
		return "", "", err
	}
	bin = o.serverBin
	if bin == "" {
		logf("building ./cmd/datastorage")
		if bin, err = buildServer(ctx, workDir); err != nil {
			return "", "", err
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return "", "", err
	}
	return workDir, bin, nil
}

func runBench(ctx context.Context, o options) error {
	workDir, bin, err := prepare(ctx, o)
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)
	e, err := startEnv(ctx, bin, workDir, o.serverEnv)
	if err != nil {
		return err
	}
	defer e.close()
	r := &report{started: time.Now(), opts: o}
	r.facts = collectFacts(ctx, e)
	if len(o.serverEnv) > 0 {
		r.facts.pool += "; overrides: " + strings.Join(o.serverEnv, " ")
	}

	logf("EXPLAIN of the hot-path statements at the server's own partitions")
	if r.explain5, err = explainSet(ctx, e, false); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if r.partitionsBefore, err = createPartitions(ctx, e, 36); err != nil {
		return err
	}
	r.partitions = 36
	logf("EXPLAIN at 36 partitions (empty)")
	if r.explain36, err = explainSet(ctx, e, false); err != nil {
		return fmt.Errorf("explain: %w", err)
	}

	gen := newEventGen(1, 1000, time.Now())
	single := make([][]byte, 4096)
	var size int
	for i := range single {
		single[i] = gen.body()
		size += len(single[i])
	}
	r.eventBytes = size / len(single)
	batches := make([][]byte, 24)
	for i := range batches {
		batches[i] = gen.batchBody(500)
	}

	specs := []loadSpec{
		{name: "single c=1", batch: 1, concurrency: 1, parentEvery: 4},
		{name: "single c=8", batch: 1, concurrency: 8, parentEvery: 4},
		{name: "single c=64", batch: 1, concurrency: 64, parentEvery: 4},
		{name: "batch500 c=1", batch: 500, concurrency: 1},
		{name: "batch500 c=4", batch: 500, concurrency: 4},
	}
	for _, spec := range specs {
		if o.only != "" && !strings.Contains(spec.name, o.only) {
			continue
		}
		spec.warmup, spec.duration = o.warmup, o.duration
		bodies := single
		if spec.batch > 1 {
			bodies = batches
		}
		res, err := runScenario(ctx, e, r, spec, bodies)
		if err != nil {
			return err
		}
		r.loads = append(r.loads, res)
		logf("%-13s %8.0f events/s  p50 %s  p99 %s  errors %d", spec.name, res.eventsPerSec(),
			fmtDur(res.percentile(.5)), fmtDur(res.percentile(.99)), res.errorCount())
		if res.firstErr != "" {
			logf("  first error: %s", res.firstErr)
		}
	}
	if o.only == "" || strings.Contains("naive c=1", o.only) {
		if err := runNaiveComparison(ctx, e, r, single); err != nil { // writepath.go
			return err
		}
	}
	r.serverPeakRSSAll = peakRSS(e.serverPID())

	rows := int64(0)
	for _, l := range r.loads {
		if l.spec.batch > 1 {
			rows = max(rows, l.events)
		}
	}
	rows = min(max(rows, 50_000), 400_000)
	if o.skipRaw {
		return finishReport(ctx, e, r, o)
	}
	logf("raw limit: COPY of %d rows straight into audit_events", rows)
	if r.wp.copyWork, err = measureWork(ctx, e, func() (err error) {
		r.copy, err = rawCopy(ctx, e, gen, rows)
		return err
	}); err != nil {
		return fmt.Errorf("raw copy: %w", err)
	}
	logf("COPY: %.0f rows/s", r.copy.rowsPerSec())

	logf("hash chain cost: the store's insert with and without chain statements")
	if r.chain, err = chainCost(ctx, e, gen); err != nil {
		return fmt.Errorf("chain cost: %w", err)
	}
	logf("chains on vs off, rollups on in both (writepath.go)")
	if r.wp.chains, err = runChainsOnOff(ctx, e, gen); err != nil {
		r.wp.chainsErr = err.Error()
	}
	logf("EXPLAIN at 36 partitions (after the load)")
	if r.explainLoaded, err = explainSet(ctx, e, true); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	return finishReport(ctx, e, r, o)
}

func finishReport(ctx context.Context, e *env, r *report, o options) error {
	r.rowsInTable = countRows(ctx, e)
	r.finished = time.Now()

	md := r.markdown()
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println(r.summaryTable())
	logf("report written to %s", o.out)
	if o.keep {
		logf("-keep: server %s, database %s; Ctrl-C to stop", e.api, e.dbURL)
		<-ctx.Done()
	}
	return nil
}

// commandLine is how this run was started, for the report's first line: a
// committed report in bench/results/ says what wrote it.
func commandLine() string {
	args := []string{"go run ./cmd/dsbench"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}
