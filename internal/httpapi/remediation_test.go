package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/apitest"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/httpapi"
	"kubernaut.ai/datastorage/internal/remediation"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

// The remediation read models of CONTRACT §16, against real PostgreSQL, every
// response checked against api/openapi.yaml by b.do.

// historySetup accepts events up to 120 days old, so that tier 2 (90 days by
// default) and what lies beyond it can be written through the API.
func historySetup(t *testing.T) *bundle {
	return setup(t, func(o *options) { o.maxAge = 120 * 24 * time.Hour })
}

func ts(d time.Duration) string { return time.Now().UTC().Add(d).Format(time.RFC3339Nano) }

// remediationEvent is a remediation.workflow_created event of target with
// the pre-remediation spec hash pre, at now+offset.
func remediationEvent(corr, target, pre string, offset time.Duration, extra map[string]any) map[string]any {
	data := map[string]any{
		"event_type":                "remediation.workflow_created",
		"target_resource":           target,
		"pre_remediation_spec_hash": pre,
		"signal_type":               "alert",
		"action_type":               "RestartPod",
		"outcome":                   "Success",
		"signal_fingerprint":        "fp-" + corr,
	}
	e := event(map[string]any{"correlation_id": corr, "event_type": "remediation.workflow_created",
		"event_category": "orchestration", "event_action": "workflow_created", "event_timestamp": ts(offset), "event_data": data})
	for k, v := range extra {
		e[k] = v
	}
	return e
}

// assessment is an effectiveness event of type typ at now+offset.
func assessment(corr, typ string, offset time.Duration, data map[string]any) map[string]any {
	if data == nil {
		data = map[string]any{}
	}
	data["event_type"] = typ
	return event(map[string]any{"correlation_id": corr, "event_type": typ, "event_category": "effectiveness",
		"event_action": "assessed", "event_timestamp": ts(offset), "event_data": data})
}

// historyContext runs GET /remediation-history/context with the params.
func (b *bundle) historyContext(params map[string]string) map[string]any {
	b.t.Helper()
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	r := b.do("GET", "/api/v1/remediation-history/context?"+q.Encode(), nil)
	require.Equal(b.t, 200, r.status, "%s", r.body)
	return r.json(b.t)
}

// chain returns a tier's entries.
func chain(t *testing.T, body map[string]any, tier string) []map[string]any {
	t.Helper()
	tr, ok := body[tier].(map[string]any)
	require.True(t, ok, "%s is an object", tier)
	c, ok := tr["chain"].([]any)
	require.True(t, ok, "%s.chain is an array, never null", tier)
	out := make([]map[string]any, len(c))
	for i, e := range c {
		out[i] = e.(map[string]any)
	}
	return out
}

// uidsAndMatches lists "uid:hashMatch" of a chain, in order.
func uidsAndMatches(entries []map[string]any) []string {
	out := []string{}
	for _, e := range entries {
		out = append(out, e["remediationUID"].(string)+":"+e["hashMatch"].(string))
	}
	return out
}

func TestHistoryContextMatchesTiersAndOrder(t *testing.T) {
	t.Parallel()
	b := historySetup(t)
	const target, h = "prod/Deployment/api", "h-cur"
	b.seed(
		// a: pre-hash match in tier 1, with every field of an entry.
		remediationEvent("a", target, h, -2*time.Hour, nil),
		assessment("a", "effectiveness.hash.computed", -110*time.Minute, map[string]any{
			"pre_remediation_spec_hash": h, "post_remediation_spec_hash": "h-after", "hash_match": false}),
		assessment("a", "effectiveness.health.assessed", -109*time.Minute, map[string]any{"assessed": true, "score": 1.0,
			"health_checks": map[string]any{"pod_running": true, "readiness_pass": false, "restart_delta": 2,
				"crash_loops": false, "oom_killed": false, "pending_count": 0, "unknown_check": 1}}),
		assessment("a", "effectiveness.alert.assessed", -108*time.Minute, map[string]any{"assessed": true, "score": 0.0,
			"alert_resolution": map[string]any{"alert_resolved": true}}),
		assessment("a", "effectiveness.alert.assessed", -107*time.Minute, map[string]any{
			"alert_resolution": map[string]any{"alert_resolved": false}}), // the first one wins
		assessment("a", "effectiveness.metrics.assessed", -106*time.Minute, map[string]any{"assessed": true, "score": 0.5,
			"metric_deltas": map[string]any{"cpu_before": 0.9, "cpu_after": 0.3, "pv_usage_ratio_after": 0.5}}),
		assessment("a", "effectiveness.assessment.completed", -105*time.Minute, map[string]any{"reason": "Full"}),
		// b: pre hash differs; the post hash of a hash.computed event matches,
		// and that event is in the future (any time counts).
		remediationEvent("b", target, "h-old", -3*time.Hour, nil),
		assessment("b", "effectiveness.hash.computed", 20*time.Minute, map[string]any{
			"pre_remediation_spec_hash": "h-old", "post_remediation_spec_hash": h}),
		// c: the post hash is only in an assessment.completed event, so the
		// fold's post hash is unknown: postRemediation.
		remediationEvent("c", target, "h-old", -4*time.Hour, nil),
		assessment("c", "effectiveness.assessment.completed", -3*time.Hour, map[string]any{
			"reason": "AlertDecayTimeout", "post_remediation_spec_hash": h}),
		// d: a post-hash match by an earlier hash.computed; the last one names
		// another hash: in the chain, but hashMatch none.
		remediationEvent("d", target, "h-old", -5*time.Hour, nil),
		assessment("d", "effectiveness.hash.computed", -290*time.Minute, map[string]any{"post_remediation_spec_hash": h}),
		assessment("d", "effectiveness.hash.computed", -280*time.Minute, map[string]any{"post_remediation_spec_hash": "h-other"}),
		// e: no match at all.
		remediationEvent("e", target, "h-x", -time.Hour, nil),
		assessment("e", "effectiveness.hash.computed", -50*time.Minute, map[string]any{"post_remediation_spec_hash": "h-y"}),
		// two remediation events of one correlation: two entries.
		remediationEvent("two", target, h, -7*time.Hour, nil),
		remediationEvent("two", target, h, -6*time.Hour, nil),
		// f: tier 2; g: beyond tier 2; fut: in the future; other targets and
		// a remediation event of another type.
		remediationEvent("f", target, h, -48*time.Hour, nil),
		remediationEvent("g", target, h, -95*24*time.Hour, nil),
		remediationEvent("fut", target, h, 30*time.Minute, nil),
		remediationEvent("other", "prod/Deployment/web", h, -time.Hour, nil),
		remediationEvent("ns", "staging/Deployment/api", h, -time.Hour, nil),
		remediationEvent("type", target, h, -time.Hour, map[string]any{"event_type": "remediation.workflow_completed"}),
	)
	body := b.historyContext(map[string]string{"targetNamespace": "prod", "targetKind": "Deployment",
		"targetName": "api", "currentSpecHash": h})

	assert.Equal(t, target, body["targetResource"])
	assert.Equal(t, h, body["currentSpecHash"])
	assert.Equal(t, true, body["regressionDetected"])
	assert.Equal(t, "24h0m0s", body["tier1"].(map[string]any)["window"])
	assert.Equal(t, "2160h0m0s", body["tier2"].(map[string]any)["window"])
	t1, t2 := chain(t, body, "tier1"), chain(t, body, "tier2")
	assert.Equal(t, []string{"two:preRemediation", "two:preRemediation", "d:none", "c:postRemediation",
		"b:postRemediation", "a:preRemediation"}, uidsAndMatches(t1), "oldest first")
	assert.Equal(t, []string{"f:preRemediation"}, uidsAndMatches(t2))

	a := t1[5]
	completed := a["completedAt"].(string)
	delete(a, "completedAt")
	assert.Equal(t, map[string]any{
		"remediationUID": "a", "signalType": "alert", "actionType": "RestartPod", "outcome": "Success",
		"signalFingerprint": "fp-a", "preRemediationSpecHash": h,
		// (0.40·1 + 0.35·0 + 0.25·0.5) / 1
		"effectivenessScore":      0.525,
		"postRemediationSpecHash": "h-after", "assessmentReason": "Full", "signalResolved": true,
		"healthChecks": map[string]any{"podRunning": true, "readinessPass": false, "restartDelta": 2.0,
			"crashLoops": false, "oomKilled": false, "pendingCount": 0.0},
		"metricDeltas": map[string]any{"cpuBefore": 0.9, "cpuAfter": 0.3, "pvUsageRatioAfter": 0.5},
		"sideEffects":  []any{}, "hashMatch": "preRemediation",
	}, a)
	stamp, err := time.Parse(time.RFC3339Nano, completed)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(-2*time.Hour), stamp, 10*time.Minute, "completedAt is the event's timestamp")

	// An entry without assessments has no fold keys; an out-of-client-enum
	// reason is still a reason here.
	assert.Equal(t, "AlertDecayTimeout", t1[3]["assessmentReason"])
	assert.NotContains(t, t1[3], "postRemediationSpecHash")
	assert.NotContains(t, t1[3], "effectivenessScore")
	assert.Equal(t, "h-other", t1[2]["postRemediationSpecHash"])
	for _, k := range []string{"effectivenessScore", "signalResolved", "healthChecks", "metricDeltas", "assessmentReason", "postRemediationSpecHash"} {
		assert.NotContains(t, t1[0], k, "no assessment carries %s", k)
	}
	// Tier 2 carries the summary only.
	f := t2[0]
	delete(f, "completedAt")
	assert.Equal(t, map[string]any{"remediationUID": "f", "signalType": "alert", "actionType": "RestartPod",
		"outcome": "Success", "hashMatch": "preRemediation"}, f)
}

func TestHistoryContextRegressionDetected(t *testing.T) {
	t.Parallel()
	b := historySetup(t)
	b.seed(
		// x: a post match in tier 1, a pre match in tier 2 only.
		remediationEvent("x1", "ns/Deployment/x", "old", -time.Hour, nil),
		assessment("x1", "effectiveness.hash.computed", -50*time.Minute, map[string]any{"post_remediation_spec_hash": "H"}),
		remediationEvent("x2", "ns/Deployment/x", "H", -72*time.Hour, nil),
		// y: post matches only.
		remediationEvent("y1", "ns/Deployment/y", "old", -time.Hour, nil),
		assessment("y1", "effectiveness.hash.computed", -50*time.Minute, map[string]any{"post_remediation_spec_hash": "H"}),
		remediationEvent("y2", "ns/Deployment/y", "old", -72*time.Hour, nil),
		assessment("y2", "effectiveness.hash.computed", -71*time.Hour, map[string]any{"post_remediation_spec_hash": "H"}),
		// z: a pre match in tier 1 only.
		remediationEvent("z1", "ns/Deployment/z", "H", -time.Hour, nil),
	)
	for name, want := range map[string]bool{"x": true, "y": false, "z": true} {
		body := b.historyContext(map[string]string{"targetNamespace": "ns", "targetKind": "Deployment", "targetName": name, "currentSpecHash": "H"})
		assert.Equal(t, want, body["regressionDetected"], "target %s", name)
	}
	body := b.historyContext(map[string]string{"targetNamespace": "ns", "targetKind": "Deployment", "targetName": "nothing", "currentSpecHash": "H"})
	assert.Equal(t, false, body["regressionDetected"])
	assert.Empty(t, chain(t, body, "tier1"))
	assert.Empty(t, chain(t, body, "tier2"))
}

func TestHistoryContextClusterScopedTargetAndClusterFilter(t *testing.T) {
	t.Parallel()
	b := historySetup(t)
	b.seed(
		remediationEvent("n1", "/Node/worker-1", "H", -2*time.Hour, map[string]any{"cluster_id": "k1"}),
		remediationEvent("n2", "/Node/worker-1", "H", -time.Hour, map[string]any{"cluster_id": "k2"}),
		remediationEvent("n3", "default/Node/worker-1", "H", -time.Hour, nil),
	)
	base := map[string]string{"targetKind": "Node", "targetName": "worker-1", "currentSpecHash": "H"}
	body := b.historyContext(base)
	assert.Equal(t, "/Node/worker-1", body["targetResource"])
	assert.Equal(t, []string{"n1:preRemediation", "n2:preRemediation"}, uidsAndMatches(chain(t, body, "tier1")))

	for _, extra := range []map[string]string{{"targetNamespace": ""}, {"clusterId": ""}, {"tier1Window": "", "tier2Window": ""}} {
		p := map[string]string{}
		for k, v := range base {
			p[k] = v
		}
		for k, v := range extra {
			p[k] = v
		}
		body := b.historyContext(p)
		assert.Equal(t, []string{"n1:preRemediation", "n2:preRemediation"}, uidsAndMatches(chain(t, body, "tier1")),
			"an empty optional parameter counts as absent: %v", extra)
		assert.Equal(t, "24h0m0s", body["tier1"].(map[string]any)["window"])
	}
	base["clusterId"] = "k2"
	body = b.historyContext(base)
	assert.Equal(t, []string{"n2:preRemediation"}, uidsAndMatches(chain(t, body, "tier1")))
}

func TestHistoryContextWindowsAsGoPrintsThem(t *testing.T) {
	t.Parallel()
	b := historySetup(t)
	b.seed(
		remediationEvent("w1", "ns/Pod/p", "H", -time.Hour, nil),
		remediationEvent("w2", "ns/Pod/p", "H", -2*time.Hour, nil),
		remediationEvent("w3", "ns/Pod/p", "H", -40*time.Hour, nil),
	)
	body := b.historyContext(map[string]string{"targetNamespace": "ns", "targetKind": "Pod", "targetName": "p",
		"currentSpecHash": "H", "tier1Window": "90m", "tier2Window": "36h"})
	assert.Equal(t, "1h30m0s", body["tier1"].(map[string]any)["window"])
	assert.Equal(t, "36h0m0s", body["tier2"].(map[string]any)["window"])
	assert.Equal(t, []string{"w1:preRemediation"}, uidsAndMatches(chain(t, body, "tier1")))
	assert.Equal(t, []string{"w2:preRemediation"}, uidsAndMatches(chain(t, body, "tier2")), "w3 is beyond 36h")

	body = b.historyContext(map[string]string{"targetNamespace": "ns", "targetKind": "Pod", "targetName": "p",
		"currentSpecHash": "H", "tier1Window": "45m30s", "tier2Window": "1000h"})
	assert.Equal(t, "45m30s", body["tier1"].(map[string]any)["window"])
	assert.Equal(t, "1000h0m0s", body["tier2"].(map[string]any)["window"])
	assert.Equal(t, []string{"w3:preRemediation", "w2:preRemediation", "w1:preRemediation"}, uidsAndMatches(chain(t, body, "tier2")))
}

func TestHistoryContextNamesEachBadParameter(t *testing.T) {
	t.Parallel()
	b := historySetup(t)
	ok := "targetKind=Pod&targetName=p&currentSpecHash=H"
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{"targetKind", "targetName", "currentSpecHash"}},
		{"targetKind=&targetName=p&currentSpecHash=H", []string{"targetKind"}},
		{"targetKind=Pod&currentSpecHash=H", []string{"targetName"}},
		{"targetKind=Pod&targetName=p&currentSpecHash=", []string{"currentSpecHash"}},
		{ok + "&tier1Window=7d", []string{"tier1Window"}},
		{ok + "&tier1Window=0s", []string{"tier1Window"}},
		{ok + "&tier1Window=-1h", []string{"tier1Window"}},
		{ok + "&tier2Window=soon", []string{"tier2Window"}},
		{ok + "&tier2Window=0", []string{"tier2Window"}},
		{ok + "&tier2Window=1h", []string{"tier2Window"}},                  // not longer than the default 24h
		{ok + "&tier1Window=3000h", []string{"tier2Window"}},               // the default 2160h is shorter
		{ok + "&tier1Window=2h&tier2Window=120m", []string{"tier2Window"}}, // equal
		{ok + "&tier1Window=x&tier2Window=y", []string{"tier1Window", "tier2Window"}},
		{"targetName=p&tier1Window=1d", []string{"targetKind", "currentSpecHash", "tier1Window"}},
	} {
		r := b.do("GET", "/api/v1/remediation-history/context?"+c.query, nil)
		require.Equal(t, 400, r.status, "%s: %s", c.query, r.body)
		assert.Equal(t, "https://kubernaut.ai/problems/validation-error", r.json(t)["type"])
		fe := r.fields(t)
		got := []string{}
		for k := range fe {
			got = append(got, k)
		}
		assert.ElementsMatch(t, c.want, got, "%s: %s", c.query, r.body)
	}
}

// effectiveness runs GET /effectiveness/{corr} and returns the body.
func (b *bundle) effectiveness(corr string) map[string]any {
	b.t.Helper()
	r := b.do("GET", "/api/v1/effectiveness/"+url.PathEscape(corr), nil)
	require.Equal(b.t, 200, r.status, "%s", r.body)
	return r.json(b.t)
}

func TestEffectivenessFold(t *testing.T) {
	t.Parallel()
	b := historySetup(t)
	type ev struct {
		typ  string
		data map[string]any
	}
	null := any(nil)
	for _, c := range []struct {
		name       string
		events     []ev
		score      any // float64 or nil
		status     string
		components map[string]any
		hash       map[string]any
	}{{
		name: "weights of unassessed components go to the others",
		events: []ev{
			{"effectiveness.health.assessed", map[string]any{"assessed": true, "score": 1.0, "details": "pods healthy"}},
			{"effectiveness.alert.assessed", map[string]any{"assessed": true, "score": 0.0}},
			{"effectiveness.metrics.assessed", map[string]any{"score": 0.5, "details": ""}}, // scored, never assessed
		},
		score: 0.4 / 0.75, status: "in_progress",
		components: map[string]any{"health_assessed": true, "health_score": 1.0, "health_details": "pods healthy",
			"alert_assessed": true, "alert_score": 0.0, "metrics_assessed": false, "metrics_score": 0.5},
		hash: map[string]any{},
	}, {
		name: "null and absent scores keep the earlier one; assessed is never unmarked",
		events: []ev{
			{"effectiveness.health.assessed", map[string]any{"assessed": true, "score": 0.8, "details": "first"}},
			{"effectiveness.health.assessed", map[string]any{"assessed": false, "score": nil, "details": 7}},
			{"effectiveness.health.assessed", map[string]any{"score": "high"}},
			{"effectiveness.assessment.completed", map[string]any{"reason": "Full"}},
		},
		score: 0.8, status: "Full",
		components: map[string]any{"health_assessed": true, "health_score": 0.8, "health_details": "first",
			"alert_assessed": false, "alert_score": null, "metrics_assessed": false, "metrics_score": null},
		hash: map[string]any{},
	}, {
		name: "SpecDrift then Full stays SpecDrift, score 0",
		events: []ev{
			{"effectiveness.health.assessed", map[string]any{"assessed": true, "score": 1.0}},
			{"effectiveness.assessment.completed", map[string]any{"reason": "SpecDrift"}},
			{"effectiveness.assessment.completed", map[string]any{"reason": "Full"}},
		},
		score: 0.0, status: "SpecDrift",
		components: map[string]any{"health_assessed": true, "health_score": 1.0,
			"alert_assessed": false, "alert_score": null, "metrics_assessed": false, "metrics_score": null},
		hash: map[string]any{},
	}, {
		name: "Full then SpecDrift is SpecDrift",
		events: []ev{
			{"effectiveness.assessment.completed", map[string]any{"reason": "Full"}},
			{"effectiveness.assessment.completed", map[string]any{"reason": "SpecDrift"}},
		},
		score: 0.0, status: "SpecDrift",
		components: map[string]any{"health_assessed": false, "health_score": null,
			"alert_assessed": false, "alert_score": null, "metrics_assessed": false, "metrics_score": null},
		hash: map[string]any{},
	}, {
		name:   "only a scheduled event: no_data",
		events: []ev{{"effectiveness.assessment.scheduled", map[string]any{"score": 1.0, "assessed": true}}},
		score:  nil, status: "no_data",
		components: map[string]any{"health_assessed": false, "health_score": null,
			"alert_assessed": false, "alert_score": null, "metrics_assessed": false, "metrics_score": null},
		hash: map[string]any{},
	}, {
		name: "a status outside the client's enum is Partial",
		events: []ev{
			{"effectiveness.alert.assessed", map[string]any{"assessed": true, "score": 0.25}},
			{"effectiveness.assessment.completed", map[string]any{"reason": "AlertDecayTimeout"}},
			{"effectiveness.assessment.completed", map[string]any{"reason": 3}}, // not a string: ignored
		},
		score: 0.25, status: "Partial",
		components: map[string]any{"health_assessed": false, "health_score": null,
			"alert_assessed": true, "alert_score": 0.25, "metrics_assessed": false, "metrics_score": null},
		hash: map[string]any{},
	}, {
		name: "the hash comparison is the last event with a hash",
		events: []ev{
			{"effectiveness.hash.computed", map[string]any{"pre_remediation_spec_hash": "p1", "post_remediation_spec_hash": "q1", "hash_match": false}},
			{"effectiveness.hash.computed", map[string]any{"post_remediation_spec_hash": "q2", "hash_match": "no"}},
			{"effectiveness.hash.computed", map[string]any{"pre_remediation_spec_hash": "", "post_remediation_spec_hash": ""}},
			{"effectiveness.assessment.completed", map[string]any{"reason": "EffectivenessAssessed"}},
		},
		score: nil, status: "EffectivenessAssessed",
		components: map[string]any{"health_assessed": false, "health_score": null,
			"alert_assessed": false, "alert_score": null, "metrics_assessed": false, "metrics_score": null},
		hash: map[string]any{"post_remediation_spec_hash": "q2"},
	}} {
		corr := "eff-" + c.name
		events := []map[string]any{event(map[string]any{"correlation_id": corr})} // another category: ignored
		for i, e := range c.events {
			events = append(events, assessment(corr, e.typ, time.Duration(i-20)*time.Minute, e.data))
		}
		b.seed(events...)
		body := b.effectiveness(corr)
		computed := body["computed_at"]
		delete(body, "computed_at")
		assert.NotEmpty(t, computed, c.name)
		score := body["score"]
		delete(body, "score")
		if c.score == nil {
			assert.Nil(t, score, c.name)
			assert.Contains(t, body, "correlation_id")
		} else {
			require.IsType(t, 0.0, score, c.name)
			assert.InDelta(t, c.score.(float64), score.(float64), 1e-9, c.name)
		}
		assert.Equal(t, map[string]any{"correlation_id": corr, "components": c.components,
			"hash_comparison": c.hash, "assessment_status": c.status}, body, c.name)
	}
}

func TestEffectivenessNotFoundWithoutEffectivenessEvents(t *testing.T) {
	t.Parallel()
	b := historySetup(t)
	b.seed(remediationEvent("only-orchestration", "ns/Pod/p", "H", -time.Hour, nil))
	for _, corr := range []string{"only-orchestration", "never-written"} {
		r := b.do("GET", "/api/v1/effectiveness/"+corr, nil)
		require.Equal(t, 404, r.status, "%s", r.body)
		assert.Equal(t, "https://kubernaut.ai/problems/not-found", r.json(t)["type"])
	}
	// An effectiveness event of any type is enough for a 200.
	b.seed(assessment("only-orchestration", "effectiveness.assessment.scheduled", -time.Minute, nil))
	body := b.effectiveness("only-orchestration")
	assert.Equal(t, "no_data", body["assessment_status"])
	raw, err := json.Marshal(body["components"])
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "details", "details are omitted when empty")
}

func TestRemediationReadsAnswer503WhilePostgreSQLIsDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg, err := testenv.StartPostgres()
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Close() })
	dbURL, err := pg.CreateDatabase(ctx, "remediation_down")
	require.NoError(t, err)
	st, err := store.Open(ctx, dbURL, store.Options{MaxConns: 2, ConnectTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	api := httpapi.New(httpapi.Config{
		Validator:      &audit.Validator{MaxAge: time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30},
		Remediations:   remediation.New(st),
		Health:         &fakeHealth{},
		Log:            slog.New(slog.DiscardHandler),
		RequestTimeout: 10 * time.Second,
	})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := &bundle{t: t, srv: srv, store: st, spec: apitest.NewValidator(t)}
	// Up, both answer (404: nothing stored yet).
	require.Equal(t, 404, b.do("GET", "/api/v1/effectiveness/rr-1", nil).status)

	require.NoError(t, pg.Stop())
	for _, path := range []string{"/api/v1/effectiveness/rr-1",
		"/api/v1/remediation-history/context?targetKind=Pod&targetName=p&currentSpecHash=H"} {
		r := b.do("GET", path, nil)
		require.Equal(t, 503, r.status, "%s: %s", path, r.body)
		assert.Equal(t, "https://kubernaut.ai/problems/service-unavailable", r.json(t)["type"])
		assert.NotEmpty(t, r.header.Get("Retry-After"))
	}
}
