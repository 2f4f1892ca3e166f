-- The events of the storage measurement (TestStorageMeasure): correlations
-- $1..$2, correlation c starting at $3 + (c-1)·$4 seconds, 20..80 events
-- each, about 50 on average: what internal/benchdata's InsertSQL generated
-- before migration 00005.
--
-- Frozen: the form of the rows up to migration 00004 (hex text hashes, every
-- default stored), for the "before 00005" column of the measurement.
-- benchdata.InsertSQL is the current form.
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
	'service', cat || '-service', '10.' || (c % 200) || '.' || (s % 250) || '.' || (h % 250),
	cat, corr,
	CASE WHEN has_parent THEN md5('ev:' || c || ':' || ps)::uuid END,
	CASE WHEN has_parent THEN ((t0 + ((ps - 1) * 17) * interval '1 second'
			+ ((hashint4(c * 1000 + ps) & 2147483647) % 15000) * interval '1 millisecond') AT TIME ZONE 'UTC')::date END,
	ns, 'cluster-' || (c % 5), sev, dur,
	CASE WHEN outcome = 'failure' THEN 'E' || (100 + h % 40) END,
	CASE WHEN outcome = 'failure' THEN 'operation failed: timeout waiting for rollout of app-' || (c % 997) END,
	2555, false, s,
	md5('h1:' || c || ':' || s) || md5('h2:' || c || ':' || s),
	CASE WHEN s = 1 THEN '' ELSE md5('h1:' || c || ':' || (s - 1)) || md5('h2:' || c || ':' || (s - 1)) END,
	'sha256', ts + interval '40 milliseconds'
FROM (
	SELECT c, s, k.corr, k.ns, k.t0, h,
		(t0 + ((s - 1) * 17) * interval '1 second'
			+ ((hashint4(c * 1000 + s) & 2147483647) % 15000) * interval '1 millisecond') AS ts,
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
		     ELSE (ARRAY['production','staging','payments','checkout','search','identity','billing','inventory','shipping','analytics','monitoring','logging','ingress','kube-system','data-platform','ml-serving','frontend','backend','batch-jobs','security'])[1 + (hashint4(c + 5) & 2147483647) % 20] END AS ns,
		$3::timestamptz + ((c - 1) * $4::float8) * interval '1 second' AS t0) AS k
	CROSS JOIN LATERAL generate_series(1, k.n) AS s
	CROSS JOIN LATERAL (SELECT (hashint8(c::bigint * 1000 + s) & 9223372036854775807) AS h) AS hh
	CROSS JOIN LATERAL (SELECT (ARRAY['gateway.signal.received','gateway.crd.created','signalprocessing.enrichment.completed','signalprocessing.classification.completed','analysis.investigation.started','analysis.rca.completed','analysis.recommendation.generated','aiagent.llm.request','aiagent.llm.response','aiagent.tool.call','agentsession.started','agentsession.completed','workflow.catalog.searched','workflow.selected','workflow.validated','workflowexecution.started','workflowexecution.step.completed','workflowexecution.completed','orchestration.remediation.created','orchestration.phase.transitioned','orchestration.remediation.completed','approval.requested','approval.decided','effectiveness.assessment.completed','notification.message.sent','notification.delivery.failed','actiontype.registered','apifrontend.request.received','security.access.denied','security.token.validated'])[(1 + (h / 100) % 30)::int] AS typ,
		(ARRAY['gateway','gateway','signalprocessing','signalprocessing','analysis','analysis','analysis','aiagent','aiagent','aiagent','agentsession','agentsession','workflow','workflow','workflow','workflowexecution','workflowexecution','workflowexecution','orchestration','orchestration','orchestration','approval','approval','effectiveness','notification','notification','actiontype','apifrontend','security','security'])[(1 + (h / 100) % 30)::int] AS cat) AS t
) AS x
ORDER BY ts
