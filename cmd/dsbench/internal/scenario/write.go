package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
)

// RunWrite is the write benchmark (`make bench`): EXPLAIN of the hot-path
// statements at the server's partitions and at 36, the HTTP scenarios, the
// raw COPY limit and the chain cost (unless o.SkipRaw), then the report in
// o.Out.
func RunWrite(ctx context.Context, o Options) error {
	workDir, bin, err := harness.Prepare(ctx, o.ServerBin)
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)
	e, err := harness.StartEnv(ctx, bin, workDir, o.ServerEnv, harness.PGSettings())
	if err != nil {
		return err
	}
	defer e.Close()
	stopStandby, err := e.AddStandby(ctx, o.Standby)
	if err != nil {
		return err
	}
	defer stopStandby()
	r := &writeReport{started: time.Now(), opts: o}
	r.facts = collectFacts(ctx, e)
	if len(o.ServerEnv) > 0 {
		r.facts.pool += "; overrides: " + strings.Join(o.ServerEnv, " ")
	}
	if o.Standby != "" {
		r.facts.pool += "; with a streaming standby (" + o.Standby + ") on the same machine"
	}

	harness.Logf("flush latency of the disk under PostgreSQL's WAL")
	if r.sync, err = measureSync(filepath.Join(e.PG.DataDir, "pg_wal"), 2000); err != nil {
		return fmt.Errorf("flush latency: %w", err)
	}

	harness.Logf("EXPLAIN of the hot-path statements at the server's own partitions")
	if r.explain5, err = explainSet(ctx, e, false); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if r.partitionsBefore, err = createPartitions(ctx, e, 36); err != nil {
		return err
	}
	r.partitions = 36
	harness.Logf("EXPLAIN at 36 partitions (empty)")
	if r.explain36, err = explainSet(ctx, e, false); err != nil {
		return fmt.Errorf("explain: %w", err)
	}

	gen := loadgen.NewGenerator(1, 1000, time.Now(), o.Spread)
	single := make([][]byte, 4096)
	var size int
	for i := range single {
		single[i] = gen.Body()
		size += len(single[i])
	}
	r.eventBytes = size / len(single)
	batches := make([][]byte, 24)
	for i := range batches {
		batches[i] = gen.BatchBody(500)
	}

	specs := []loadgen.Spec{
		{Name: "single c=1", Batch: 1, Concurrency: 1, ParentEvery: 4},
		{Name: "single c=8", Batch: 1, Concurrency: 8, ParentEvery: 4},
		{Name: "single c=64", Batch: 1, Concurrency: 64, ParentEvery: 4},
		{Name: "batch500 c=1", Batch: 500, Concurrency: 1},
		{Name: "batch500 c=4", Batch: 500, Concurrency: 4},
	}
	for _, spec := range specs {
		if o.Only != "" && !strings.Contains(spec.Name, o.Only) {
			continue
		}
		spec.Warmup, spec.Duration = o.Warmup, o.Duration
		bodies := single
		if spec.Batch > 1 {
			bodies = batches
		}
		res, err := runScenario(ctx, e, r, spec, bodies)
		if err != nil {
			return err
		}
		r.loads = append(r.loads, res)
		harness.Logf("%-13s %8.0f events/s  p50 %s  p99 %s  errors %d", spec.Name, res.EventsPerSec(),
			report.Dur(res.Percentile(.5)), report.Dur(res.Percentile(.99)), res.ErrorCount())
		if res.FirstErr != "" {
			harness.Logf("  first error: %s", res.FirstErr)
		}
	}
	if o.Only == "" || strings.Contains("naive c=1", o.Only) {
		if err := runNaiveComparison(ctx, e, r, single); err != nil { // writepath.go
			return err
		}
	}
	r.serverPeakRSSAll = harness.PeakRSS(e.ServerPID())
	if !o.SkipSpool && (o.Only == "" || slices.ContainsFunc(spoolWaitSpecs, func(s loadgen.Spec) bool { return strings.Contains(s.Name, o.Only) })) {
		harness.Logf("what WAIT costs: spooled writes, redis.minReplicas 0 vs 1 (spoolwait.go)")
		if r.spoolWait, err = runSpoolWait(ctx, bin, workDir, o.Only, gen); err != nil {
			if ctx.Err() != nil {
				return err
			}
			harness.Logf("spool scenario: %v", err)
			r.spoolWait.err = err.Error()
		}
	}

	rows := int64(0)
	for _, l := range r.loads {
		if l.Spec.Batch > 1 {
			rows = max(rows, l.Events)
		}
	}
	rows = min(max(rows, 50_000), 400_000)
	if o.SkipRaw {
		return finishReport(ctx, e, r, o)
	}
	harness.Logf("raw limit: COPY of %d rows straight into audit_events", rows)
	if r.wp.copyWork, err = measureWork(ctx, e, r.loadEnded, func() (err error) {
		r.copy, err = rawCopy(ctx, e, gen, rows)
		return err
	}); err != nil {
		return fmt.Errorf("raw copy: %w", err)
	}
	harness.Logf("COPY: %.0f rows/s", r.copy.rowsPerSec())

	harness.Logf("chains on vs off, rollups on in both (writepath.go)")
	if r.wp.chains, err = runChainsOnOff(ctx, e, gen, r.loadEnded); err != nil {
		r.wp.chainsErr = err.Error()
	}
	harness.Logf("EXPLAIN at 36 partitions (after the load)")
	if r.explainLoaded, err = explainSet(ctx, e, true); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	return finishReport(ctx, e, r, o)
}

func finishReport(ctx context.Context, e *harness.Env, r *writeReport, o Options) error {
	r.rowsInTable = countRows(ctx, e)
	r.finished = time.Now()

	if err := report.Write(o.Out, r.markdown(), ""); err != nil {
		return err
	}
	fmt.Println(r.summaryTable())
	harness.Logf("report written to %s", o.Out)
	if o.Keep {
		harness.Logf("-keep: server %s, database %s; Ctrl-C to stop", e.API, e.DBURL)
		<-ctx.Done()
	}
	return nil
}
