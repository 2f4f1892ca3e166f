package scenario

// The remediation read models (CONTRACT §16) in the read benchmark: a data
// set of 100,000 remediations over the last 89 days, loaded next to the
// read benchmark's events, the history context and effectiveness reads
// timed over HTTP, and their statements EXPLAINed with and without the
// target index of migration 00008.
//
// Self-contained on purpose: read.go calls loadHistoryData after its own
// load, measureHistory after its own measurements, and appends
// historyBench.markdown to the report.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/loadgen"
	"kubernaut.ai/datastorage/cmd/dsbench/internal/report"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/remediation"
	"kubernaut.ai/datastorage/internal/store"
)

// The history data set.
const (
	historyRemediations = 100_000
	historyTargets      = 20_000
	// historyBusyTargets have exactly 10 remediations each (the first
	// 20,000 remediations), one of them in tier 1; the other 18,000
	// targets share the remaining 80,000 (4 or 5 each).
	historyBusyTargets = 2_000
	historyDays        = 89
)

// historyNS makes the remediations' correlation ids, deterministic.
var historyNS = uuid.MustParse("6f1c2f0e-5b7a-4a8e-9d43-2c1e0b7a9f10")

func historyCorrelation(r int) string {
	return uuid.NewSHA1(historyNS, []byte(fmt.Sprint(r))).String()
}

// historyTarget is target t's "ns/kind/name"; one in ten is cluster-scoped.
func historyTarget(t int) (ns, kind, name string) {
	if t%10 == 0 {
		return "", "Node", fmt.Sprintf("node-%05d", t)
	}
	return fmt.Sprintf("ns-%02d", t%20), "Deployment", fmt.Sprintf("app-%05d", t)
}

func historyCurrentHash(t int) string { return fmt.Sprintf("%064x", uint64(t)*0x9e3779b97f4a7c15) }

type historyBench struct {
	remediations, events int64
	from                 time.Time
	load, rollups        time.Duration
	indexMB              float64
	results              []*readResult
	explains             []readExplain
}

// loadHistoryData COPYs the remediations and their assessments into
// audit_events (with every index in place, as live writes would find it),
// then counts them into the rollups and analyzes.
func loadHistoryData(ctx context.Context, e *harness.Env) (*historyBench, error) {
	hb := &historyBench{}
	now := time.Now().UTC()
	hb.from = now.Add(-historyDays*24*time.Hour - 24*time.Hour)
	ds, err := store.Open(ctx, e.DBURL, store.Options{MaxConns: 2})
	if err != nil {
		return nil, err
	}
	defer ds.Close()
	if _, err := ds.EnsurePartitions(ctx, hb.from, 4); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		return nil, err
	}
	harness.Logf("loading %d remediations (%d targets) with their assessments over %d days", historyRemediations, historyTargets, historyDays)
	t0 := time.Now()
	rng := rand.New(rand.NewPCG(17, 19))
	const chunk = 5_000
	for lo := 0; lo < historyRemediations; lo += chunk {
		var events []*audit.Event
		var seqs []int64
		for r := lo; r < min(lo+chunk, historyRemediations); r++ {
			evs := historyEvents(r, now, rng)
			for j := range evs {
				seqs = append(seqs, int64(j+1))
			}
			events = append(events, evs...)
		}
		loadgen.StampUnchained(events, func(i int) int64 { return seqs[i] })
		n, err := conn.CopyFrom(ctx, pgx.Identifier{"audit_events"}, store.BatchInsertColumns(), store.CopyRows(events))
		if err != nil {
			return nil, fmt.Errorf("copy remediations %d…: %w", lo, err)
		}
		hb.events += n
	}
	hb.remediations = historyRemediations
	hb.load = time.Since(t0)
	harness.Logf("loaded %d events in %s", hb.events, hb.load.Round(time.Second))
	t1 := time.Now()
	if _, err := ds.RebuildRollups(ctx, hb.from, now.Add(2*time.Hour)); err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) audit_events"); err != nil {
		return nil, err
	}
	hb.rollups = time.Since(t1)
	var idx int64
	_ = conn.QueryRow(ctx, `SELECT coalesce(sum(pg_relation_size(inhrelid)), 0) FROM pg_inherits
		WHERE inhparent = 'audit_events_remediation_target_idx'::regclass`).Scan(&idx)
	hb.indexMB = float64(idx) / (1 << 20)
	return hb, nil
}

// historyEvents are remediation r's events: its remediation.workflow_created
// event and 3–6 effectiveness events, in time order.
func historyEvents(r int, now time.Time, rng *rand.Rand) []*audit.Event {
	var t int
	var at time.Time
	if r < historyBusyTargets*10 {
		t = r / 10
		k := r % 10
		// k = 0 within the last 20 hours (tier 1), the others spread over
		// the 89 days (tier 2).
		at = now.Add(-time.Hour - time.Duration(k)*8*24*time.Hour - time.Duration(rng.Int64N(int64(19*time.Hour))))
	} else {
		t = historyBusyTargets + (r-historyBusyTargets*10)%(historyTargets-historyBusyTargets)
		at = now.Add(-time.Hour - time.Duration(rng.Int64N(int64(historyDays*24*time.Hour))))
	}
	ns, kind, name := historyTarget(t)
	cur := historyCurrentHash(t)
	pre, post := cur, fmt.Sprintf("%064x", rng.Uint64())
	if r%2 == 1 {
		// Half match on the pre hash, half on the post hash.
		pre, post = post, cur
	}
	corr := historyCorrelation(r)
	mk := func(typ, cat, action string, at time.Time, data map[string]any) *audit.Event {
		data["event_type"] = typ
		raw, _ := json.Marshal(data)
		return &audit.Event{Version: "1.0", Type: typ, Category: cat, Action: action, Outcome: "success",
			CorrelationID: corr, Data: raw, Timestamp: audit.NewTime(at), Date: audit.DateOf(at),
			ActorType: "service", ActorID: cat + "-service", ResourceType: cat, ResourceID: corr,
			Namespace: ns, ClusterID: fmt.Sprintf("cluster-%d", t%5), Severity: "info", RetentionDays: 2555}
	}
	out := []*audit.Event{mk("remediation.workflow_created", "orchestration", "workflow_created", at, map[string]any{
		"target_resource":           ns + "/" + kind + "/" + name,
		"pre_remediation_spec_hash": pre,
		"signal_type":               "alert",
		"signal_fingerprint":        fmt.Sprintf("%064x", rng.Uint64()),
		"action_type":               []string{"RestartPod", "ScaleUp", "RollbackDeployment", "IncreaseMemory"}[r%4],
		"outcome":                   "Success",
		"workflow_id":               fmt.Sprintf("wf-%03d", r%50),
		"remediation_request":       "rr-" + corr,
	})}
	steps := []func(time.Time) *audit.Event{
		func(at time.Time) *audit.Event {
			return mk(remediation.TypeHashComputed, "effectiveness", "computed", at, map[string]any{
				"pre_remediation_spec_hash": pre, "post_remediation_spec_hash": post, "hash_match": pre == post})
		},
		func(at time.Time) *audit.Event {
			return mk(remediation.TypeHealthAssessed, "effectiveness", "assessed", at, map[string]any{
				"assessed": true, "score": rng.Float64(), "details": "all pods running and ready",
				"health_checks": map[string]any{"pod_running": true, "readiness_pass": true, "restart_delta": rng.IntN(3),
					"crash_loops": false, "oom_killed": false, "pending_count": 0}})
		},
		func(at time.Time) *audit.Event {
			return mk(remediation.TypeAlertAssessed, "effectiveness", "assessed", at, map[string]any{
				"assessed": true, "score": rng.Float64(), "alert_resolution": map[string]any{"alert_resolved": rng.IntN(4) > 0}})
		},
		func(at time.Time) *audit.Event {
			return mk(remediation.TypeMetricsAssessed, "effectiveness", "assessed", at, map[string]any{
				"assessed": true, "score": rng.Float64(), "metric_deltas": map[string]any{
					"cpu_before": rng.Float64(), "cpu_after": rng.Float64(), "memory_before": rng.Float64(),
					"memory_after": rng.Float64(), "error_rate_before": rng.Float64(), "error_rate_after": rng.Float64()}})
		},
	}
	n := 3 + r%4 // effectiveness events: 3..6
	if n == 6 {
		out = append(out, mk("effectiveness.assessment.scheduled", "effectiveness", "scheduled", at.Add(time.Minute), map[string]any{}))
	}
	for j := 0; j < min(n, 5)-1; j++ {
		out = append(out, steps[j](at.Add(time.Duration(j+2)*5*time.Minute)))
	}
	reason := []string{"Full", "Full", "Full", "Partial", "Full", "Full", "SpecDrift", "Full", "Expired", "Partial"}[r%10]
	out = append(out, mk(remediation.TypeAssessmentComplete, "effectiveness", "completed", at.Add(30*time.Minute),
		map[string]any{"reason": reason}))
	return out
}

// measureHistory times both reads over HTTP and EXPLAINs their statements.
func measureHistory(ctx context.Context, conn *pgx.Conn, dbURL string, hb *historyBench,
	measure func(*readResult, func(int) string)) {
	rng := rand.New(rand.NewPCG(23, 29))
	busy := make([]int, 256)
	for i := range busy {
		busy[i] = rng.IntN(historyBusyTargets)
	}
	historyPath := func(t int) string {
		ns, kind, name := historyTarget(t)
		q := url.Values{"targetKind": {kind}, "targetName": {name}, "currentSpecHash": {historyCurrentHash(t)}}
		if ns != "" {
			q.Set("targetNamespace", ns)
		}
		return "/api/v1/remediation-history/context?" + q.Encode()
	}
	res := &readResult{name: "history context, target with 10 remediations", target: "p99 ≤ 15 ms", limit: 15 * time.Millisecond}
	measure(res, func(i int) string { return historyPath(busy[i%len(busy)]) })
	hb.results = append(hb.results, res)
	res = &readResult{name: "effectiveness, random remediation", target: "p99 ≤ 5 ms", limit: 5 * time.Millisecond}
	measure(res, func(i int) string {
		return "/api/v1/effectiveness/" + historyCorrelation(busy[i%len(busy)]*10+i%10)
	})
	hb.results = append(hb.results, res)

	// The statements as the store sends them, caught by a tracer.
	rec := &lastStatement{}
	ds, err := store.Open(ctx, dbURL, store.Options{Tracer: rec, MaxConns: 1})
	if err != nil {
		harness.Logf("  history EXPLAIN: %v", err)
		return
	}
	defer ds.Close()
	t := busy[0]
	ns, kind, name := historyTarget(t)
	p := remediation.ContextParams{TargetNamespace: ns, TargetKind: kind, TargetName: name,
		CurrentSpecHash: historyCurrentHash(t), Tier1Window: remediation.DefaultTier1Window, Tier2Window: remediation.DefaultTier2Window}
	now := time.Now()
	q := remediation.RemediationQuery{Target: p.Target(), SpecHash: p.CurrentSpecHash, Limit: remediation.MaxChainEntries}
	type shape struct {
		name, sql string
		args      []any
	}
	var shapes []shape
	catch := func(name string, run func() error) {
		if err := run(); err != nil {
			harness.Logf("  %s: %v", name, err)
			return
		}
		shapes = append(shapes, shape{name, rec.sql, rec.args})
	}
	var corrs []string
	q2 := q
	q2.From, q2.To = now.Add(-p.Tier2Window), now.Add(-p.Tier1Window)
	catch("history context: tier 2 remediations of the target", func() error {
		evs, err := ds.RemediationEvents(ctx, q2)
		if err != nil {
			return err
		}
		for _, e := range evs[0] {
			corrs = append(corrs, e.CorrelationID)
		}
		return nil
	})
	catch("history context: assessments of its correlations", func() error {
		_, err := ds.AssessmentEvents(ctx, corrs)
		return err
	})
	catch("effectiveness: assessments of one correlation", func() error {
		_, err := ds.AssessmentEvents(ctx, []string{historyCorrelation(t * 10)})
		return err
	})
	for _, s := range shapes {
		hb.explains = append(hb.explains, explainHistory(ctx, conn, s.name, s.sql, s.args, ""))
	}
	// Without the target index (dropped inside a transaction that is rolled
	// back): what 00008 buys.
	if len(shapes) > 0 {
		hb.explains = append(hb.explains, explainHistory(ctx, conn, shapes[0].name+", without audit_events_remediation_target_idx",
			shapes[0].sql, shapes[0].args, "DROP INDEX audit_events_remediation_target_idx"))
	}
}

// explainHistory runs EXPLAIN (ANALYZE, BUFFERS) of sql, after ddl in the same
// transaction when ddl is set; the transaction is rolled back.
func explainHistory(ctx context.Context, conn *pgx.Conn, name, sql string, args []any, ddl string) readExplain {
	ex := readExplain{name: name, sql: strings.Join(strings.Fields(sql), " ")}
	tx, err := conn.Begin(ctx)
	if err == nil {
		defer tx.Rollback(context.Background()) //nolint:errcheck // rolled back on purpose
		if ddl != "" {
			_, err = tx.Exec(ctx, ddl)
		}
	}
	if err == nil {
		var rows pgx.Rows
		rows, err = tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, args...)
		if err == nil {
			var lines []string
			lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
			ex.plan = strings.Join(lines, "\n")
		}
	}
	if err != nil {
		ex.plan = "EXPLAIN failed: " + err.Error()
	}
	harness.Logf("  explained %s", name)
	return ex
}

func (hb *historyBench) markdown() string {
	if hb == nil {
		return ""
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Remediation read models (CONTRACT §16)\n\n")
	w("Loaded after the events above, with every index in place (COPY, as live writes would find them): %d remediations "+
		"(a `remediation.workflow_created` event and 3–6 `effectiveness` events each: %d events) over the last %d days, "+
		"%d distinct targets (one in ten cluster-scoped); %d targets have exactly 10 remediations (one in tier 1, nine in tier 2) "+
		"and every one matches the target's current spec hash (half on the pre hash, half on the post hash of an assessment), "+
		"so a history answer holds 10 entries; the other %d targets share the other remediations. Load %s; rollups rebuilt and "+
		"`VACUUM (ANALYZE)` %s. The target index of migration 00008 (`audit_events_remediation_target_idx`) takes %.1f MB for them. "+
		"The correlations are not in `audit_chain_heads` (the timeline measurement above does not pick them).\n\n",
		hb.remediations, hb.events, historyDays, historyTargets, historyBusyTargets, historyTargets-historyBusyTargets,
		hb.load.Round(time.Second), hb.rollups.Round(time.Second), hb.indexMB)
	w("| request | n | p50 | p99 | max | target | met |\n|---|---:|---:|---:|---:|---|---|\n")
	for _, x := range hb.results {
		met := report.Yes(x.pct(.99) <= x.limit && x.errs == 0)
		extra := ""
		if x.errs > 0 {
			extra = fmt.Sprintf(" (%d errors: %s)", x.errs, x.firstErr)
		}
		w("| %s%s | %d | %s | %s | %s | %s | %s |\n", x.name, extra, len(x.lat), report.Dur(x.pct(.5)), report.Dur(x.pct(.99)), report.Dur(x.pct(1)), x.target, met)
	}
	w("\nRequests: a random one of 256 targets with 10 remediations per history request (default windows: 1 entry in tier 1, 9 in tier 2); "+
		"a remediation of those targets per effectiveness request. For example `%s`.\n\n", hb.results[0].path)
	w("Plans (`EXPLAIN (ANALYZE, BUFFERS)`, the statements internal/store/history.go sends, caught by a tracer):\n\n")
	for _, x := range hb.explains {
		w("<details><summary>%s</summary>\n\n```sql\n%s\n```\n\n```\n%s\n```\n\n</details>\n\n", x.name, x.sql, x.plan)
	}
	return b.String()
}

// The tier statements travel in a batch; lastStatement catches those too.

func (l *lastStatement) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (l *lastStatement) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	l.sql, l.args = d.SQL, d.Args
}

func (l *lastStatement) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
