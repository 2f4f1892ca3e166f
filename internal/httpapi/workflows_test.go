package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
)

// digest is a valid sha256 digest for bundles.
const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// workflow returns a valid registration body; overrides replace or (with
// nil) remove top-level keys.
func workflow(name, version string, overrides map[string]any) map[string]any {
	w := map[string]any{
		"workflow_name": name,
		"version":       version,
		"title":         "Increase memory of " + name,
		"description":   map[string]any{"what": "Raises the memory limit of a deployment that was OOMKilled", "when_to_use": "Repeated OOMKilled"},
		"action_type":   "IncreaseMemory",
		"labels": map[string]any{
			"signal_type": []string{"OOMKilled"}, "severity": []string{"critical", "high"},
			"component": []string{"deployment"}, "environment": []string{"*"}, "priority": []string{"*"},
			"risk_tolerance": []string{"low", "medium"}, "business_category": []string{"*"},
		},
		"execution":  map[string]any{"engine": "tekton", "bundle": "quay.io/kubernaut/increase-memory:v1@" + digest},
		"parameters": []any{map[string]any{"name": "FACTOR", "type": "number", "required": true, "default": 1.5}},
		"content":    "apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata:\n  name: " + name + "\n",
	}
	for k, v := range overrides {
		if v == nil {
			delete(w, k)
		} else {
			w[k] = v
		}
	}
	return w
}

// register posts a workflow and requires the status.
func (b *bundle) register(w map[string]any, status int) map[string]any {
	b.t.Helper()
	r := b.do(http.MethodPost, "/api/v1/workflows", w)
	require.Equal(b.t, status, r.status, "%s", r.body)
	return r.json(b.t)
}

// chainEvents returns the event types of a correlation in chain order.
func (b *bundle) chainEvents(corr string) []string {
	b.t.Helper()
	rows, err := b.store.Pool().Query(context.Background(),
		"SELECT event_type FROM audit_events WHERE correlation_id = $1 ORDER BY chain_seq", corr)
	require.NoError(b.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(b.t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(b.t, rows.Err())
	return out
}

func (b *bundle) requireChainValid(corr string) {
	b.t.Helper()
	// A signer, because verification seals checkpoints on long chains;
	// full: every link re-checked, not only those past a checkpoint.
	signer, err := integrity.GenerateSigner()
	require.NoError(b.t, err)
	rep, err := integrity.NewService(b.store, audit.Hasher{}, signer).VerifyChain(context.Background(), corr, true)
	require.NoError(b.t, err)
	require.True(b.t, rep.IsValid, "chain %s: %+v", corr, rep.TamperedEvents)
}

func TestRegisterCreatesThenIsIdempotentThenConflicts(t *testing.T) {
	b := setup(t)
	body := workflow("oom-recovery", "1.0.0", nil)
	got := b.register(body, http.StatusCreated)

	wantID := uuid.NewSHA1(uuid.NameSpaceURL, []byte("kubernaut.ai/workflows/oom-recovery/1.0.0"))
	assert.Equal(t, wantID.String(), got["workflow_id"])
	assert.Equal(t, uuid.Version(5), uuid.MustParse(got["workflow_id"].(string)).Version())
	assert.Equal(t, "active", got["status"])
	assert.Equal(t, true, got["is_latest"])
	assert.Equal(t, "anonymous", got["created_by"])
	assert.Equal(t, got["created_at"], got["updated_at"])
	assert.Equal(t, map[string]any{}, got["detected_labels"])
	assert.Equal(t, map[string]any{}, got["custom_labels"])
	assert.NotContains(t, got, "status_reason")
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, got["content_hash"])
	assert.Equal(t, body["content"], got["content"])

	again := b.register(body, http.StatusOK)
	assert.Equal(t, got, again, "an idempotent repeat returns the stored version unchanged")

	changed := workflow("oom-recovery", "1.0.0", map[string]any{"title": "Something else"})
	r := b.do(http.MethodPost, "/api/v1/workflows", changed)
	require.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	assert.Equal(t, "https://kubernaut.ai/problems/conflict", r.json(t)["type"])
	assert.Contains(t, r.json(t)["detail"], "bump the version")

	changedContent := workflow("oom-recovery", "1.0.0", map[string]any{"content": "other: yaml\n"})
	require.Equal(t, http.StatusConflict, b.do(http.MethodPost, "/api/v1/workflows", changedContent).status)

	assert.Equal(t, []string{"datastorage.workflow.created"}, b.chainEvents("workflow/oom-recovery"),
		"one event for the registration; none for the repeat or the conflicts")
	b.requireChainValid("workflow/oom-recovery")

	var row struct {
		cat, action, outcome, actor, resType, resID string
		data                                        map[string]any
	}
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT event_category, event_action, event_outcome,
		coalesce(actor_id, ''), coalesce(resource_type, ''), coalesce(resource_id, ''), event_data FROM audit_events WHERE correlation_id = 'workflow/oom-recovery'`).
		Scan(&row.cat, &row.action, &row.outcome, &row.actor, &row.resType, &row.resID, &row.data))
	assert.Equal(t, "workflow", row.cat)
	assert.Equal(t, "created", row.action)
	assert.Equal(t, "success", row.outcome)
	assert.Equal(t, "anonymous", row.actor)
	assert.Equal(t, "Workflow", row.resType)
	assert.Equal(t, wantID.String(), row.resID)
	assert.Equal(t, map[string]any{"event_type": "datastorage.workflow.created", "workflow_id": wantID.String(),
		"workflow_name": "oom-recovery", "version": "1.0.0", "content_hash": got["content_hash"], "status": "active"}, row.data)

	r = b.do(http.MethodGet, "/api/v1/workflows/"+wantID.String(), nil)
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, got, r.json(t))
}

func TestRegisterReportsEveryFailingKeyAndWritesNothing(t *testing.T) {
	b := setup(t)
	bad := workflow("Bad_Name", "v1.0", map[string]any{
		"title":       strings.Repeat("t", 201),
		"description": map[string]any{"when_to_use": "x"},
		"action_type": "",
		"labels": map[string]any{
			"signal_type": []string{"*"}, "severity": []string{}, "component": []string{strings.Repeat("c", 64)},
			"environment": "production", "priority": []string{"*"}, "risk_tolerance": []string{"low"},
			"bogus": []string{"x"},
		},
		"detected_labels": map[string]any{"gitops_managed": "yes", "gitops_tool": "jenkins", "color": true},
		"custom_labels":   map[string]any{"Team": []string{"a"}, "tier": []string{}},
		"execution":       map[string]any{"engine": "bash", "bundle": "quay.io/kubernaut/x:v1", "service_account": "Not_Valid"},
		"parameters": []any{
			map[string]any{"name": "1abc", "type": "string"},
			map[string]any{"name": "dup", "type": "string"},
			map[string]any{"name": "dup", "type": "integer", "default": "3"},
			map[string]any{"name": "level", "type": "integer", "enum": []any{1, 2.5}},
			map[string]any{"name": "mode", "type": "text"},
			map[string]any{"name": "flag", "type": "boolean", "default": true, "enum": []any{true, false}},
		},
		"content": nil,
	})
	r := b.do(http.MethodPost, "/api/v1/workflows", bad)
	require.Equal(t, http.StatusBadRequest, r.status, "%s", r.body)
	fe := r.fields(t)
	for _, key := range []string{
		"workflow_name", "version", "title", "description.what", "action_type",
		"labels.signal_type", "labels.severity", "labels.component", "labels.environment", "labels.business_category", "labels.bogus",
		"detected_labels.gitops_managed", "detected_labels.gitops_tool", "detected_labels.color",
		"custom_labels.Team", "custom_labels.tier",
		"execution.engine", "execution.bundle", "execution.service_account",
		"parameters[0].name", "parameters[2].name", "parameters[2].default", "parameters[3].enum", "parameters[4].type",
		"content",
	} {
		assert.Contains(t, fe, key)
	}
	assert.NotContains(t, fe, "parameters[5].default", "a boolean default of a boolean parameter is fine")
	assert.NotContains(t, fe, "labels.priority")
	assert.Equal(t, 0, b.total(), "a refused registration writes no event")
	var n int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM workflow_versions").Scan(&n))
	assert.Zero(t, n)
}

func TestRegisterSingleRules(t *testing.T) {
	b := setup(t)
	labels := func(k string, v any) map[string]any {
		l := workflow("x", "1.0.0", nil)["labels"].(map[string]any)
		l[k] = v
		return map[string]any{"labels": l}
	}
	for _, c := range []struct {
		name, version string
		over          map[string]any
		field         string
	}{
		{"leading-v", "v1.0.0", nil, "version"},
		{"two-parts", "1.0", nil, "version"},
		{"build-metadata", "1.0.0+build.1", nil, "version"},
		{"leading-zero", "01.0.0", nil, "version"},
		{"empty-prerelease", "1.0.0-", nil, "version"},
		{"leading-zero-prerelease", "1.0.0-01", nil, "version"},
		{"-bad-name", "1.0.0", nil, "workflow_name"},
		{strings.Repeat("a", 64), "1.0.0", nil, "workflow_name"},
		{"tag-only", "1.0.0", map[string]any{"execution": map[string]any{"engine": "job", "bundle": "quay.io/x/y:latest"}}, "execution.bundle"},
		{"short-digest", "1.0.0", map[string]any{"execution": map[string]any{"engine": "job", "bundle": "quay.io/x/y@sha256:abc"}}, "execution.bundle"},
		{"too-many-values", "1.0.0", labels("severity", strings.Split(strings.Repeat("a,", 21)[:41], ",")), "labels.severity"},
		{"wildcard-signal", "1.0.0", labels("signal_type", []string{"OOMKilled", "*"}), "labels.signal_type"},
		{"no-what", "1.0.0", map[string]any{"description": map[string]any{"what": ""}}, "description.what"},
		{"long-when", "1.0.0", map[string]any{"description": map[string]any{"what": "x", "preconditions": strings.Repeat("p", 4001)}}, "description.preconditions"},
		{"big-content", "1.0.0", map[string]any{"content": strings.Repeat("x", 256<<10+1)}, "content"},
		{"param-number-default", "1.0.0", map[string]any{"parameters": []any{map[string]any{"name": "n", "type": "number", "default": "1"}}}, "parameters[0].default"},
		{"param-int-default", "1.0.0", map[string]any{"parameters": []any{map[string]any{"name": "n", "type": "integer", "default": 1.5}}}, "parameters[0].default"},
		{"mesh", "1.0.0", map[string]any{"detected_labels": map[string]any{"service_mesh": "consul"}}, "detected_labels.service_mesh"},
		{"custom-key", "1.0.0", map[string]any{"custom_labels": map[string]any{"-team": []string{"a"}}}, "custom_labels.-team"},
	} {
		t.Run(c.name+"@"+c.version, func(t *testing.T) {
			r := b.do(http.MethodPost, "/api/v1/workflows", workflow(c.name, c.version, c.over))
			require.Equal(t, http.StatusBadRequest, r.status, "%s", r.body)
			assert.Contains(t, r.fields(t), c.field)
			if c.field != "workflow_name" {
				assert.Len(t, r.fields(t), 1, "only the broken key is named: %v", r.fields(t))
			}
		})
	}
	r := b.do(http.MethodPost, "/api/v1/workflows", "[1,2]")
	require.Equal(t, http.StatusBadRequest, r.status)
	assert.Contains(t, r.fields(t), "body")

	// Wildcards, the tool wildcard, custom labels and every parameter type are fine.
	ok := workflow("fine", "1.0.0-rc.1", map[string]any{
		"detected_labels": map[string]any{"gitops_tool": "*", "stateful": false},
		"custom_labels":   map[string]any{"team": []string{"payments"}, "kubernaut.ai/tier": []string{"*"}},
		"parameters": []any{
			map[string]any{"name": "s", "type": "string", "enum": []any{"a", "b"}, "default": "a"},
			map[string]any{"name": "i", "type": "integer", "default": 3},
			map[string]any{"name": "n", "type": "number", "default": 3},
			map[string]any{"name": "b", "type": "boolean", "default": false},
		},
	})
	b.register(ok, http.StatusCreated)
}

func TestGetWorkflowNotFoundAndSearchIsPostOnly(t *testing.T) {
	b := setup(t)
	for _, id := range []string{uuid.NewString(), "not-a-uuid", "by-name", "discoveries"} {
		r := b.do(http.MethodGet, "/api/v1/workflows/"+id, nil)
		assert.Equal(t, http.StatusNotFound, r.status, id)
	}
	r := b.do(http.MethodGet, "/api/v1/workflows/search", nil)
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	assert.Equal(t, "POST", r.header.Get("Allow"))
	assert.Equal(t, "https://kubernaut.ai/problems/method-not-allowed", r.json(t)["type"])
	r = b.do(http.MethodGet, "/api/v1/workflows/by-name/nothing/versions", nil)
	assert.Equal(t, http.StatusNotFound, r.status)
	r = b.do(http.MethodPatch, "/api/v1/workflows/"+uuid.NewString(), map[string]any{"status": "disabled", "reason": "x"})
	assert.Equal(t, http.StatusNotFound, r.status)
	r = b.do(http.MethodPatch, "/api/v1/workflows/nope", map[string]any{"status": "disabled", "reason": "x"})
	assert.Equal(t, http.StatusNotFound, r.status)
}

func id(w map[string]any) string { return w["workflow_id"].(string) }

func TestStatusMachine(t *testing.T) {
	b := setup(t)
	v1 := b.register(workflow("lifecycle", "1.0.0", nil), http.StatusCreated)
	v2 := b.register(workflow("lifecycle", "1.1.0", nil), http.StatusCreated)
	patch := func(w map[string]any, body any) response {
		return b.do(http.MethodPatch, "/api/v1/workflows/"+id(w), body)
	}
	latest := func() []string {
		r := b.do(http.MethodGet, "/api/v1/workflows?workflow_name=lifecycle&latest=true", nil)
		require.Equal(t, http.StatusOK, r.status)
		var out []string
		for _, w := range r.json(t)["workflows"].([]any) {
			out = append(out, w.(map[string]any)["version"].(string))
		}
		return out
	}
	assert.Equal(t, []string{"1.1.0"}, latest())

	// Invalid bodies name the key; nothing changes.
	for body, field := range map[string]string{
		`{"status":"gone","reason":"x"}`:                 "status",
		`{"status":"disabled"}`:                          "reason",
		`{"status":"disabled","reason":""}`:              "reason",
		`{"status":"disabled","reason":"x","title":"t"}`: "title",
	} {
		r := patch(v2, body)
		require.Equal(t, http.StatusBadRequest, r.status, body)
		assert.Contains(t, r.fields(t), field, body)
	}
	r := patch(v2, map[string]any{"status": "disabled", "reason": strings.Repeat("r", 501)})
	assert.Equal(t, http.StatusBadRequest, r.status)

	r = patch(v2, map[string]any{"status": "active", "reason": "already"})
	require.Equal(t, http.StatusConflict, r.status)
	assert.Equal(t, "https://kubernaut.ai/problems/invalid-transition", r.json(t)["type"])
	assert.Equal(t, "Invalid Status Transition", r.json(t)["title"])

	// Disabling the latest moves latest to the next active version, at once.
	r = patch(v2, map[string]any{"status": "disabled", "reason": "broke staging"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	got := r.json(t)
	assert.Equal(t, "disabled", got["status"])
	assert.Equal(t, "broke staging", got["status_reason"])
	assert.Equal(t, false, got["is_latest"])
	assert.NotEqual(t, got["created_at"], got["updated_at"])
	assert.NotEmpty(t, got["content"])
	assert.Equal(t, []string{"1.0.0"}, latest())

	for _, step := range []struct {
		w      map[string]any
		to     string
		status int
	}{
		{v2, "deprecated", http.StatusOK}, {v2, "active", http.StatusOK}, {v1, "deprecated", http.StatusOK},
		{v1, "archived", http.StatusOK}, {v1, "active", http.StatusConflict}, {v1, "disabled", http.StatusConflict},
		{v1, "archived", http.StatusConflict}, {v2, "archived", http.StatusOK},
	} {
		r := patch(step.w, map[string]any{"status": step.to, "reason": "step"})
		require.Equal(t, step.status, r.status, "%s → %s: %s", step.w["version"], step.to, r.body)
	}
	assert.Empty(t, latest(), "no latest version once none is active")

	events := b.chainEvents("workflow/lifecycle")
	assert.Equal(t, 2, strings.Count(strings.Join(events, ","), "created"))
	assert.Equal(t, 6, strings.Count(strings.Join(events, ","), "updated"), "one event per committed change, none for refusals")
	b.requireChainValid("workflow/lifecycle")

	var data map[string]any
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT event_data FROM audit_events
		WHERE correlation_id = 'workflow/lifecycle' AND chain_seq = 3`).Scan(&data))
	assert.Equal(t, map[string]any{"event_type": "datastorage.workflow.updated", "workflow_id": id(v2), "workflow_name": "lifecycle",
		"version": "1.1.0", "content_hash": v2["content_hash"], "status": "disabled", "from_status": "active",
		"to_status": "disabled", "reason": "broke staging"}, data)
}

func TestVersionsAreOrderedBySemverPrecedence(t *testing.T) {
	b := setup(t)
	// Registered out of order; SemVer 2.0.0 §11 precedence, highest first.
	want := []string{"2.0.0-rc.1", "2.0.0-beta.11", "2.0.0-beta.2", "2.0.0-beta", "2.0.0-alpha.beta",
		"2.0.0-alpha.1", "2.0.0-alpha", "1.10.0", "1.9.0", "1.0.0"}
	for _, v := range []string{"1.9.0", "2.0.0-alpha.1", "1.10.0", "2.0.0-beta.11", "1.0.0", "2.0.0-rc.1",
		"2.0.0-alpha", "2.0.0-beta.2", "2.0.0-alpha.beta", "2.0.0-beta"} {
		b.register(workflow("semver", v, nil), http.StatusCreated)
	}
	r := b.do(http.MethodGet, "/api/v1/workflows/by-name/semver/versions", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var got []string
	var latest []string
	for _, w := range r.json(t)["versions"].([]any) {
		m := w.(map[string]any)
		got = append(got, m["version"].(string))
		assert.NotContains(t, m, "content")
		if m["is_latest"] == true {
			latest = append(latest, m["version"].(string))
		}
	}
	assert.Equal(t, want, got)
	assert.Equal(t, []string{"1.10.0"}, latest, "a stable version is latest before any pre-release")

	// Paging through the list with a small limit gives the same order.
	var paged []string
	path := "/api/v1/workflows?limit=3"
	for {
		r := b.do(http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		page := r.json(t)
		for _, w := range page["workflows"].([]any) {
			paged = append(paged, w.(map[string]any)["version"].(string))
		}
		p := page["pagination"].(map[string]any)
		if p["has_more"] != true {
			break
		}
		path = "/api/v1/workflows?limit=3&cursor=" + p["next_cursor"].(string)
	}
	assert.Equal(t, want, paged)
}

func TestListFiltersAndOrder(t *testing.T) {
	b := setup(t)
	b.register(workflow("b-restart", "1.0.0", map[string]any{"action_type": "RestartPod"}), http.StatusCreated)
	b.register(workflow("a-memory", "1.0.0", nil), http.StatusCreated)
	w := b.register(workflow("a-memory", "2.0.0", nil), http.StatusCreated)
	crash := workflow("c-crash", "1.0.0", nil)
	crash["labels"].(map[string]any)["signal_type"] = []string{"CrashLoopBackOff"}
	b.register(crash, http.StatusCreated)
	r := b.do(http.MethodPatch, "/api/v1/workflows/"+id(w), map[string]any{"status": "deprecated", "reason": "old"})
	require.Equal(t, http.StatusOK, r.status)

	list := func(q string) []string {
		r := b.do(http.MethodGet, "/api/v1/workflows"+q, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var out []string
		for _, w := range r.json(t)["workflows"].([]any) {
			m := w.(map[string]any)
			out = append(out, m["workflow_name"].(string)+"@"+m["version"].(string))
		}
		return out
	}
	assert.Equal(t, []string{"a-memory@2.0.0", "a-memory@1.0.0", "b-restart@1.0.0", "c-crash@1.0.0"}, list(""))
	assert.Equal(t, []string{"a-memory@2.0.0"}, list("?status=deprecated"))
	assert.Equal(t, []string{"b-restart@1.0.0"}, list("?action_type=RestartPod"))
	assert.Equal(t, []string{"c-crash@1.0.0"}, list("?signal_type=crashloopbackoff"))
	assert.Equal(t, []string{"a-memory@1.0.0", "b-restart@1.0.0", "c-crash@1.0.0"}, list("?latest=true"))
	assert.Equal(t, []string{"a-memory@2.0.0", "a-memory@1.0.0"}, list("?workflow_name=a-memory"))
	for q, field := range map[string]string{"?limit=0": "limit", "?limit=1001": "limit", "?status=x": "status",
		"?latest=yes": "latest", "?cursor=zz": "cursor"} {
		r := b.do(http.MethodGet, "/api/v1/workflows"+q, nil)
		require.Equal(t, http.StatusBadRequest, r.status, q)
		assert.Contains(t, r.fields(t), field, q)
	}
}

func TestCatalogEventsShareTheChainWithOrdinaryWrites(t *testing.T) {
	b := setup(t)
	const corr = "workflow/shared-chain"
	done := make(chan error, 1)
	go func() {
		for i := range 40 {
			r := b.do(http.MethodPost, "/api/v1/audit/events", event(map[string]any{
				"correlation_id": corr, "event_category": "workflow", "event_type": "workflow.note",
				"event_data": map[string]any{"i": i}}))
			if r.status != http.StatusCreated {
				done <- fmt.Errorf("ordinary write %d: %d %s", i, r.status, r.body)
				return
			}
		}
		done <- nil
	}()
	for i := range 20 {
		b.register(workflow("shared-chain", fmt.Sprintf("1.%d.0", i), nil), http.StatusCreated)
	}
	require.NoError(t, <-done)
	events := b.chainEvents(corr)
	assert.Len(t, events, 60)
	b.requireChainValid(corr)
	var gaps int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM (
		SELECT chain_seq - lag(chain_seq) OVER (ORDER BY chain_seq) AS d FROM audit_events WHERE correlation_id = $1) x WHERE d <> 1`, corr).Scan(&gaps))
	assert.Zero(t, gaps)
}
