package scenario

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
)

// cpuSplit is the CPU time each party used during a measured window.
type cpuSplit struct {
	server, postgres, loadgen float64 // seconds
	window                    float64 // wall seconds
	// machine is the busy CPU time of the whole machine, steal what the
	// hypervisor took; machine minus the three parties is everything else
	// that ran meanwhile (other people's builds and tests, the kernel).
	machine, steal float64
}

// others is the CPU time used by processes other than the three parties.
func (c cpuSplit) others() float64 { return max(0, c.machine-c.server-c.postgres-c.loadgen) }

func (c cpuSplit) perEventMicros(events int64) (server, pg, load float64) {
	if events == 0 {
		return 0, 0, 0
	}
	n := float64(events)
	return c.server / n * 1e6, c.postgres / n * 1e6, c.loadgen / n * 1e6
}

// loadResult is an HTTP scenario's load figures with what the probes
// measured meanwhile.
type loadResult struct {
	loadgen.Result
	cpu     cpuSplit
	peakRSS int64
	deep    *deepDive // the heavy scenarios only
	work    *pgWork   // PostgreSQL's counters over the measured window (writepath.go)
	srv     srvWork   // the server's allocations and context switches over the window
}

// srvWork is what the server process did over a measured window besides
// using CPU: heap allocations (exact, from its /metrics) and context
// switches of its threads. Both are load-independent per event, unlike
// CPU time on a shared machine.
type srvWork struct {
	allocs, allocBytes int64 // heap objects and bytes allocated
	allocsOK           bool  // the server answered its Go memory counters at both ends
	ctxVol, ctxInvol   int64 // context switches, voluntary and involuntary
}

// perEvent divides v by events; 0 without events.
func perEvent(v, events int64) float64 {
	if events <= 0 {
		return 0
	}
	return float64(v) / float64(events)
}

// deepDive is what the heavy scenarios collect besides throughput: where
// PostgreSQL spends its time and where the server does.
type deepDive struct {
	statements []stmtStat
	waits      waitSummary
	wal        walDelta
	cpuTop     string
	allocTop   string
	profiles   []string
}

// runScenario runs one HTTP scenario with its probes: CPU split, peak RSS,
// the server's allocations and context switches, and its CPU and allocation
// profiles always; for the heavy ones also pg_stat_statements, wait events
// and WAL.
func runScenario(ctx context.Context, e *harness.Env, r *writeReport, spec loadgen.Spec, bodies [][]byte) (loadResult, error) {
	deep := spec.Name == "single c=64" || spec.Name == "batch500 c=4"
	srv, pgPID := e.ServerPID(), e.PostmasterPID()
	r.awaitPublished(ctx, spec.Warmup)
	waitQuiet(ctx, e, 30*time.Second)
	harness.ResetPeakRSS(srv)

	var (
		c0       [5]float64
		t0       time.Time
		split    cpuSplit
		sampler  *waitSampler
		wal0     walStats
		dd       deepDive
		profWG   sync.WaitGroup
		profMu   sync.Mutex
		profErrs []string
		srv0     srvWork
		srv1     srvWork
	)
	slug := strings.NewReplacer(" ", "-", "=", "").Replace(spec.Name)
	probe := func(phase string) {
		switch phase {
		case "start":
			if deep {
				resetStatements(ctx, e)
				wal0 = readWAL(ctx, e)
				sampler = startWaitSampler(ctx, e)
			}
			if e.Pprof {
				secs := max(1, int(spec.Duration.Seconds())-1)
				for _, p := range []struct{ kind, path string }{
					{"cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)},
					{"allocs", fmt.Sprintf("/debug/pprof/allocs?seconds=%d", secs)},
				} {
					profWG.Go(func() {
						file := filepath.Join(r.opts.ProfileDir, p.kind+"-"+slug+".pprof")
						if err := fetchProfile(ctx, e.Metrics+p.path, file, spec.Duration+30*time.Second); err != nil {
							profMu.Lock()
							profErrs = append(profErrs, err.Error())
							profMu.Unlock()
							return
						}
						profMu.Lock()
						defer profMu.Unlock()
						dd.profiles = append(dd.profiles, file)
					})
				}
			}
			srv0 = readSrvWork(ctx, e, srv)
			busy, steal := harness.MachineCPU()
			c0 = [5]float64{harness.ProcCPU(srv), harness.TreeCPU(pgPID), harness.SelfCPU(), busy, steal}
			t0 = time.Now()
		case "end":
			srv1 = readSrvWork(ctx, e, srv)
			busy, steal := harness.MachineCPU()
			split = cpuSplit{
				server:   harness.ProcCPU(srv) - c0[0],
				postgres: harness.TreeCPU(pgPID) - c0[1],
				loadgen:  harness.SelfCPU() - c0[2],
				window:   time.Since(t0).Seconds(),
				machine:  busy - c0[3],
				steal:    steal - c0[4],
			}
			if deep {
				dd.waits = sampler.stop()
				dd.wal = readWAL(ctx, e).sub(wal0)
			}
		}
	}
	ww := &windowWork{ctx: ctx, e: e}
	res := loadResult{Result: loadgen.Run(ctx, e.APIAddr, spec, bodies, ww.wrap(probe))}
	res.cpu = split
	res.peakRSS = harness.PeakRSS(srv)
	res.srv = srvWork{
		allocs: srv1.allocs - srv0.allocs, allocBytes: srv1.allocBytes - srv0.allocBytes,
		allocsOK: srv0.allocsOK && srv1.allocsOK,
		ctxVol:   srv1.ctxVol - srv0.ctxVol, ctxInvol: srv1.ctxInvol - srv0.ctxInvol,
	}
	profWG.Wait()
	for _, msg := range profErrs {
		harness.Logf("profile: %s", msg)
	}
	if deep {
		// After the window: go tool pprof would otherwise share the CPUs
		// with its last second.
		for _, file := range dd.profiles {
			if strings.Contains(filepath.Base(file), "allocs-") {
				dd.allocTop = pprofTop(ctx, e.Bin, file, "-sample_index=alloc_space")
			} else {
				dd.cpuTop = pprofTop(ctx, e.Bin, file, "")
			}
		}
		dd.statements = topStatements(ctx, e)
		res.deep = &dd
	}
	res.work = ww.result(dd.waits.samples)
	r.loadEnded = ww.ended
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

// readSrvWork reads the server's cumulative allocations and context
// switches; the /metrics scrape itself allocates a little, the same at both
// ends of every window.
func readSrvWork(ctx context.Context, e *harness.Env, pid int) srvWork {
	var w srvWork
	w.allocs, w.allocBytes, w.allocsOK = e.GoAllocs(ctx)
	w.ctxVol, w.ctxInvol = harness.ContextSwitches(pid)
	return w
}

func fetchProfile(ctx context.Context, url, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	c := harness.LoopbackClient(1)
	c.Timeout = timeout
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pprofTop runs `go tool pprof -top` on a profile and keeps the head of it.
func pprofTop(ctx context.Context, bin, file, sampleIndex string) string {
	args := []string{"tool", "pprof", "-top", "-nodecount=25"}
	if sampleIndex != "" {
		args = append(args, sampleIndex)
	}
	args = append(args, bin, file)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof failed: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// stmtStat is one row of pg_stat_statements.
type stmtStat struct {
	query              string
	calls, rows        int64
	meanPlan, meanExec float64 // ms
	totalMS            float64
}

func resetStatements(ctx context.Context, e *harness.Env) {
	withConn(ctx, e, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SELECT pg_stat_statements_reset()")
		return err
	})
}

func topStatements(ctx context.Context, e *harness.Env) []stmtStat {
	var out []stmtStat
	withConn(ctx, e, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `
			SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 110), calls, rows,
			       mean_plan_time, mean_exec_time, total_plan_time + total_exec_time
			FROM pg_stat_statements
			WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND query NOT LIKE '%pg_stat_%'
			ORDER BY total_plan_time + total_exec_time DESC
			LIMIT 10`)
		if err != nil {
			return err
		}
		var s stmtStat
		_, err = pgx.ForEachRow(rows, []any{&s.query, &s.calls, &s.rows, &s.meanPlan, &s.meanExec, &s.totalMS}, func() error {
			out = append(out, s)
			return nil
		})
		return err
	})
	return out
}

// walStats is a snapshot of pg_stat_wal.
type walStats struct {
	records, bytes, writes, syncs int64
	syncMS                        float64
}

type walDelta = walStats

func (w walStats) sub(o walStats) walStats {
	return walStats{w.records - o.records, w.bytes - o.bytes, w.writes - o.writes, w.syncs - o.syncs, w.syncMS - o.syncMS}
}

func readWAL(ctx context.Context, e *harness.Env) walStats {
	var w walStats
	withConn(ctx, e, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT wal_records, wal_bytes::int8, wal_write, wal_sync, wal_sync_time FROM pg_stat_wal`).
			Scan(&w.records, &w.bytes, &w.writes, &w.syncs, &w.syncMS)
	})
	return w
}

func withConn(ctx context.Context, e *harness.Env, f func(*pgx.Conn) error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		harness.Logf("connect: %v", err)
		return
	}
	defer c.Close(context.Background())
	if err := f(c); err != nil {
		harness.Logf("query: %v", err)
	}
}

// waitSampler samples what the server's PostgreSQL backends are doing every
// 10 ms: on CPU, waiting for a lock, for the WAL flush, or for the client.
type waitSampler struct {
	stopCh chan struct{}
	done   chan waitSummary
}

type waitSummary struct {
	samples int
	counts  map[string]int // "state / wait_event_type:wait_event" → samples
}

func startWaitSampler(ctx context.Context, e *harness.Env) *waitSampler {
	s := &waitSampler{stopCh: make(chan struct{}), done: make(chan waitSummary, 1)}
	go func() {
		sum := waitSummary{counts: map[string]int{}}
		defer func() { s.done <- sum }()
		c, err := pgx.Connect(ctx, e.DBURL)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range 100_000 {
			select {
			case <-s.stopCh:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rows, err := c.Query(ctx, `
				SELECT state, coalesce(wait_event_type, ''), coalesce(wait_event, '')
				FROM pg_stat_activity
				WHERE application_name = 'datastorage' AND state <> 'idle'`)
			if err != nil {
				return
			}
			var state, typ, ev string
			_, err = pgx.ForEachRow(rows, []any{&state, &typ, &ev}, func() error {
				key := state + " / "
				if typ == "" {
					key += "CPU"
				} else {
					key += typ + ":" + ev
				}
				sum.counts[key]++
				return nil
			})
			if err != nil {
				return
			}
			sum.samples++
		}
	}()
	return s
}

func (s *waitSampler) stop() waitSummary {
	if s == nil {
		return waitSummary{}
	}
	close(s.stopCh)
	return <-s.done
}

// waitQuiet waits, up to limit, for a second in which processes other than
// the server, PostgreSQL and dsbench use less than a quarter of a CPU: on a
// shared machine someone else's build would otherwise be measured too. It
// gives up silently (the report shows what else ran in each window).
func waitQuiet(ctx context.Context, e *harness.Env, limit time.Duration) {
	srv, pgPID := e.ServerPID(), e.PostmasterPID()
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		busy0, _ := harness.MachineCPU()
		ours0 := harness.ProcCPU(srv) + harness.TreeCPU(pgPID) + harness.SelfCPU()
		if !loadgen.SleepUntil(ctx, time.Now().Add(time.Second)) {
			return
		}
		busy1, _ := harness.MachineCPU()
		others := (busy1 - busy0) - (harness.ProcCPU(srv) + harness.TreeCPU(pgPID) + harness.SelfCPU() - ours0)
		if others < 0.25 {
			return
		}
		if time.Now().After(deadline) {
			harness.Logf("other processes still use %.1f CPUs; measuring anyway", others)
			return
		}
		if i == 0 {
			harness.Logf("other processes use %.1f CPUs; waiting up to %s for them to finish", others, limit)
		}
	}
}
