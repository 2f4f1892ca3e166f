package main

// The read benchmark's data set (`dsbench -read`): N synthetic events
// generated inside PostgreSQL by INSERT … SELECT FROM generate_series, in
// chunks of correlations, two sessions in parallel.
//
// The rows are valid for the schema: every NOT NULL column is set, event_id
// is a UUID, chain_seq runs 1..n per correlation, event_hash and
// previous_event_hash are 32-byte bytea and link (previous_event_hash of
// seq k is event_hash of seq k-1, the empty bytea for seq 1), actor_type,
// actor_id, resource_type and resource_id are NULL (their defaults, in the
// stored form of migration 00005), parent_event_id /
// parent_event_date name an existing earlier event of the same correlation,
// and audit_chain_heads gets one row per correlation. The hashes are
// md5-derived stand-ins, not SHA-256 over the canonical event: verify-chain
// would reject them, which does not matter for reads.
//
// To load in minutes rather than hours, the secondary indexes of
// audit_events are dropped before the load and re-created (same
// definitions, read back from pg_indexes) afterwards, and the parent foreign
// key is not checked during the load (session_replication_role = replica;
// the generator only names parents it also writes). Indexes built in one go
// are more compact than indexes grown by random inserts (see the report).

import (
	"kubernaut.ai/datastorage/internal/store"

	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// readTypes are the event types of the data set, with their categories: the
// 14 categories of CONTRACT §2.1, 30 types.
var readTypes = [][2]string{
	{"gateway.signal.received", "gateway"},
	{"gateway.crd.created", "gateway"},
	{"signalprocessing.enrichment.completed", "signalprocessing"},
	{"signalprocessing.classification.completed", "signalprocessing"},
	{"analysis.investigation.started", "analysis"},
	{"analysis.rca.completed", "analysis"},
	{"analysis.recommendation.generated", "analysis"},
	{"aiagent.llm.request", "aiagent"},
	{"aiagent.llm.response", "aiagent"},
	{"aiagent.tool.call", "aiagent"},
	{"agentsession.started", "agentsession"},
	{"agentsession.completed", "agentsession"},
	{"workflow.catalog.searched", "workflow"},
	{"workflow.selected", "workflow"},
	{"workflow.validated", "workflow"},
	{"workflowexecution.started", "workflowexecution"},
	{"workflowexecution.step.completed", "workflowexecution"},
	{"workflowexecution.completed", "workflowexecution"},
	{"orchestration.remediation.created", "orchestration"},
	{"orchestration.phase.transitioned", "orchestration"},
	{"orchestration.remediation.completed", "orchestration"},
	{"approval.requested", "approval"},
	{"approval.decided", "approval"},
	{"effectiveness.assessment.completed", "effectiveness"},
	{"notification.message.sent", "notification"},
	{"notification.delivery.failed", "notification"},
	{"actiontype.registered", "actiontype"},
	{"apifrontend.request.received", "apifrontend"},
	{"security.access.denied", "security"},
	{"security.token.validated", "security"},
}

var readNamespaces = []string{"production", "staging", "payments", "checkout", "search", "identity",
	"billing", "inventory", "shipping", "analytics", "monitoring", "logging", "ingress", "kube-system",
	"data-platform", "ml-serving", "frontend", "backend", "batch-jobs", "security"}

const (
	readDays         = 30
	readEventsPerCor = 50   // average; a correlation has 20..80 events
	readStepSeconds  = 17   // mean gap between a correlation's events
	readChunkCors    = 4000 // correlations per INSERT statement (~200,000 rows)
)

func sqlArray(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + strings.ReplaceAll(x, "'", "''") + "'"
	}
	return "ARRAY[" + strings.Join(q, ",") + "]"
}

// readInsertSQL generates the events of correlations $1..$2. Correlation c
// starts at $3 + (c-1)·$4 seconds, so correlations follow each other in
// time (about 65 run at once) and each chunk is written in time order: the
// heap is laid out by time, as a live system's would be.
func readInsertSQL() string {
	types := make([]string, len(readTypes))
	cats := make([]string, len(readTypes))
	for i, t := range readTypes {
		types[i], cats[i] = t[0], t[1]
	}
	// ts(c, s): the event's time; monotone in s (the jitter is < the step).
	ts := func(s string) string {
		return fmt.Sprintf(`(t0 + ((%[1]s - 1) * %[2]d) * interval '1 second'
			+ ((hashint4(c * 1000 + %[1]s) & 2147483647) %% %[3]d) * interval '1 millisecond')`, s, readStepSeconds, (readStepSeconds-2)*1000)
	}
	return `
INSERT INTO audit_events (event_id, event_date, event_timestamp, version, event_type, event_category,
	event_action, event_outcome, correlation_id, event_data, actor_type, actor_id, actor_ip,
	resource_type, resource_id, parent_event_id, parent_event_date, namespace, cluster_id, severity,
	duration_ms, error_code, error_message, retention_days, is_sensitive, chain_seq, event_hash,
	previous_event_hash, hash_algorithm, created_at)
SELECT md5('ev:' || c || ':' || s)::uuid, (ts AT TIME ZONE 'UTC')::date, ts, '1.0', typ, cat,
	split_part(typ, '.', 3), outcome, corr,
	jsonb_build_object(
		'event_type', typ,
		'remediation_id', corr,
		'phase', split_part(typ, '.', 2),
		'signal_fingerprint', md5('sig:' || c),
		'alert_name', (ARRAY['KubePodCrashLooping','KubeDeploymentReplicasMismatch','NodeMemoryPressure','HighErrorRate','PodOOMKilled','CPUThrottlingHigh'])[1 + c % 6],
		'target_resource', jsonb_build_object('kind', 'Deployment', 'name', 'app-' || (c % 997), 'namespace', coalesce(ns, 'default')),
		'message', 'step ' || s || ' of remediation for app-' || (c % 997) || ': ' || outcome || ' after evaluating cluster state and recent events',
		'labels', jsonb_build_object('team', 'team-' || (c % 40), 'env', CASE WHEN c % 3 = 0 THEN 'staging' ELSE 'production' END, 'tier', 'backend'),
		'attempt', 1 + h % 3,
		'duration_ms', dur
	) || CASE WHEN cat IN ('workflow', 'workflowexecution')
		THEN jsonb_build_object('workflow_id', 'wf-' || lpad(((hashint4(c + 17) & 2147483647) % 50)::text, 3, '0'), 'workflow_version', 'v' || (1 + c % 4))
		ELSE '{}'::jsonb END,
	NULL, NULL, '10.' || (c % 200) || '.' || (s % 250) || '.' || (h % 250),
	NULL, NULL,
	CASE WHEN has_parent THEN md5('ev:' || c || ':' || ps)::uuid END,
	CASE WHEN has_parent THEN (` + ts("ps") + ` AT TIME ZONE 'UTC')::date END,
	ns, 'cluster-' || (c % 5), sev, dur,
	CASE WHEN outcome = 'failure' THEN 'E' || (100 + h % 40) END,
	CASE WHEN outcome = 'failure' THEN 'operation failed: timeout waiting for rollout of app-' || (c % 997) END,
	2555, false, s,
	decode(md5('h1:' || c || ':' || s) || md5('h2:' || c || ':' || s), 'hex'),
	CASE WHEN s = 1 THEN ''::bytea ELSE decode(md5('h1:' || c || ':' || (s - 1)) || md5('h2:' || c || ':' || (s - 1)), 'hex') END,
	'sha256', ts + interval '40 milliseconds'
FROM (
	SELECT c, s, k.corr, k.ns, k.t0, h,
		` + ts("s") + ` AS ts,
		t.typ, t.cat,
		CASE WHEN h % 100 < 85 THEN 'success' WHEN h % 100 < 95 THEN 'failure' ELSE 'pending' END AS outcome,
		CASE WHEN (h / 3000) % 100 < 55 THEN 'info' WHEN (h / 3000) % 100 < 70 THEN 'low'
		     WHEN (h / 3000) % 100 < 82 THEN 'medium' WHEN (h / 3000) % 100 < 92 THEN 'warning'
		     WHEN (h / 3000) % 100 < 97 THEN 'high' ELSE 'critical' END AS sev,
		s > 1 AND (h / 300000) % 10 < 7 AS has_parent,
		CASE WHEN (h / 3000000) % 3 = 0 THEN 1 ELSE s - 1 END AS ps,
		((h / 9000000) % 30000)::int AS dur
	FROM generate_series($1::int, $2::int) AS c
	CROSS JOIN LATERAL (SELECT md5('corr:' || c)::uuid::text AS corr,
		20 + (hashint4(c) & 2147483647) % 61 AS n,
		CASE WHEN (hashint4(c + 3) & 2147483647) % 20 = 0 THEN NULL
		     ELSE (` + sqlArray(readNamespaces) + `)[1 + (hashint4(c + 5) & 2147483647) % 20] END AS ns,
		$3::timestamptz + ((c - 1) * $4::float8) * interval '1 second' AS t0) AS k
	CROSS JOIN LATERAL generate_series(1, k.n) AS s
	CROSS JOIN LATERAL (SELECT (hashint8(c::bigint * 1000 + s) & 9223372036854775807) AS h) AS hh
	CROSS JOIN LATERAL (SELECT (` + sqlArray(types) + `)[(1 + (h / 100) % 30)::int] AS typ,
		(` + sqlArray(cats) + `)[(1 + (h / 100) % 30)::int] AS cat) AS t
) AS x
ORDER BY ts`
}

// readChainHeadsSQL writes audit_chain_heads for correlations $1..$2.
const readChainHeadsSQL = `
INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash)
SELECT md5('corr:' || c)::uuid::text, n, md5('h1:' || c || ':' || n) || md5('h2:' || c || ':' || n)
FROM generate_series($1::int, $2::int) AS c, LATERAL (SELECT 20 + (hashint4(c) & 2147483647) % 61 AS n) AS k
ON CONFLICT (correlation_id) DO NOTHING`

type loadStats struct {
	events      int64
	corrs       int
	start, end  time.Time
	insert      time.Duration
	index       time.Duration
	vacuum      time.Duration
	rollups     time.Duration
	indexDefs   []string
	avgDataText float64
	avgDataCol  float64
}

// loadReadData fills audit_events with about `events` events over the last 30 days.
func loadReadData(ctx context.Context, e *env, events int64) (loadStats, error) {
	st := loadStats{corrs: int(max(events/readEventsPerCor, 1))}
	st.end = time.Now().UTC().Add(-time.Hour)
	st.start = st.end.Add(-readDays * 24 * time.Hour)
	spacing := (float64(readDays*24*3600) - float64(readEventsPerCor*readStepSeconds*2)) / float64(st.corrs)

	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return st, err
	}
	defer conn.Close(context.Background())
	// Partitions for every month the data touches (the server makes last
	// month's and the coming ones; this is belt and braces).
	for m := time.Date(st.start.Year(), st.start.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(st.end); m = m.AddDate(0, 1, 0) {
		name := fmt.Sprintf("audit_events_y%04dm%02d", m.Year(), int(m.Month()))
		if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF audit_events FOR VALUES FROM ('%s') TO ('%s')`,
			name, m.Format(time.DateOnly), m.AddDate(0, 1, 0).Format(time.DateOnly))); err != nil {
			return st, fmt.Errorf("partition %s: %w", name, err)
		}
	}
	// Secondary indexes of the partitioned table (the primary key stays).
	rows, err := conn.Query(ctx, `SELECT i.indexname, i.indexdef FROM pg_indexes i
		WHERE i.tablename = 'audit_events' AND i.indexname <> 'audit_events_pkey' ORDER BY 1`)
	if err != nil {
		return st, err
	}
	var names []string
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			return st, err
		}
		// pg_indexes shows a partitioned table's index as "ON ONLY", which
		// would build nothing on the partitions.
		d = strings.Replace(d, " ON ONLY ", " ON ", 1)
		names, st.indexDefs = append(names, n), append(st.indexDefs, d)
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	for _, n := range names {
		if _, err := conn.Exec(ctx, "DROP INDEX "+pgx.Identifier{n}.Sanitize()); err != nil {
			return st, fmt.Errorf("drop %s: %w", n, err)
		}
	}

	logf("loading %d correlations (~%d events) over %s … %s, 2 sessions", st.corrs, int64(st.corrs)*readEventsPerCor,
		st.start.Format(time.DateTime), st.end.Format(time.DateTime))
	t0 := time.Now()
	sqlText := readInsertSQL()
	var next atomic.Int64
	next.Store(1)
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, e.dbURL)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for _, s := range []string{"SET session_replication_role = replica", "SET synchronous_commit = off", "SET work_mem = '256MB'"} {
				if _, err := c.Exec(ctx, s); err != nil {
					errs <- err
					return
				}
			}
			for ctx.Err() == nil {
				lo := next.Add(readChunkCors) - readChunkCors
				if lo > int64(st.corrs) {
					return
				}
				hi := min(lo+readChunkCors-1, int64(st.corrs))
				tag, err := c.Exec(ctx, sqlText, lo, hi, st.start, spacing)
				if err != nil {
					errs <- fmt.Errorf("insert correlations %d..%d: %w", lo, hi, err)
					return
				}
				if _, err := c.Exec(ctx, readChainHeadsSQL, lo, hi); err != nil {
					errs <- fmt.Errorf("chain heads %d..%d: %w", lo, hi, err)
					return
				}
				n := done.Add(tag.RowsAffected())
				if hi%(readChunkCors*10) == 0 || hi == int64(st.corrs) {
					logf("  %d correlations, %d events so far (%.0f events/s)", hi, n, float64(n)/time.Since(t0).Seconds())
				}
			}
			errs <- ctx.Err()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return st, err
		}
	}
	st.events = done.Load()
	st.insert = time.Since(t0)
	logf("inserted %d events in %s (%.0f events/s)", st.events, st.insert.Round(time.Second), float64(st.events)/st.insert.Seconds())

	// Re-create the indexes, two at a time.
	t1 := time.Now()
	defs := make(chan string, len(st.indexDefs))
	for _, d := range st.indexDefs {
		defs <- d
	}
	close(defs)
	errs = make(chan error, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, e.dbURL)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(ctx, "SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 0"); err != nil {
				errs <- err
				return
			}
			for d := range defs {
				t := time.Now()
				if _, err := c.Exec(ctx, d); err != nil {
					errs <- fmt.Errorf("%s: %w", d, err)
					return
				}
				logf("  %s (%s)", strings.SplitN(d, " ON ", 2)[0], time.Since(t).Round(100*time.Millisecond))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return st, err
		}
	}
	st.index = time.Since(t1)
	t2 := time.Now()
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) audit_events"); err != nil {
		return st, fmt.Errorf("vacuum: %w", err)
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) audit_chain_heads"); err != nil {
		return st, fmt.Errorf("vacuum: %w", err)
	}
	st.vacuum = time.Since(t2)
	logf("indexes in %s, VACUUM ANALYZE in %s", st.index.Round(time.Second), st.vacuum.Round(time.Second))

	// The rows went around the write path, so the rollups are counted from
	// them with the store's own rebuild, as after a restore.
	t3 := time.Now()
	ds, err := store.Open(ctx, e.dbURL, store.Options{})
	if err != nil {
		return st, err
	}
	defer ds.Close()
	if _, err := ds.RebuildRollups(ctx, st.start.Add(-time.Hour), st.end.Add(2*time.Hour)); err != nil {
		return st, err
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) audit_rollup_hourly, audit_rollup_correlations"); err != nil {
		return st, fmt.Errorf("vacuum: %w", err)
	}
	st.rollups = time.Since(t3)
	logf("rollups rebuilt in %s", st.rollups.Round(time.Second))
	_ = conn.QueryRow(ctx, `SELECT avg(octet_length(event_data::text)), avg(pg_column_size(event_data))
		FROM audit_events TABLESAMPLE SYSTEM (1)`).Scan(&st.avgDataText, &st.avgDataCol)
	return st, nil
}
