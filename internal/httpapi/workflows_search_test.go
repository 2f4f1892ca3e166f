package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/catalog"
)

// labelled returns a registration with the given mandatory labels (the
// others "*") and extra keys.
func labelled(name string, labels map[string][]string, extra map[string]any) map[string]any {
	l := map[string]any{"signal_type": []string{"OOMKilled"}}
	for _, k := range catalog.MandatoryLabels[1:] {
		l[k] = []string{"*"}
	}
	for k, v := range labels {
		l[k] = v
	}
	over := map[string]any{"labels": l}
	for k, v := range extra {
		over[k] = v
	}
	return workflow(name, "1.0.0", over)
}

var fullContext = map[string]any{"signal_type": "oomkilled", "severity": "critical", "component": "deployment",
	"environment": "production", "priority": "P1", "risk_tolerance": "low", "business_category": "payments"}

// search posts a search and requires 200.
func (b *bundle) search(req map[string]any) map[string]any {
	b.t.Helper()
	r := b.do(http.MethodPost, "/api/v1/workflows/search", req)
	require.Equal(b.t, http.StatusOK, r.status, "%s", r.body)
	return r.json(b.t)
}

type hit struct {
	name  string
	score float64
}

func hits(res map[string]any) []hit {
	var out []hit
	for _, r := range res["results"].([]any) {
		m := r.(map[string]any)
		out = append(out, hit{m["workflow"].(map[string]any)["workflow_name"].(string), m["score"].(float64)})
	}
	return out
}

func requireHits(t *testing.T, want []hit, got []hit) {
	t.Helper()
	require.Len(t, got, len(want), "%v", got)
	for i := range want {
		assert.Equal(t, want[i].name, got[i].name, "rank %d", i+1)
		assert.InDelta(t, want[i].score, got[i].score, 1e-9, "%s", want[i].name)
	}
}

func TestSearchFiltersAndScoresContextLabels(t *testing.T) {
	b := setup(t)
	b.register(labelled("exact", map[string][]string{"severity": {"critical"}, "component": {"deployment"},
		"environment": {"production"}, "priority": {"P1"}, "risk_tolerance": {"low"}, "business_category": {"payments"}}, nil), http.StatusCreated)
	b.register(labelled("wild", nil, nil), http.StatusCreated)
	b.register(labelled("mixed", map[string][]string{"severity": {"high", "CRITICAL"}}, nil), http.StatusCreated)
	b.register(labelled("other-env", map[string][]string{"environment": {"staging"}}, nil), http.StatusCreated)
	b.register(labelled("crash", map[string][]string{"signal_type": {"CrashLoopBackOff"}}, nil), http.StatusCreated)
	b.register(labelled("restart", nil, map[string]any{"action_type": "RestartPod"}), http.StatusCreated)

	res := b.search(map[string]any{"context": fullContext, "action_type": "IncreaseMemory"})
	// exact: every label exact (6 × 1); mixed: severity exact, five
	// wildcards ((1 + 5 × 0.5) / 6); wild: six wildcards (6 × 0.5 / 6).
	requireHits(t, []hit{{"exact", 1}, {"mixed", 3.5 / 6}, {"wild", 0.5}}, hits(res))
	assert.EqualValues(t, 3, res["total_candidates"])
	for i, r := range res["results"].([]any) {
		m := r.(map[string]any)
		assert.EqualValues(t, i+1, m["rank"])
		assert.NotContains(t, m, "terms", "terms only with explain")
		assert.NotContains(t, m["workflow"], "content")
	}

	// Without action_type the RestartPod workflow is a candidate too; each
	// context key is a filter of its own.
	requireHits(t, []hit{{"exact", 1}, {"mixed", 3.5 / 6}, {"restart", 0.5}, {"wild", 0.5}},
		hits(b.search(map[string]any{"context": fullContext})))
	staging := map[string]any{"signal_type": "OOMKilled", "environment": "staging"}
	requireHits(t, []hit{{"other-env", 1}, {"mixed", 0.5}, {"restart", 0.5}, {"wild", 0.5}},
		hits(b.search(map[string]any{"context": staging})))

	// Only signal_type: no scored term, every candidate scores 1 (ties by name).
	requireHits(t, []hit{{"exact", 1}, {"mixed", 1}, {"other-env", 1}, {"restart", 1}, {"wild", 1}},
		hits(b.search(map[string]any{"context": map[string]any{"signal_type": "OOMKILLED"}})))
	requireHits(t, []hit{{"crash", 1}}, hits(b.search(map[string]any{"context": map[string]any{"signal_type": "crashloopbackoff"}})))

	// min_score and top_k cut the results, not total_candidates.
	res = b.search(map[string]any{"context": fullContext, "min_score": 0.55})
	requireHits(t, []hit{{"exact", 1}, {"mixed", 3.5 / 6}}, hits(res))
	assert.EqualValues(t, 4, res["total_candidates"])
	res = b.search(map[string]any{"context": fullContext, "top_k": 1})
	requireHits(t, []hit{{"exact", 1}}, hits(res))
	assert.EqualValues(t, 4, res["total_candidates"])
	res = b.search(map[string]any{"context": map[string]any{"signal_type": "nothing"}})
	assert.Equal(t, []any{}, res["results"])
	assert.EqualValues(t, 0, res["total_candidates"])
}

func TestSearchRejectsBadRequests(t *testing.T) {
	b := setup(t)
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{}, "context.signal_type"},
		{map[string]any{"context": map[string]any{"severity": "critical"}}, "context.signal_type"},
		{map[string]any{"context": map[string]any{"signal_type": "x", "colour": "red"}}, "context.colour"},
		{map[string]any{"context": map[string]any{"signal_type": "x", "severity": "*"}}, "context.severity"},
		{map[string]any{"context": map[string]any{"signal_type": "x"}, "top_k": 0}, "top_k"},
		{map[string]any{"context": map[string]any{"signal_type": "x"}, "top_k": 101}, "top_k"},
		{map[string]any{"context": map[string]any{"signal_type": "x"}, "top_k": 2.5}, "top_k"},
		{map[string]any{"context": map[string]any{"signal_type": "x"}, "min_score": 1.5}, "min_score"},
		{map[string]any{"context": map[string]any{"signal_type": "x"}, "detected_labels": map[string]any{"gpu": true}}, "detected_labels.gpu"},
		{map[string]any{"context": map[string]any{"signal_type": "x"}, "detected_labels": map[string]any{"gitops_tool": "*"}}, "detected_labels.gitops_tool"},
		{map[string]any{"context": map[string]any{"signal_type": "x"}, "custom_labels": map[string]any{"team": "payments"}}, "custom_labels.team"},
		{"[]", "body"},
	} {
		r := b.do(http.MethodPost, "/api/v1/workflows/search", c.body)
		require.Equal(t, http.StatusBadRequest, r.status, "%v: %s", c.body, r.body)
		assert.Contains(t, r.fields(t), c.field, "%v", c.body)
	}
}

func TestSearchDetectedAndCustomLabels(t *testing.T) {
	b := setup(t)
	yes, no := true, false
	b.register(labelled("needs-argocd", nil, map[string]any{"detected_labels": map[string]any{"gitops_managed": yes, "gitops_tool": "argocd"}}), http.StatusCreated)
	b.register(labelled("not-gitops", nil, map[string]any{"detected_labels": map[string]any{"gitops_managed": no}}), http.StatusCreated)
	b.register(labelled("needs-flux", nil, map[string]any{"detected_labels": map[string]any{"gitops_tool": "flux"}}), http.StatusCreated)
	b.register(labelled("any-tool", nil, map[string]any{"detected_labels": map[string]any{"gitops_tool": "*"}}), http.StatusCreated)
	b.register(labelled("stateless", nil, map[string]any{"detected_labels": map[string]any{"stateful": no}}), http.StatusCreated)

	ctx := map[string]any{"signal_type": "OOMKilled"}
	res := b.search(map[string]any{"context": ctx, "detected_labels": map[string]any{"gitops_managed": true, "gitops_tool": "argocd"}})
	// needs-argocd: both exact; any-tool: tool "*" and gitops_managed
	// undeclared (0.5 each); not-gitops and needs-flux contradict the target.
	requireHits(t, []hit{{"needs-argocd", 1}, {"any-tool", 0.5}, {"stateless", 0.5}}, hits(res))
	assert.EqualValues(t, 3, res["total_candidates"])
	// A stateful target rules out the workflow that needs a stateless one.
	requireHits(t, []hit{{"any-tool", 0.5}, {"needs-argocd", 0.5}, {"needs-flux", 0.5}, {"not-gitops", 0.5}},
		hits(b.search(map[string]any{"context": ctx, "detected_labels": map[string]any{"stateful": true}})))

	b2 := setup(t)
	b2.register(labelled("team-payments", nil, map[string]any{"custom_labels": map[string]any{"team": []string{"Payments"}}}), http.StatusCreated)
	b2.register(labelled("team-any", nil, map[string]any{"custom_labels": map[string]any{"team": []string{"*"}}}), http.StatusCreated)
	b2.register(labelled("team-checkout", nil, map[string]any{"custom_labels": map[string]any{"team": []string{"checkout"}}}), http.StatusCreated)
	b2.register(labelled("no-team", nil, nil), http.StatusCreated)
	res = b2.search(map[string]any{"context": map[string]any{"signal_type": "OOMKilled", "severity": "critical"},
		"custom_labels": map[string]any{"team": []string{"payments", "billing"}}})
	// severity: "*" everywhere (1 × 0.5); team: exact 1, "*" 0.5,
	// undeclared 0.5, another team 0 (weight 0.5). Σ weight = 1.5.
	requireHits(t, []hit{{"team-payments", (0.5 + 0.5) / 1.5}, {"no-team", (0.5 + 0.25) / 1.5},
		{"team-any", (0.5 + 0.25) / 1.5}, {"team-checkout", 0.5 / 1.5}}, hits(res))
}

func TestSearchExplainAddsUpAndTextRanks(t *testing.T) {
	b := setup(t)
	b.register(labelled("memory", map[string][]string{"severity": {"critical"}}, map[string]any{
		"title":       "Increase the memory limit",
		"description": map[string]any{"what": "Raises the memory limit of the container that was OOMKilled"},
	}), http.StatusCreated)
	b.register(labelled("restart", map[string][]string{"severity": {"critical"}}, map[string]any{
		"title":       "Restart the pod",
		"description": map[string]any{"what": "Deletes the pod so its controller starts a fresh one"},
	}), http.StatusCreated)
	res := b.search(map[string]any{"context": map[string]any{"signal_type": "OOMKilled", "severity": "critical", "environment": "prod"},
		"detected_labels": map[string]any{"hpa_enabled": true}, "custom_labels": map[string]any{"team": []string{"a"}},
		"text": "raise the memory limit", "explain": true})
	results := res["results"].([]any)
	require.Len(t, results, 2)
	first, second := results[0].(map[string]any), results[1].(map[string]any)
	assert.Equal(t, "memory", first["workflow"].(map[string]any)["workflow_name"])
	assert.Equal(t, "restart", second["workflow"].(map[string]any)["workflow_name"])
	for _, r := range results {
		m := r.(map[string]any)
		var sum float64
		var names []string
		for _, term := range m["terms"].([]any) {
			tm := term.(map[string]any)
			names = append(names, tm["term"].(string))
			assert.InDelta(t, tm["weight"].(float64)*tm["match"].(float64)/4.0, tm["contribution"], 1e-12, "%v", tm)
			sum += tm["contribution"].(float64)
		}
		assert.Equal(t, []string{"context.severity", "context.environment", "detected.hpa_enabled", "custom.team", "text"}, names)
		assert.InDelta(t, m["score"], sum, 1e-12, "the contributions add up to the score")
	}
	textMatch := func(r map[string]any) float64 {
		terms := r["terms"].([]any)
		return terms[len(terms)-1].(map[string]any)["match"].(float64)
	}
	assert.Greater(t, textMatch(first), 0.0)
	assert.Less(t, textMatch(first), 1.0)
	assert.Zero(t, textMatch(second), "no word of the text in the restart workflow")
	// Σ weight = 1 + 1 + 0.5 + 0.5 + 1 = 4: severity exact 1, environment "*" 0.5,
	// hpa undeclared 0.5 × 0.5, team undeclared 0.5 × 0.5, and the text.
	assert.InDelta(t, (1+0.5+0.25+0.25+textMatch(first))/4.0, first["score"], 1e-12)
}

func TestSearchTiesGoByName(t *testing.T) {
	b := setup(t)
	for _, n := range []string{"tie-c", "tie-a", "tie-b"} {
		b.register(labelled(n, nil, nil), http.StatusCreated)
	}
	res := b.search(map[string]any{"context": fullContext})
	requireHits(t, []hit{{"tie-a", 0.5}, {"tie-b", 0.5}, {"tie-c", 0.5}}, hits(res))
}

func TestSearchUsesConfiguredWeights(t *testing.T) {
	w := catalog.Weights{Context: 1, Detected: 0, Custom: 0.5, Text: 1}
	b := setup(t, func(o *options) { o.weights = &w })
	b.register(labelled("w", map[string][]string{"severity": {"critical"}}, nil), http.StatusCreated)
	res := b.search(map[string]any{"context": map[string]any{"signal_type": "OOMKilled", "severity": "critical"},
		"detected_labels": map[string]any{"stateful": true}, "explain": true})
	// With the default weights (1, 0.5) this would be (1 + 0.25) / 1.5.
	requireHits(t, []hit{{"w", 1}}, hits(res))
}

func TestSearchOnlyOffersTheLatestVersion(t *testing.T) {
	b := setup(t)
	b.register(workflow("versions", "1.0.0", nil), http.StatusCreated)
	v2 := b.register(workflow("versions", "2.0.0", nil), http.StatusCreated)
	b.register(workflow("versions", "3.0.0-rc.1", nil), http.StatusCreated)
	latestOffered := func() string {
		res := b.search(map[string]any{"context": map[string]any{"signal_type": "OOMKilled"}})
		require.Len(t, res["results"], 1)
		return res["results"].([]any)[0].(map[string]any)["workflow"].(map[string]any)["version"].(string)
	}
	assert.Equal(t, "2.0.0", latestOffered())
	r := b.do(http.MethodPatch, "/api/v1/workflows/"+id(v2), map[string]any{"status": "disabled", "reason": "bad"})
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "1.0.0", latestOffered(), "a stable version before the pre-release")
}

func TestDiscoveryValidation(t *testing.T) {
	b := setup(t)
	offered := b.register(labelled("offered", nil, nil), http.StatusCreated)
	other := b.register(labelled("other", map[string][]string{"signal_type": {"CrashLoopBackOff"}}, nil), http.StatusCreated)
	res := b.search(map[string]any{"context": map[string]any{"signal_type": "OOMKilled"}, "remediation_id": "rr-catalog-1"})
	disc := res["discovery_id"].(string)
	validate := func(d, wid string) response {
		return b.do(http.MethodPost, "/api/v1/workflows/discoveries/"+d+"/validate", map[string]any{"workflow_id": wid})
	}
	verdict := func(wid string) map[string]any {
		r := validate(disc, wid)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		return r.json(t)
	}
	assert.Equal(t, map[string]any{"valid": true, "reason": "ok"}, verdict(id(offered)))
	assert.Equal(t, map[string]any{"valid": false, "reason": "not_offered"}, verdict(id(other)))
	assert.Equal(t, map[string]any{"valid": false, "reason": "not_offered"}, verdict(uuid.NewString()))
	r := b.do(http.MethodPatch, "/api/v1/workflows/"+id(offered), map[string]any{"status": "disabled", "reason": "recalled"})
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, map[string]any{"valid": false, "reason": "no_longer_active"}, verdict(id(offered)))

	assert.Equal(t, http.StatusNotFound, validate(uuid.NewString(), id(offered)).status)
	assert.Equal(t, http.StatusNotFound, validate("not-a-uuid", id(offered)).status)
	r = validate(disc, "nope")
	require.Equal(t, http.StatusBadRequest, r.status)
	assert.Contains(t, r.fields(t), "workflow_id")

	// The search and the four answered validations are in the remediation's trail.
	assert.Equal(t, []string{"workflow.catalog.search_completed", "workflow.catalog.selection_validated",
		"workflow.catalog.selection_validated", "workflow.catalog.selection_validated", "workflow.catalog.selection_validated"},
		b.chainEvents("rr-catalog-1"))
	var data map[string]any
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT event_data FROM audit_events
		WHERE correlation_id = 'rr-catalog-1' AND chain_seq = 1`).Scan(&data))
	assert.Equal(t, disc, data["discovery_id"])
	assert.Equal(t, []any{id(offered)}, data["workflow_ids"])

	// Without a remediation_id the discovery is its own correlation.
	res = b.search(map[string]any{"context": map[string]any{"signal_type": "CrashLoopBackOff"}})
	assert.Equal(t, []string{"workflow.catalog.search_completed"},
		b.chainEvents("workflow-discovery/"+res["discovery_id"].(string)))
}

func TestDiscoveriesExpire(t *testing.T) {
	b := setup(t)
	b.register(labelled("offered", nil, nil), http.StatusCreated)
	res := b.search(map[string]any{"context": map[string]any{"signal_type": "OOMKilled"}})
	disc := res["discovery_id"].(string)
	_, err := b.store.Pool().Exec(context.Background(), `UPDATE workflow_discoveries SET created_at = created_at - interval '25 hours'`)
	require.NoError(t, err)
	r := b.do(http.MethodPost, "/api/v1/workflows/discoveries/"+disc+"/validate", map[string]any{"workflow_id": uuid.NewString()})
	assert.Equal(t, http.StatusNotFound, r.status, "older than catalog.discoveryTTL (24h)")
	n, err := b.catalog.SweepDiscoveries(context.Background())
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
}

func TestSearchAnswers503WhenItsEventCannotBeTaken(t *testing.T) {
	sink := catalog.EventSinkFunc(func(context.Context, []*audit.Event) error { return errors.New("spool and database down") })
	b := setup(t, func(o *options) { o.catalogSink = sink })
	b.register(labelled("offered", nil, nil), http.StatusCreated)
	r := b.do(http.MethodPost, "/api/v1/workflows/search", map[string]any{"context": map[string]any{"signal_type": "OOMKilled"}})
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	assert.NotEmpty(t, r.header.Get("Retry-After"))
}
