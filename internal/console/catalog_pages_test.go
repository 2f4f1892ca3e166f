package console_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// register sends every workflow of config/workflows to the API, as
// `datastorage workflows apply` would.
func (b *bundle) register() map[string]string {
	b.t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "workflows", "*"))
	require.NoError(b.t, err)
	ids := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(b.t, err)
		var doc map[string]any
		require.NoError(b.t, yaml.Unmarshal(raw, &doc), f) // JSON is YAML too
		body, err := json.Marshal(doc)
		require.NoError(b.t, err)
		resp, err := http.Post(b.srv.URL+"/api/v1/workflows", "application/json", bytes.NewReader(body))
		require.NoError(b.t, err)
		var w struct {
			ID      string `json:"workflow_id"`
			Name    string `json:"workflow_name"`
			Version string `json:"version"`
		}
		require.NoError(b.t, json.NewDecoder(resp.Body).Decode(&w))
		resp.Body.Close()
		require.Equal(b.t, http.StatusCreated, resp.StatusCode, f)
		ids[w.Name+"@"+w.Version] = w.ID
	}
	return ids
}

func TestWorkflowPagesListShowChangeStatusAndSearch(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ids := b.register()
	br := b.browser()

	p := br.get("/console/workflows")
	require.Equal(t, 200, p.status, p.body)
	for key, id := range ids {
		assert.Contains(t, p.body, `href="/console/workflows/`+id+`"`, key)
	}
	p = br.get("/console/workflows?latest=true&workflow_name=increase-memory")
	require.Equal(t, 200, p.status)
	assert.Len(t, regexp.MustCompile(`href="/console/workflows/[0-9a-f-]{36}"`).FindAllString(p.body, -1), 1, "one latest version of a name")

	id := ids["increase-memory@1.2.0"]
	p = br.get("/console/workflows/" + id)
	require.Equal(t, 200, p.status, p.body)
	assert.Contains(t, p.body, "kind: Pipeline", "the content is shown")
	assert.Contains(t, p.body, `href="/console/workflows/`+ids["increase-memory@1.1.0"]+`"`, "its sibling versions")
	assert.Contains(t, p.body, `id="status-form"`)

	p = br.post("/console/workflows/"+id+"/status", url.Values{"csrf_token": {br.csrf()}, "status": {"disabled"}, "reason": {"bad rollout"}}, "self")
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	p = br.get(p.header.Get("Location"))
	assert.Contains(t, p.body, "disabled · bad rollout")
	p = br.post("/console/workflows/"+id+"/status", url.Values{"csrf_token": {br.csrf()}, "status": {"disabled"}, "reason": {"again"}}, "self")
	assert.Equal(t, http.StatusConflict, p.status, "the API's 409 for a move to the current status")
	p = br.post("/console/workflows/"+id+"/status", url.Values{"status": {"active"}, "reason": {"x"}}, "self")
	assert.Equal(t, http.StatusForbidden, p.status, "no CSRF token")

	p = br.get("/console/workflows/search?signal_type=OOMKilled&severity=critical&environment=production&explain=1")
	require.Equal(t, 200, p.status, p.body)
	assert.Contains(t, p.body, "increase-memory 1.1.0", "1.2.0 is disabled: 1.1.0 is the latest active version")
	assert.Contains(t, p.body, `<td class="mono">context.severity</td>`, "the explain terms")
	assert.Regexp(t, regexp.MustCompile(`discovery <span class="mono">[0-9a-f-]{36}</span>`), p.body)
	p = br.get("/console/workflows/search?severity=critical")
	assert.Equal(t, http.StatusBadRequest, p.status, "signal_type is required")
	assert.Contains(t, p.body, "signal_type")
}

func TestTimelineShowsEffectivenessAndLinksTheTargetsHistory(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	now := time.Now().UTC().Add(-time.Hour)
	created := event("rr-eff", now, "success", `{"target_resource":"prod/Deployment/web","pre_remediation_spec_hash":"sha-1","signal_type":"OOMKilled","action_type":"IncreaseMemory","outcome":"Success"}`)
	created.Type, created.Category = "remediation.workflow_created", "orchestration"
	health := event("rr-eff", now.Add(time.Minute), "success", `{"assessed":true,"score":0.8,"details":"pods healthy"}`)
	health.Type, health.Category = "effectiveness.health.assessed", "effectiveness"
	done := event("rr-eff", now.Add(2*time.Minute), "success", `{"reason":"Full"}`)
	done.Type, done.Category = "effectiveness.assessment.completed", "effectiveness"
	b.seed(created, health, done)
	br := b.browser()

	p := br.get("/console/timeline/rr-eff")
	require.Equal(t, 200, p.status, p.body)
	assert.Contains(t, p.body, `id="effectiveness"`)
	assert.Contains(t, p.body, "Effectiveness: 0.80")
	assert.Contains(t, p.body, "pods healthy")
	assert.Contains(t, p.body, `href="/console/integrity?correlation_id=rr-eff"`)
	assert.Contains(t, p.body, `href="/console/events?correlation_id=rr-eff"`)
	m := regexp.MustCompile(`href="(/console/history\?[^"]+)"`).FindStringSubmatch(p.body)
	require.NotNil(t, m, "a link to the target's history")
	p = br.get(strings.ReplaceAll(m[1], "&amp;", "&"))
	require.Equal(t, 200, p.status, p.body)
	assert.Contains(t, p.body, `href="/console/timeline/rr-eff"`, "the remediation is in its target's history")
	assert.Contains(t, p.body, "preRemediation")
	assert.Contains(t, p.body, "regression", "a remediation started from this very spec")

	p = br.get("/console/timeline/rr-headers-none")
	assert.Equal(t, 404, p.status)
	b.seed(event("rr-plain", now, "success", `{}`))
	p = br.get("/console/timeline/rr-plain")
	require.Equal(t, 200, p.status)
	assert.NotContains(t, p.body, `id="effectiveness"`, "no effectiveness events, no panel")
}
