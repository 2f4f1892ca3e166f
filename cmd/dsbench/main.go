// Command dsbench is the HTTP benchmark of Data Storage (`make bench`,
// `make bench-read`).
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
//   - EXPLAIN of the hot-path statements at 5 and 36 monthly partitions;
//   - what Redis's WAIT costs a spooled write: PostgreSQL stopped, a Redis
//     master with one replica, redis.minReplicas 0 vs 1 side by side.
//
// It prints a table and writes the report (-out). Every loop is bounded in
// count and in time, and every connection goes to 127.0.0.1.
//
//	go run ./cmd/dsbench [-duration 10s] [-warmup 3s] [-out bench/results/latest.md]
//	go run ./cmd/dsbench -read [-read-events 10000000]   # read-path benchmark → bench/results/read.md
//	go run ./cmd/dsbench -catalog   # workflow catalog benchmark → bench/results/catalog.md
//
// This file parses and checks the flags and picks the scenario; the
// scenarios and their reports are package scenario, the processes package
// harness, the HTTP load package loadgen. The write-path experiments that
// measure statements against PostgreSQL alone (-experiments,
// -history-index-cost) are Go benchmarks of internal/store now (`make
// bench-store`); the flags remain to say so.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/scenario"
)

// mode is which benchmark a run does.
type mode int

const (
	modeWrite mode = iota
	modeRead
	modeCatalog
	modeArchive
)

// config is the parsed command line.
type config struct {
	mode mode
	opts scenario.Options
}

// errMoved is what -experiments and -history-index-cost answer: their
// measurements are the store's Go benchmarks now.
var errMoved = errors.New("the write-path experiments are Go benchmarks of internal/store now: " +
	"make bench-store, or go test -run '^$' -bench 'IndexCost|WriteStatement|ChainCost' ./internal/store/ " +
	"(BenchmarkIndexCost has the remediation read models' candidate indexes)")

// parseArgs parses dsbench's flags (args without the program name) and
// checks their ranges; output receives -help and the parse errors.
func parseArgs(args []string, output io.Writer) (config, error) {
	var (
		c                        config
		o                        = &c.opts
		experiments, historyCost bool
		read, catalog, archiveB  bool
	)
	fs := flag.NewFlagSet("dsbench", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of each HTTP scenario")
	fs.DurationVar(&o.Warmup, "warmup", 3*time.Second, "warm-up before each HTTP scenario")
	fs.StringVar(&o.Out, "out", "", "report file (default bench/results/latest.md, read.md with -read, catalog.md with -catalog)")
	fs.StringVar(&o.ServerBin, "server", "", "datastorage binary to run (default: go build ./cmd/datastorage)")
	fs.BoolVar(&experiments, "experiments", false, "moved: the write-path design experiments are the store benchmarks (make bench-store)")
	fs.StringVar(&o.ProfileDir, "profiles", "bench/results/profiles", "where server CPU and heap profiles go (when the server exposes pprof)")
	fs.BoolVar(&o.Keep, "keep", false, "leave the server, PostgreSQL and Redis running until Ctrl-C (for inspection)")
	fs.Func("server-env", "extra DATASTORAGE_…=value for the server, e.g. DATASTORAGE_INGEST_WRITERS=1 (repeatable; for tuning runs)", func(v string) error {
		if !strings.HasPrefix(v, "DATASTORAGE_") || !strings.Contains(v, "=") {
			return fmt.Errorf("want DATASTORAGE_KEY=value, got %q", v)
		}
		o.ServerEnv = append(o.ServerEnv, v)
		return nil
	})
	fs.StringVar(&o.Only, "only", "", "run only the HTTP scenarios whose name contains this (e.g. c=64); tuning runs")
	fs.BoolVar(&o.SkipRaw, "skip-raw", false, "skip the raw COPY, chain-cost and after-load EXPLAIN parts; tuning runs")
	fs.Func("spread", "how the write benchmark's events spread: remediation (default: each correlation in one namespace and cluster, stamped within 2 s) or scattered (every event in a random namespace and cluster, stamped within the hour)", func(v string) (err error) {
		o.Spread, err = loadgen.ParseSpread(v)
		return err
	})
	fs.BoolVar(&o.SkipSpool, "skip-spool", false, "skip the spool scenario (spooled writes with PostgreSQL stopped, redis.minReplicas 0 vs 1: what WAIT costs); tuning runs")
	fs.StringVar(&o.Standby, "standby", "", "write benchmark with a streaming standby of PostgreSQL: async, or sync (every commit waits for it)")
	fs.BoolVar(&historyCost, "history-index-cost", false, "moved: the read models' index cost is BenchmarkIndexCost in internal/store (make bench-store)")
	fs.BoolVar(&read, "read", false, "run the read-path benchmark instead (loads -read-events events; writes bench/results/read.md)")
	fs.Int64Var(&o.ReadEvents, "read-events", 10_000_000, "events the read benchmark loads")
	fs.IntVar(&o.ReadRequests, "read-requests", 200, "timed requests per read shape")
	fs.DurationVar(&o.ReadBudget, "read-budget", 60*time.Second, "most time spent timing one read shape")
	fs.IntVar(&o.ReadCursorPages, "read-cursor-pages", 1000, "pages walked by next_cursor before timing the deep cursor page")
	fs.BoolVar(&archiveB, "archive", false, "run the archive benchmark instead: -archive-events events in an old month archived to a directory (writes bench/results/archive.md)")
	fs.Int64Var(&o.ArchiveEvents, "archive-events", 10_000_000, "events of the month the archive benchmark archives")
	fs.BoolVar(&o.ArchiveCompare, "archive-compare", false, "with -archive: before the run, time the month read sorted by PostgreSQL, in physical order, and by ctid after a narrow sort")
	fs.BoolVar(&catalog, "catalog", false, "run the workflow catalog benchmark instead (writes bench/results/catalog.md)")
	fs.IntVar(&o.CatalogRequests, "catalog-requests", 3000, "timed requests per catalog search and get shape")
	o.Args = args
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (dsbench takes flags only)", fs.Arg(0))
	}
	if experiments || historyCost {
		return config{}, errMoved
	}
	if (read && catalog) || (read && archiveB) || (catalog && archiveB) {
		return config{}, errors.New("-read, -archive and -catalog are different benchmarks: pick one")
	}
	if o.ArchiveEvents < 10_000 || o.ArchiveEvents > 50_000_000 {
		return config{}, errors.New("-archive-events in [10k, 50M]")
	}
	if o.CatalogRequests < 100 || o.CatalogRequests > 100_000 {
		return config{}, errors.New("-catalog-requests in [100, 100k]")
	}
	if o.ReadEvents < 10_000 || o.ReadEvents > 50_000_000 || o.ReadRequests < 1 || o.ReadRequests > 10_000 ||
		o.ReadBudget <= 0 || o.ReadBudget > 10*time.Minute || o.ReadCursorPages < 1 || o.ReadCursorPages > 100_000 {
		return config{}, errors.New("-read-events in [10k, 50M], -read-requests in [1, 10k], -read-budget in (0, 10m], -read-cursor-pages in [1, 100k]")
	}
	if o.Standby != "" && o.Standby != "async" && o.Standby != "sync" {
		return config{}, fmt.Errorf("-standby: want async or sync, got %q", o.Standby)
	}
	if o.Duration <= 0 || o.Duration > 2*time.Minute || o.Warmup < 0 || o.Warmup > time.Minute {
		return config{}, errors.New("-duration must be in (0, 2m] and -warmup in [0, 1m]")
	}
	switch {
	case read:
		c.mode = modeRead
	case catalog:
		c.mode = modeCatalog
	case archiveB:
		c.mode = modeArchive
	}
	if o.Out == "" {
		o.Out = map[mode]string{
			modeWrite:   "bench/results/latest.md",
			modeRead:    "bench/results/read.md",
			modeCatalog: "bench/results/catalog.md",
			modeArchive: "bench/results/archive.md",
		}[c.mode]
	}
	return c, nil
}

// runLimit is a hard bound on the whole run, whatever happens.
func (c config) runLimit() time.Duration {
	if c.mode == modeRead || c.mode == modeArchive {
		// Loading and indexing 10M events takes most of this on 2 CPUs.
		return 2 * time.Hour
	}
	return 20 * time.Minute
}

func main() {
	if db := os.Getenv(scenario.NaiveWriterEnv); db != "" { // the naive writer's process (scenario/writepath.go)
		if err := scenario.RunNaiveWriter(db); err != nil {
			fmt.Fprintln(os.Stderr, "dsbench naive writer:", err)
			os.Exit(1)
		}
		return
	}
	c, err := parseArgs(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.runLimit())
	defer cancel()

	switch c.mode {
	case modeRead:
		err = scenario.RunRead(ctx, c.opts)
	case modeCatalog:
		err = scenario.RunCatalog(ctx, c.opts)
	case modeArchive:
		err = scenario.RunArchive(ctx, c.opts)
	default:
		err = scenario.RunWrite(ctx, c.opts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsbench:", err)
		os.Exit(1)
	}
}
