// Package benchdata is the synthetic audit trail of the read benchmark
// (`dsbench -read`) and of the storage measurement (internal/store's
// TestStorageMeasure): events generated inside PostgreSQL by INSERT …
// SELECT FROM generate_series, in the stored form of the current schema.
//
// The rows are valid for the schema: every NOT NULL column is set, event_id
// is a UUID, chain_seq runs 1..n per correlation, event_hash and
// previous_event_hash are 32-byte bytea and link (previous_event_hash of
// seq k is event_hash of seq k-1, the empty bytea for seq 1), actor_type,
// actor_id, resource_type and resource_id are NULL (their defaults, in the
// stored form of migration 00005), parent_event_id / parent_event_date name
// an existing earlier event of the same correlation, and ChainHeadsSQL gives
// audit_chain_heads one row per correlation. The hashes are md5-derived
// stand-ins, not SHA-256 over the canonical event: verify-chain would reject
// them, which does not matter for reads or sizes.
package benchdata

import (
	"fmt"
	"strings"
)

// Types are the event types of the data set, with their categories: the
// 14 categories of CONTRACT §2.1, 30 types.
var Types = [][2]string{
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

// Namespaces are the data set's namespaces (5 % of correlations have none).
var Namespaces = []string{"production", "staging", "payments", "checkout", "search", "identity",
	"billing", "inventory", "shipping", "analytics", "monitoring", "logging", "ingress", "kube-system",
	"data-platform", "ml-serving", "frontend", "backend", "batch-jobs", "security"}

// The shape of the data set.
const (
	Days                 = 30
	EventsPerCorrelation = 50   // average; a correlation has 20..80 events
	StepSeconds          = 17   // mean gap between a correlation's events
	ChunkCorrelations    = 4000 // correlations per INSERT statement (~200,000 rows)
)

func sqlArray(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + strings.ReplaceAll(x, "'", "''") + "'"
	}
	return "ARRAY[" + strings.Join(q, ",") + "]"
}

// InsertSQL generates the events of correlations $1..$2. Correlation c
// starts at $3 + (c-1)·$4 seconds, so correlations follow each other in
// time (about 65 run at once) and each chunk is written in time order: the
// heap is laid out by time, as a live system's would be.
func InsertSQL() string {
	types := make([]string, len(Types))
	cats := make([]string, len(Types))
	for i, t := range Types {
		types[i], cats[i] = t[0], t[1]
	}
	// ts(c, s): the event's time; monotone in s (the jitter is < the step).
	ts := func(s string) string {
		return fmt.Sprintf(`(t0 + ((%[1]s - 1) * %[2]d) * interval '1 second'
			+ ((hashint4(c * 1000 + %[1]s) & 2147483647) %% %[3]d) * interval '1 millisecond')`, s, StepSeconds, (StepSeconds-2)*1000)
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
		     ELSE (` + sqlArray(Namespaces) + `)[1 + (hashint4(c + 5) & 2147483647) % 20] END AS ns,
		$3::timestamptz + ((c - 1) * $4::float8) * interval '1 second' AS t0) AS k
	CROSS JOIN LATERAL generate_series(1, k.n) AS s
	CROSS JOIN LATERAL (SELECT (hashint8(c::bigint * 1000 + s) & 9223372036854775807) AS h) AS hh
	CROSS JOIN LATERAL (SELECT (` + sqlArray(types) + `)[(1 + (h / 100) % 30)::int] AS typ,
		(` + sqlArray(cats) + `)[(1 + (h / 100) % 30)::int] AS cat) AS t
) AS x
ORDER BY ts`
}

// ChainHeadsSQL writes audit_chain_heads for correlations $1..$2.
const ChainHeadsSQL = `
INSERT INTO audit_chain_heads (correlation_id, last_seq, last_hash)
SELECT md5('corr:' || c)::uuid::text, n, md5('h1:' || c || ':' || n) || md5('h2:' || c || ':' || n)
FROM generate_series($1::int, $2::int) AS c, LATERAL (SELECT 20 + (hashint4(c) & 2147483647) % 61 AS n) AS k
ON CONFLICT (correlation_id) DO NOTHING`
