package scenario

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
)

// writeReport is everything one run measured.
type writeReport struct {
	opts              Options
	started, finished time.Time
	facts             facts
	eventBytes        int
	partitionsBefore  int
	partitions        int
	explain5          []explainRow
	explain36         []explainRow
	explainLoaded     []explainRow
	loads             []loadResult
	copy              copyResult
	serverPeakRSSAll  int64
	rowsInTable       int64
	wp                writepathReport // writepath.go
	spoolWait         spoolWaitResult // spoolwait.go
	sync              syncLatency     // disksync.go
	// loadEnded is when the last load through the server ended: the
	// next reading of PostgreSQL's counters waits statsIdleFlush after it.
	loadEnded time.Time
}

// awaitPublished waits until the counters of the last load are all
// published before a scenario whose window starts after warmup.
func (r *writeReport) awaitPublished(ctx context.Context, warmup time.Duration) {
	if !r.loadEnded.IsZero() {
		loadgen.SleepUntil(ctx, r.loadEnded.Add(statsIdleFlush-warmup))
	}
}

type facts struct {
	cpus       int
	cpuModel   string
	memory     string
	kernel     string
	goVersion  string
	pgVersion  string
	redis      string
	gitRev     string
	loadAvg    string
	pgSettings [][2]string
	pool       string
}

func collectFacts(ctx context.Context, e *harness.Env) facts {
	f := facts{cpus: runtime.NumCPU()}
	if out := command(ctx, "nproc"); out != "" {
		fmt.Sscan(out, &f.cpus)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				f.cpuModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	for line := range strings.SplitSeq(command(ctx, "free", "-m"), "\n") {
		if strings.HasPrefix(line, "Mem:") {
			fs := strings.Fields(line)
			if len(fs) > 1 {
				f.memory = fs[1] + " MiB total"
			}
		}
	}
	f.kernel = command(ctx, "uname", "-sr")
	f.goVersion = command(ctx, "go", "version")
	f.redis = command(ctx, "redis-server", "--version")
	f.gitRev = command(ctx, "git", "describe", "--always", "--dirty")
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f.loadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	withConn(ctx, e, func(c *pgx.Conn) error {
		if err := c.QueryRow(ctx, "SELECT version()").Scan(&f.pgVersion); err != nil {
			return err
		}
		names := []string{"fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "wal_level",
			"shared_buffers", "wal_buffers", "max_wal_size", "checkpoint_timeout", "commit_delay",
			"max_connections", "huge_pages", "work_mem", "jit"}
		rows, err := c.Query(ctx, `SELECT name, current_setting(name) FROM unnest($1::text[]) WITH ORDINALITY AS s(name, i) ORDER BY i`, names)
		if err != nil {
			return err
		}
		var n, v string
		_, err = pgx.ForEachRow(rows, []any{&n, &v}, func() error {
			f.pgSettings = append(f.pgSettings, [2]string{n, v})
			return nil
		})
		return err
	})
	f.pool = fmt.Sprintf("defaults: database.maxConns %d (4 × CPUs), ingest.writers 2, ingest.smallCommits 1, ingest.maxBatch 2000, ingest.queueSize 20000", 4*f.cpus)
	return f
}

func command(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func (r *writeReport) ratio(eventsPerSec float64) string {
	if r.copy.rowsPerSec() == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*eventsPerSec/r.copy.rowsPerSec())
}

func (r *writeReport) load(name string) (loadResult, bool) {
	for _, l := range r.loads {
		if l.Spec.Name == name {
			return l, true
		}
	}
	return loadResult{}, false
}

// summaryTable is the table printed at the end of the run.
func (r *writeReport) summaryTable() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tevents/s\tp50\tp95\tp99\tmax\terrors\tvs COPY\tpeak RSS\t")
	for _, l := range r.loads {
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", l.Spec.Name, l.EventsPerSec(),
			report.Dur(l.Percentile(.5)), report.Dur(l.Percentile(.95)), report.Dur(l.Percentile(.99)), report.Dur(l.Max()),
			l.ErrorCount(), r.ratio(l.EventsPerSec()), report.MB(l.peakRSS))
	}
	fmt.Fprintf(w, "raw COPY\t%.0f\t\t\t\t\t\t100 %%\t\t\n", r.copy.rowsPerSec())
	w.Flush()
	return b.String()
}

func (r *writeReport) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	f := r.facts
	p("# Write-path benchmark")
	p("")
	p("Generated by `%s` (`make bench`) on %s, in %s.", report.CommandLine(r.opts.Args), r.started.UTC().Format("2006-01-02 15:04 MST"),
		r.finished.Sub(r.started).Round(time.Second))
	p("")
	p("| | |")
	p("|---|---|")
	p("| machine | %d CPUs (`nproc`), %s, %s (`free -m`), %s |", f.cpus, f.cpuModel, f.memory, f.kernel)
	p("| Go | %s |", f.goVersion)
	p("| PostgreSQL | %s |", f.pgVersion)
	p("| Redis | %s |", f.redis)
	p("| source | `%s` |", f.gitRev)
	p("| machine load at start | %s (load average 1, 5, 15 min; anything well above 0 means other work shared the CPUs, see *others* below) |", f.loadAvg)
	p("| server | `datastorage serve`, %s; logging.level warn |", f.pool)
	p("| partitions | %d monthly partitions of audit_events during the load (the server made %d, the benchmark added the rest) |", r.partitions, r.partitionsBefore)
	p("| events | ~%d bytes of JSON each, server-assigned ids (UUIDv7), 1,000 distinct correlation ids, spread %s (%s); every 4th single event names the worker's previous event as parent |", r.eventBytes, r.opts.Spread, spreadText(r.opts.Spread))
	p("| rows at the end | %d in audit_events |", r.rowsInTable)
	p("")
	p("Server, PostgreSQL and the load generator share the same %d CPUs: every figure below is bounded by that, and the CPU columns say who used what.", f.cpus)
	p("")
	p("PostgreSQL settings (durable, production-like; started by the benchmark):")
	p("")
	p("| setting | value |")
	p("|---|---|")
	for _, s := range f.pgSettings {
		p("| %s | %s |", s[0], s[1])
	}
	p("")

	p("## Results")
	p("")
	p("Each HTTP scenario: %s warm-up, then %s measured; every worker sends one request at a time over a kept-alive connection. Latency is per request, as the client sees it.", r.opts.Warmup, r.opts.Duration)
	p("")
	p("| scenario | events/s | p50 | p95 | p99 | max | errors | vs raw COPY | CPU µs/event: server / PostgreSQL / load gen | CPUs busy: ours + others | server peak RSS |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, l := range r.loads {
		s, g, lg := l.cpu.perEventMicros(l.Events)
		ours := (l.cpu.server + l.cpu.postgres + l.cpu.loadgen) / max(l.cpu.window, 1e-9)
		p("| %s | %.0f | %s | %s | %s | %s | %d | %s | %.0f / %.0f / %.0f | %.2f + %.2f | %s |", l.Spec.Name, l.EventsPerSec(),
			report.Dur(l.Percentile(.5)), report.Dur(l.Percentile(.95)), report.Dur(l.Percentile(.99)), report.Dur(l.Max()),
			l.ErrorCount(), r.ratio(l.EventsPerSec()), s, g, lg, ours, l.cpu.others()/max(l.cpu.window, 1e-9), report.MB(l.peakRSS))
	}
	p("| raw COPY into audit_events | %.0f rows/s | | | | | | 100 %% | – / %.0f / – | | |", r.copy.rowsPerSec(),
		r.copy.pgCPU/float64(max(r.copy.rows, 1))*1e6)
	p("")
	p("*CPUs busy* is how many of the %d CPUs were in use on average during the measured window: by the server, PostgreSQL and the load generator together, and by everything else on the machine (other processes, the kernel's own work).", f.cpus)
	p("")
	p("Raw COPY: %d rows equivalent to the batch scenario's events (same generator and values, stand-in hashes), binary COPY from one connection, %d rows per COPY and commit, into the same partitioned table with the same indexes, in %s.",
		r.copy.rows, copyChunk, r.copy.elapsed.Round(time.Millisecond))
	p("")
	p("Server peak RSS over the whole run (VmHWM): %s.", report.MB(r.serverPeakRSSAll))
	p("")
	b.WriteString(r.serverWorkMarkdown())
	for _, l := range r.loads {
		if len(l.Errors) > 0 {
			p("")
			p("Errors in %s: %v; first: `%s`", l.Spec.Name, l.Errors, l.FirstErr)
		}
	}
	p("")

	b.WriteString(r.writepathMarkdown()) // writepath_report.go
	b.WriteString(r.spoolWaitMarkdown()) // spoolwait.go
	p("## Targets")
	p("")
	p("| target | measured | met |")
	p("|---|---|---|")
	if l, ok := r.load("single c=64"); ok {
		p("| single-event POST c=64: ≥ 10,000 events/s | %.0f events/s | %s |", l.EventsPerSec(), report.Yes(l.EventsPerSec() >= 10_000))
		p("| single-event POST c=64: p99 ≤ 25 ms | %s | %s |", report.Dur(l.Percentile(.99)), report.Yes(l.Percentile(.99) <= 25*time.Millisecond))
		p("| server RSS ≤ 150 MB at c=64 | %s | %s |", report.MB(l.peakRSS), report.Yes(l.peakRSS <= 150<<20))
	}
	if l, ok := r.load("single c=1"); ok {
		p("| single-event POST c=1: p99 ≤ 2 ms | %s | %s |", report.Dur(l.Percentile(.99)), report.Yes(l.Percentile(.99) <= 2*time.Millisecond))
	}
	for _, name := range []string{"batch500 c=1", "batch500 c=4"} {
		if l, ok := r.load(name); ok {
			p("| %s: ≥ 80 %% of raw COPY | %s (%.0f of %.0f) | %s |", name, r.ratio(l.EventsPerSec()), l.EventsPerSec(), r.copy.rowsPerSec(),
				report.Yes(l.EventsPerSec() >= .8*r.copy.rowsPerSec()))
		}
	}
	p("")

	p("## Planning at 36 partitions")
	p("")
	p("Each hot-path statement, in the store's own text, through PREPARE/EXECUTE as pgx runs it (named prepared statements), `EXPLAIN (ANALYZE)` %d times per plan-cache mode; medians. *custom* re-plans at every execution with the values (what PostgreSQL's default `auto` mode does for the first five executions, and afterwards when it keeps custom plans); *generic* plans once and prunes partitions at executor start. *auto settles on* is what the default mode uses from the sixth execution on. (EXECUTE takes its arguments as literals, which PostgreSQL parses inside what EXPLAIN calls planning; with one row of the insert and a few ids that is negligible. pgx sends them in binary.)", explainReps)
	p("")
	p("| statement | plan mode | planning ms, %d partitions (empty) | planning ms, 36 (empty) | planning ms, 36 (after load) | execution ms, 36 (after load) | partitions scanned / pruned at start | auto settles on |", r.partitionsBefore)
	p("|---|---|--:|--:|--:|--:|--:|---|")
	for i, row := range r.explainLoaded {
		var p5, p36 explainRow
		if i < len(r.explain5) {
			p5 = r.explain5[i]
		}
		if i < len(r.explain36) {
			p36 = r.explain36[i]
		}
		plan := func(x explainRow) string {
			if x.mode == "generic" {
				return fmt.Sprintf("%.3f (first %.3f)", x.planMS, x.firstPlanMS)
			}
			return fmt.Sprintf("%.3f", x.planMS)
		}
		auto := "custom"
		if row.autoGeneric {
			auto = "generic"
		}
		p("| %s | %s | %s | %s | %s | %.3f | %d / %d | %s |", row.stmt, row.mode, plan(p5), plan(p36), plan(row), row.execMS, row.scanned, row.removed, auto)
	}
	p("")

	for _, l := range r.loads {
		if l.deep == nil {
			continue
		}
		d := l.deep
		p("## Where the time goes: %s", l.Spec.Name)
		p("")
		p("pg_stat_statements over the measured window (top by planning + execution time):")
		p("")
		p("| statement | calls | rows | mean plan ms | mean exec ms | total ms |")
		p("|---|--:|--:|--:|--:|--:|")
		for _, s := range d.statements {
			p("| `%s` | %d | %d | %.3f | %.3f | %.0f |", strings.ReplaceAll(s.query, "|", "\\|"), s.calls, s.rows, s.meanPlan, s.meanExec, s.totalMS)
		}
		p("")
		if d.waits.samples > 0 {
			p("What the server's PostgreSQL backends were doing (pg_stat_activity every 10 ms, %d samples; `idle` backends not counted; average per sample):", d.waits.samples)
			p("")
			p("| state / wait | backends |")
			p("|---|--:|")
			type kv struct {
				k string
				v int
			}
			var kvs []kv
			for k, v := range d.waits.counts {
				kvs = append(kvs, kv{k, v})
			}
			slices.SortFunc(kvs, func(a, b kv) int { return b.v - a.v })
			for _, x := range kvs {
				p("| %s | %.2f |", x.k, float64(x.v)/float64(d.waits.samples))
			}
			p("")
		}
		if d.wal.syncs > 0 && l.Events > 0 {
			win := l.cpu.window
			p("WAL: %.0f bytes/event, %.0f WAL records/event, %.0f flushes/s, %.2f ms per flush on average.",
				float64(d.wal.bytes)/float64(l.Events), float64(d.wal.records)/float64(l.Events),
				float64(d.wal.syncs)/win, d.wal.syncMS/float64(d.wal.syncs))
			p("")
		}
		if d.cpuTop != "" {
			p("<details><summary>server CPU profile (go tool pprof -top)</summary>")
			p("")
			p("```")
			p("%s", d.cpuTop)
			p("```")
			p("</details>")
			p("")
		}
		if d.allocTop != "" {
			p("<details><summary>server allocations (go tool pprof -top -sample_index=alloc_space)</summary>")
			p("")
			p("```")
			p("%s", d.allocTop)
			p("```")
			p("</details>")
			p("")
		}
	}
	return b.String()
}

// serverWorkMarkdown is the server's own work per event in every HTTP
// scenario, and the naive writer's where it was run: CPU, heap allocations
// (exact counts from the server's /metrics) and the context switches of its
// threads, the last two independent of what else ran on the machine.
func (r *writeReport) serverWorkMarkdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("The server's work per event over each measured window: CPU (shared machine: indicative), heap allocations (`go_memstats_mallocs_total` and `go_memstats_alloc_bytes_total` of its /metrics; the two scrapes add a few hundred objects per window) and context switches of all its threads (`/proc/<pid>/task/*/status`: a voluntary one is a thread that blocked, on the network or a goroutine hand-off). Profiles of every scenario: `%s/{cpu,allocs}-<scenario>.pprof`.", r.opts.ProfileDir)
	p("")
	p("| scenario | server CPU µs/event | heap allocations/event | heap KB/event | context switches/event: voluntary / involuntary |")
	p("|---|--:|--:|--:|--:|")
	row := func(name string, l loadResult) {
		s, _, _ := l.cpu.perEventMicros(l.Events)
		allocs, kb := "–", "–"
		if l.srv.allocsOK {
			allocs = fmt.Sprintf("%.0f", perEvent(l.srv.allocs, l.Events))
			kb = fmt.Sprintf("%.1f", perEvent(l.srv.allocBytes, l.Events)/1024)
		}
		p("| %s | %.0f | %s | %s | %.2f / %.2f |", name, s, allocs, kb,
			perEvent(l.srv.ctxVol, l.Events), perEvent(l.srv.ctxInvol, l.Events))
	}
	for _, l := range r.loads {
		row(l.Spec.Name, l)
	}
	for i, l := range r.wp.naive {
		row(fmt.Sprintf("naive writer c=1, round %d", i+1), l)
		if i < len(r.wp.again) {
			row(fmt.Sprintf("single c=1, round %d (alternating)", i+1), r.wp.again[i])
		}
	}
	p("")
	return b.String()
}

// spreadText says what a loadgen.Spread does, for the report.
func spreadText(s loadgen.Spread) string {
	if s == loadgen.SpreadScattered {
		return "every event in a random one of 8 namespaces and 4 clusters, stamped anywhere in the hour before the run"
	}
	return "each correlation in one namespace and cluster, as a remediation acts on one workload; stamped within the 2 s before the run"
}
