package scenario

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
)

// What WAIT costs (issue 13): with redis.minReplicas above 0 a spooled
// write is answered only once Redis's WAIT counts that many replicas
// holding it. The scenario runs the real service with PostgreSQL stopped,
// so that every write takes the spooled path, against a Redis master with
// one replica, once with redis.minReplicas 0 and once with 1, each request
// shape measured back to back on the two servers so that the ratio comes
// from the same minute of the same machine.

// spoolWaitModes are the redis.minReplicas values compared; the first is
// the baseline.
var spoolWaitModes = []int{0, 1}

// spoolWaitSpecs are the request shapes: one event per request alone (the
// latency WAIT adds) and concurrent, and batches (WAIT once per append).
var spoolWaitSpecs = []loadgen.Spec{
	{Name: "spool single c=1", Batch: 1, Concurrency: 1},
	{Name: "spool single c=8", Batch: 1, Concurrency: 8},
	{Name: "spool batch100 c=2", Batch: 100, Concurrency: 2},
}

// The spool scenario's own window and warm-up: short, because it runs six
// windows and `make bench` is long already; the figures are ratios measured
// side by side, which a short window serves as well as a long one.
const (
	spoolWaitWindow = 4 * time.Second
	spoolWaitWarmup = time.Second
)

// spoolWaitRun is one request shape on one server.
type spoolWaitRun struct {
	minReplicas int
	load        loadgen.Result
	serverCPU   float64 // seconds over the measured window
	othersCPU   float64 // CPUs busy with everything but the server and dsbench, on average
	waits       metricDelta
}

// metricDelta is what the server's spool WAIT metrics moved by over a run.
type metricDelta struct {
	waitCount, waitSum float64 // datastorage_spool_wait_seconds _count and _sum
	shortfalls         float64 // datastorage_spool_wait_shortfalls_total
}

// spoolWaitResult is the scenario's outcome: per request shape, one run per
// mode in spoolWaitModes' order.
type spoolWaitResult struct {
	runs [][]spoolWaitRun
	err  string // why the scenario did not run or stopped, if it did
}

// runSpoolWait starts the spool environment, stops PostgreSQL, and runs
// every request shape on each server in turn.
// Only the shapes whose name contains only run ("" runs all).
func runSpoolWait(ctx context.Context, bin, workDir, only string, gen *loadgen.Generator) (spoolWaitResult, error) {
	var res spoolWaitResult
	env, err := harness.StartSpoolEnv(ctx, bin, workDir, spoolWaitModes)
	if err != nil {
		return res, err
	}
	defer env.Close()
	if err := env.StopPostgres(); err != nil {
		return res, fmt.Errorf("stop PostgreSQL: %w", err)
	}
	single := make([][]byte, 1024)
	for i := range single {
		single[i] = gen.Body()
	}
	batches := make([][]byte, 16)
	for i := range batches {
		batches[i] = gen.BatchBody(100)
	}
	for i, spec := range spoolWaitSpecs {
		if only != "" && !strings.Contains(spec.Name, only) {
			continue
		}
		spec.Warmup, spec.Duration, spec.Queued = spoolWaitWarmup, spoolWaitWindow, true
		bodies := single
		if spec.Batch > 1 {
			bodies = batches
		}
		runs := make([]spoolWaitRun, len(env.Servers))
		// Alternate which server goes first, so that neither always
		// measures right after the other's load.
		for k := range env.Servers {
			j := k
			if i%2 == 1 {
				j = len(env.Servers) - 1 - k
			}
			run, err := spoolWaitOne(ctx, env.Servers[j], spec, bodies)
			if err != nil {
				return res, err
			}
			run.minReplicas = spoolWaitModes[j]
			runs[j] = run
			harness.Logf("%-19s minReplicas %d: %8.0f events/s  p50 %s  p99 %s  errors %d", spec.Name, run.minReplicas,
				run.load.EventsPerSec(), report.Dur(run.load.Percentile(.5)), report.Dur(run.load.Percentile(.99)), run.load.ErrorCount())
			if run.load.FirstErr != "" {
				harness.Logf("  first error: %s", run.load.FirstErr)
			}
		}
		res.runs = append(res.runs, runs)
	}
	return res, nil
}

// spoolWaitOne runs spec on e's server with the CPU and WAIT-metric probes
// around the measured window.
func spoolWaitOne(ctx context.Context, e *harness.Env, spec loadgen.Spec, bodies [][]byte) (spoolWaitRun, error) {
	var (
		run             spoolWaitRun
		srv0, self0, m0 float64
		t0              time.Time
		before, after   metricDelta
		beforeE, afterE error
	)
	srv := e.ServerPID()
	probe := func(phase string) {
		busy, _ := harness.MachineCPU()
		cpu := harness.ProcCPU(srv)
		self := harness.SelfCPU()
		switch phase {
		case "start":
			before, beforeE = scrapeSpoolWait(ctx, e.Metrics)
			srv0, self0, m0, t0 = cpu, self, busy, time.Now()
		case "end":
			run.serverCPU = cpu - srv0
			run.othersCPU = max(0, (busy-m0)-(cpu-srv0)-(self-self0)) / max(time.Since(t0).Seconds(), 1e-9)
			after, afterE = scrapeSpoolWait(ctx, e.Metrics)
		}
	}
	run.load = loadgen.Run(ctx, e.APIAddr, spec, bodies, probe)
	if err := ctx.Err(); err != nil {
		return run, err
	}
	if beforeE == nil && afterE == nil {
		run.waits = metricDelta{after.waitCount - before.waitCount, after.waitSum - before.waitSum, after.shortfalls - before.shortfalls}
	} else {
		harness.Logf("spool WAIT metrics: %v %v", beforeE, afterE)
	}
	return run, nil
}

// scrapeSpoolWait reads the spool's WAIT histogram and shortfall counter
// from the server's /metrics, summed over streams.
func scrapeSpoolWait(ctx context.Context, metricsURL string) (metricDelta, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/metrics", nil)
	resp, err := harness.LoopbackClient(1).Do(req)
	if err != nil {
		return metricDelta{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return metricDelta{}, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	return parseSpoolWait(resp.Body)
}

// parseSpoolWait sums the WAIT series of a Prometheus text exposition.
func parseSpoolWait(r io.Reader) (metricDelta, error) {
	var d metricDelta
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// A label value may hold a space; the value is the last field.
			name = name[:i]
			rest = line[strings.LastIndexByte(line, ' ')+1:]
		}
		var dst *float64
		switch name {
		case "datastorage_spool_wait_seconds_count":
			dst = &d.waitCount
		case "datastorage_spool_wait_seconds_sum":
			dst = &d.waitSum
		case "datastorage_spool_wait_shortfalls_total":
			dst = &d.shortfalls
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return d, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		*dst += v
	}
	return d, sc.Err()
}

// spoolWaitMarkdown is the report's section on WAIT.
func (r *writeReport) spoolWaitMarkdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	sw := r.spoolWait
	p("## What WAIT costs: spooled writes with a Redis replica (issue 13)")
	p("")
	if sw.err != "" {
		p("Not measured: %s", sw.err)
		p("")
		return b.String()
	}
	if len(sw.runs) == 0 {
		return ""
	}
	p("The real service with PostgreSQL stopped, so that every write is spooled (answered 202), on a Redis master with one streaming replica (both with AOF everysec, on this machine). Two servers on the same master, one with `redis.minReplicas` 0 (the append is acknowledged as soon as the master has it) and one with 1 (the append script and `WAIT 1` in one pipeline: the write is answered once the replica has it). Each request shape ran on both, one right after the other (%s warm-up, %s measured each), so each ratio compares two windows of the same minute. Every request first tries PostgreSQL (connection refused at once) and then the spool; both servers pay that equally.", spoolWaitWarmup, spoolWaitWindow)
	p("")
	p("| request | minReplicas 0: events/s, p50, p99 | minReplicas 1: events/s, p50, p99 | events/s 1 ÷ 0 | p50 added by WAIT | WAIT round trip, server-side mean | shortfalls (503) | server CPU µs/event 0 → 1 | others' CPUs busy 0 / 1 |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, runs := range sw.runs {
		if len(runs) != 2 {
			continue
		}
		a, w := runs[0], runs[1]
		cell := func(x spoolWaitRun) string {
			s := fmt.Sprintf("%.0f, %s, %s", x.load.EventsPerSec(), report.Dur(x.load.Percentile(.5)), report.Dur(x.load.Percentile(.99)))
			if n := x.load.ErrorCount(); n > 0 {
				s += fmt.Sprintf(" (%d errors)", n)
			}
			return s
		}
		ratio := "–"
		if a.load.EventsPerSec() > 0 {
			ratio = fmt.Sprintf("%.2f", w.load.EventsPerSec()/a.load.EventsPerSec())
		}
		waitMean := "–"
		if w.waits.waitCount > 0 {
			waitMean = report.Dur(time.Duration(w.waits.waitSum / w.waits.waitCount * float64(time.Second)))
		}
		perEvent := func(x spoolWaitRun) float64 { return x.serverCPU / float64(max(x.load.Events, 1)) * 1e6 }
		added := (w.load.Percentile(.5) - a.load.Percentile(.5)).Seconds() * 1e3
		p("| %s | %s | %s | %s | %+.2f ms | %s | %.0f | %.0f → %.0f | %.2f / %.2f |", runs[0].load.Spec.Name, cell(a), cell(w), ratio,
			added, waitMean, w.waits.shortfalls, perEvent(a), perEvent(w), a.othersCPU, w.othersCPU)
	}
	p("")
	p("*WAIT round trip* is `datastorage_spool_wait_seconds` over the window (sum ÷ count): the pipelined append script and WAIT as the server timed them, one per append (the service groups the requests that arrive together into one commit, and a commit PostgreSQL cannot take into one append: a batch request is at least one append, concurrent single requests share appends). The replica is on the same machine, so this is the floor of a replica's round trip: across nodes add the network's. *Others' CPUs busy*: what the rest of the machine used meanwhile (other people's work); a large figure makes the absolute numbers indicative only, the ratios less so.")
	p("")
	return b.String()
}
