package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
)

// The tests in this file check the catalog calls' encoding and decoding
// against canned answers; catalog_live_test.go runs them against the server.

// sampleSpec is a valid create request.
func sampleSpec(name, version string) client.WorkflowSpec {
	return client.WorkflowSpec{
		WorkflowName: name,
		Version:      version,
		Title:        "Restart the pod",
		Description:  client.WorkflowDescription{What: "Deletes the pod so that its controller recreates it."},
		ActionType:   "RestartPod",
		Labels: client.WorkflowLabels{
			SignalType: []string{"CrashLoopBackOff"}, Severity: []string{"*"}, Component: []string{"pod"},
			Environment: []string{"*"}, Priority: []string{"*"}, RiskTolerance: []string{"low", "medium"},
			BusinessCategory: []string{"*"},
		},
		Execution: client.WorkflowExecution{Engine: "tekton",
			Bundle: "quay.io/kubernaut/restart-pod@sha256:" + fmt.Sprintf("%064x", 1)},
		Content: "apiVersion: tekton.dev/v1\nkind: Pipeline\n",
	}
}

// workflowJSON is a stored version as the server answers it.
// Lists and search results leave content out (summary true).
func workflowJSON(id uuid.UUID, name, version, status string, summary ...bool) string {
	content := `"content":"kind: Pipeline\n",`
	if len(summary) > 0 && summary[0] {
		content = ""
	}
	return fmt.Sprintf(`{"workflow_id":%q,"workflow_name":%q,"version":%q,"title":"Restart the pod",
	 "description":{"what":"Deletes the pod."},"action_type":"RestartPod",
	 "labels":{"signal_type":["CrashLoopBackOff"],"severity":["*"],"component":["pod"],"environment":["*"],
	           "priority":["*"],"risk_tolerance":["low"],"business_category":["*"]},
	 "detected_labels":{"gitops_managed":false,"gitops_tool":"argocd"},"custom_labels":{"team":["sre"]},
	 "execution":{"engine":"tekton","bundle":"quay.io/k/r@sha256:%064x"},
	 "parameters":[{"name":"GRACE","type":"integer","required":false,"default":30}],
	 %s"content_hash":"sha256:%064x","status":%q,"is_latest":true,
	 "created_at":"2026-12-06T10:00:00.000000Z","updated_at":"2026-12-06T10:00:00.000000Z","created_by":"ci","updated_by":"ci"}`,
		id, name, version, 2, content, 3, status)
}

// plainClient is a client whose exchanges are checked against
// api/openapi.yaml, the canned answers included.
func plainClient(t *testing.T, url string) *client.Client {
	t.Helper()
	c, _ := newSpecClient(t, url)
	return c
}

func TestWorkflowIDIsTheContractsUUIDv5(t *testing.T) {
	t.Parallel()
	// uuid5(NAMESPACE_URL, "kubernaut.ai/workflows/restart-pod/1.0.0"), computed by Python's uuid module.
	assert.Equal(t, "f5374dcb-1943-5c7a-b8f2-bf2cff5ddba0", client.WorkflowID("restart-pod", "1.0.0").String())
	assert.NotEqual(t, client.WorkflowID("restart-pod", "1.0.0"), client.WorkflowID("restart-pod", "1.0.1"))
}

func TestRegisterWorkflowEncodesTheCreateKeysAndReadsTheOutcome(t *testing.T) {
	t.Parallel()
	id := client.WorkflowID("restart-pod", "1.0.0")
	status := http.StatusCreated
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch status {
		case http.StatusConflict:
			writeProblem(w, 409, `{"type":"https://kubernaut.ai/problems/conflict","title":"Resource Conflict","status":409,
				"detail":"restart-pod 1.0.0 exists with different content; bump the version"}`)
		case http.StatusBadRequest:
			writeProblem(w, 400, `{"type":"https://kubernaut.ai/problems/validation-error","title":"Validation Error","status":400,
				"field_errors":{"execution.bundle":"must be pinned by digest","parameters[2].default":"must be an integer"}}`)
		default:
			writeJSON(w, status, workflowJSON(id, "restart-pod", "1.0.0", "active"))
		}
	})
	c := plainClient(t, f.URL)
	ctx := context.Background()
	spec := sampleSpec("restart-pod", "1.0.0")

	res, err := c.RegisterWorkflow(ctx, spec)
	require.NoError(t, err)
	assert.True(t, res.Created)
	assert.Equal(t, id, res.Workflow.WorkflowID)
	assert.Equal(t, client.WorkflowActive, res.Workflow.Status)
	assert.Equal(t, client.Bool(false), res.Workflow.DetectedLabels.GitOpsManaged, "a false detected label is kept, not dropped")
	assert.Equal(t, "argocd", res.Workflow.DetectedLabels.GitOpsTool)
	assert.Equal(t, map[string][]string{"team": {"sre"}}, res.Workflow.CustomLabels)
	require.Len(t, res.Workflow.Parameters, 1)
	assert.EqualValues(t, 30, res.Workflow.Parameters[0].Default)

	req := f.last()
	assert.Equal(t, http.MethodPost, req.method)
	assert.Equal(t, "/api/v1/workflows", req.path)
	var sent map[string]any
	require.NoError(t, json.Unmarshal(req.body, &sent))
	assert.ElementsMatch(t, []string{"workflow_name", "version", "title", "description", "action_type", "labels", "execution", "content"},
		keysOf(sent), "optional keys left zero are not sent")
	assert.Equal(t, map[string]any{"what": "Deletes the pod so that its controller recreates it."}, sent["description"])

	status = http.StatusOK
	res, err = c.RegisterWorkflow(ctx, spec)
	require.NoError(t, err)
	assert.False(t, res.Created, "200 is the idempotent re-registration")

	status = http.StatusConflict
	_, err = c.RegisterWorkflow(ctx, spec)
	assert.ErrorIs(t, err, client.ErrConflict)
	assert.NotErrorIs(t, err, client.ErrInvalidTransition)
	assert.ErrorContains(t, err, "bump the version")

	status = http.StatusBadRequest
	_, err = c.RegisterWorkflow(ctx, spec)
	require.ErrorIs(t, err, client.ErrValidation)
	var p *client.Problem
	require.True(t, errors.As(err, &p))
	assert.Equal(t, []string{"execution.bundle", "parameters[2].default"}, sortedKeys(p.FieldErrors))

	_, err = c.RegisterWorkflowJSON(ctx, json.RawMessage(`{"workflow_name":`))
	assert.ErrorContains(t, err, "not valid JSON")
	status = http.StatusCreated
	raw := json.RawMessage(`{"workflow_name":"restart-pod","surprise":1}`)
	_, err = c.RegisterWorkflowJSON(badRequest(ctx), raw)
	require.NoError(t, err)
	assert.JSONEq(t, string(raw), string(f.last().body), "the raw spec is sent as is")
}

func TestRegisterWorkflowSendsDetectedAndCustomLabelsAndParameters(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		writeJSON(w, 201, workflowJSON(uuid.New(), "x", "1.0.0", "active"))
	})
	c := plainClient(t, f.URL)
	spec := sampleSpec("restart-pod", "1.0.0")
	spec.DetectedLabels = client.DetectedLabels{Stateful: client.Bool(false), ServiceMesh: "*"}
	spec.CustomLabels = map[string][]string{"team": {"payments"}}
	spec.Parameters = []client.WorkflowParameter{
		{Name: "GRACE", Type: "integer", Default: 0},
		{Name: "DRY_RUN", Type: "boolean", Required: true, Default: false},
		{Name: "MODE", Type: "string", Enum: []any{"soft", "hard"}},
	}
	_, err := c.RegisterWorkflow(context.Background(), spec)
	require.NoError(t, err)
	var sent struct {
		DetectedLabels map[string]any   `json:"detected_labels"`
		CustomLabels   map[string]any   `json:"custom_labels"`
		Parameters     []map[string]any `json:"parameters"`
	}
	require.NoError(t, json.Unmarshal(f.last().body, &sent))
	assert.Equal(t, map[string]any{"stateful": false, "service_mesh": "*"}, sent.DetectedLabels)
	assert.Equal(t, map[string]any{"team": []any{"payments"}}, sent.CustomLabels)
	require.Len(t, sent.Parameters, 3)
	assert.Equal(t, map[string]any{"name": "GRACE", "type": "integer", "default": 0.0}, sent.Parameters[0], "a zero default is sent")
	assert.Equal(t, map[string]any{"name": "DRY_RUN", "type": "boolean", "required": true, "default": false}, sent.Parameters[1])
	assert.Equal(t, []any{"soft", "hard"}, sent.Parameters[2]["enum"])
}

func TestWorkflowsIteratorFollowsTheCursor(t *testing.T) {
	t.Parallel()
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch r.URL.Query().Get("cursor") {
		case "":
			writeJSON(w, 200, `{"workflows":[`+workflowJSON(client.WorkflowID("a", "2.0.0"), "a", "2.0.0", "active", true)+`,`+
				workflowJSON(client.WorkflowID("a", "1.0.0"), "a", "1.0.0", "disabled", true)+`],
				"pagination":{"limit":2,"has_more":true,"next_cursor":"c/1+"}}`)
		case "c/1+":
			writeJSON(w, 200, `{"workflows":[`+workflowJSON(client.WorkflowID("b", "1.0.0"), "b", "1.0.0", "active", true)+`],
				"pagination":{"limit":2,"has_more":false}}`)
		default:
			writeProblem(w, 400, `{"type":"https://kubernaut.ai/problems/validation-error","title":"Validation Error","status":400,"field_errors":{"cursor":"malformed"}}`)
		}
	})
	c := plainClient(t, f.URL)
	q := client.WorkflowQuery{Status: client.WorkflowActive, SignalType: "OOMKilled", ActionType: "RestartPod", Limit: 2}
	var got []string
	for w, err := range c.Workflows(context.Background(), q) {
		require.NoError(t, err)
		got = append(got, w.WorkflowName+"@"+w.Version+":"+string(w.Status))
	}
	assert.Equal(t, []string{"a@2.0.0:active", "a@1.0.0:disabled", "b@1.0.0:active"}, got)
	reqs := f.all()
	require.Len(t, reqs, 2)
	first, _ := url.ParseQuery(reqs[0].rawQuery)
	assert.Equal(t, url.Values{"status": {"active"}, "signal_type": {"OOMKilled"}, "action_type": {"RestartPod"}, "limit": {"2"}}, first)
	second, _ := url.ParseQuery(reqs[1].rawQuery)
	assert.Equal(t, "c/1+", second.Get("cursor"), "the cursor travels escaped and comes back intact")

	// An error stops the iteration after yielding it once.
	var errs int
	for _, err := range c.Workflows(context.Background(), client.WorkflowQuery{Cursor: "bad", Latest: true}) {
		require.ErrorIs(t, err, client.ErrValidation)
		errs++
	}
	assert.Equal(t, 1, errs)
	last, _ := url.ParseQuery(f.last().rawQuery)
	assert.Equal(t, "true", last.Get("latest"))
}

func TestWorkflowVersionsAndGetAndStatus(t *testing.T) {
	t.Parallel()
	id := client.WorkflowID("restart-pod", "1.0.0")
	f := newFakeServer(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/workflows/by-name/restart-pod/versions":
			writeJSON(w, 200, `{"workflow_name":"restart-pod","versions":[`+workflowJSON(id, "restart-pod", "1.0.0", "active", true)+`]}`)
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/workflows/"+id.String():
			writeJSON(w, 200, workflowJSON(id, "restart-pod", "1.0.0", "active"))
		case r.Method == http.MethodPatch && string(body) == `{"reason":"broken on 1.31","status":"disabled"}`:
			writeJSON(w, 200, workflowJSON(id, "restart-pod", "1.0.0", "disabled"))
		case r.Method == http.MethodPatch:
			writeProblem(w, 409, `{"type":"https://kubernaut.ai/problems/invalid-transition","title":"Invalid Status Transition","status":409,
				"detail":"archived is final"}`)
		default:
			writeProblem(w, 404, `{"type":"https://kubernaut.ai/problems/not-found","title":"Not Found","status":404}`)
		}
	})
	c := plainClient(t, f.URL)
	ctx := context.Background()

	vs, err := c.WorkflowVersions(ctx, "restart-pod")
	require.NoError(t, err)
	assert.Equal(t, "restart-pod", vs.WorkflowName)
	require.Len(t, vs.Versions, 1)
	_, err = c.WorkflowVersions(ctx, "no/such")
	assert.ErrorIs(t, err, client.ErrNotFound)
	assert.Equal(t, "/api/v1/workflows/by-name/no%2Fsuch/versions", f.last().path, "a name is one path segment")

	w, err := c.GetWorkflow(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, "kind: Pipeline\n", w.Content)
	assert.Equal(t, "sha256:"+fmt.Sprintf("%064x", 3), w.ContentHash)

	w, err = c.SetWorkflowStatus(ctx, id, client.WorkflowDisabled, "broken on 1.31")
	require.NoError(t, err)
	assert.Equal(t, client.WorkflowDisabled, w.Status)

	_, err = c.SetWorkflowStatus(ctx, id, client.WorkflowActive, "again")
	assert.ErrorIs(t, err, client.ErrInvalidTransition)
	assert.ErrorIs(t, err, client.ErrConflict)
}

// searchFake answers a search offering a and b, and validates against them;
// disabled lists the ids the fake reports as disabled since.
type searchFake struct {
	offered  []uuid.UUID
	disabled map[uuid.UUID]bool
	// disabledOnGet makes GET report a version disabled although validate
	// said it was active (the race between the two calls).
	disabledOnGet bool
}

func (s *searchFake) handle(w http.ResponseWriter, r *http.Request, body []byte) {
	const disc = "0193a000-0000-7000-8000-000000000001"
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/workflows/search":
		hits := ""
		for i, id := range s.offered {
			if i > 0 {
				hits += ","
			}
			hits += fmt.Sprintf(`{"rank":%d,"score":%g,"workflow":%s,"terms":[{"term":"context.severity","requested":"critical","offered":["*"],"match":0.5,"weight":1,"contribution":0.25}]}`,
				i+1, 1-float64(i)/4, workflowJSON(id, fmt.Sprintf("w%d", i), "1.0.0", "active", true))
		}
		writeJSON(w, 200, `{"discovery_id":"`+disc+`","total_candidates":7,"results":[`+hits+`]}`)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/workflows/discoveries/"+disc+"/validate":
		var in struct {
			WorkflowID uuid.UUID `json:"workflow_id"`
		}
		_ = json.Unmarshal(body, &in)
		reason := "not_offered"
		for _, id := range s.offered {
			if id == in.WorkflowID {
				reason = "ok"
				if s.disabled[id] {
					reason = "no_longer_active"
				}
			}
		}
		writeJSON(w, 200, fmt.Sprintf(`{"valid":%t,"reason":%q}`, reason == "ok", reason))
	case r.Method == http.MethodGet:
		id, _ := uuid.Parse(r.URL.Path[len("/api/v1/workflows/"):])
		st := "active"
		if s.disabledOnGet {
			st = "disabled"
		}
		writeJSON(w, 200, workflowJSON(id, "w", "1.0.0", st))
	default:
		writeProblem(w, 404, `{"type":"https://kubernaut.ai/problems/not-found","title":"Not Found","status":404}`)
	}
}

func TestSearchEncodesTheRequestAndDecodesTheTerms(t *testing.T) {
	t.Parallel()
	a := uuid.New()
	s := &searchFake{offered: []uuid.UUID{a}}
	f := newFakeServer(t, s.handle)
	c := plainClient(t, f.URL)
	res, err := c.SearchWorkflows(context.Background(), client.SearchRequest{
		Context:        client.SearchContext{SignalType: "OOMKilled", Severity: "critical"},
		DetectedLabels: client.DetectedLabels{GitOpsManaged: client.Bool(false)},
		CustomLabels:   map[string][]string{"team": {"payments"}},
		Text:           "raise the memory limit", TopK: 5, MinScore: 0.25, Explain: true, RemediationID: "rr-1",
	})
	require.NoError(t, err)
	assert.JSONEq(t, `{"context":{"signal_type":"OOMKilled","severity":"critical"},"detected_labels":{"gitops_managed":false},
		"custom_labels":{"team":["payments"]},"text":"raise the memory limit","top_k":5,"min_score":0.25,"explain":true,
		"remediation_id":"rr-1"}`, string(f.last().body))
	assert.Equal(t, 7, res.TotalCandidates)
	require.Len(t, res.Results, 1)
	assert.Equal(t, a, res.Results[0].Workflow.WorkflowID)
	require.Len(t, res.Results[0].Terms, 1)
	term := res.Results[0].Terms[0]
	assert.Equal(t, "context.severity", term.Term)
	assert.JSONEq(t, `"critical"`, string(term.Requested))
	assert.JSONEq(t, `["*"]`, string(term.Offered))
	assert.Equal(t, 0.25, term.Contribution)

	_, err = c.SearchWorkflows(context.Background(), client.SearchRequest{Context: client.SearchContext{SignalType: "X"}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"context":{"signal_type":"X"}}`, string(f.last().body), "zero options are left to the server's defaults")
}

func TestDiscoverSelectOnlyReturnsAValidatedChoice(t *testing.T) {
	t.Parallel()
	a, b, stranger := uuid.New(), uuid.New(), uuid.New()
	s := &searchFake{offered: []uuid.UUID{a, b}, disabled: map[uuid.UUID]bool{b: true}}
	f := newFakeServer(t, s.handle)
	c := plainClient(t, f.URL)
	ctx := context.Background()

	d, err := c.Discover(ctx, client.SearchRequest{Context: client.SearchContext{SignalType: "OOMKilled"}})
	require.NoError(t, err)
	assert.Equal(t, "0193a000-0000-7000-8000-000000000001", d.ID)
	best, ok := d.Best()
	require.True(t, ok)
	assert.Equal(t, a, best.Workflow.WorkflowID)
	_, ok = d.Offered(stranger)
	assert.False(t, ok)

	w, err := d.Select(ctx, a)
	require.NoError(t, err)
	assert.Equal(t, a, w.WorkflowID)
	assert.NotEmpty(t, w.Content, "Select fetches the chosen version with its content")
	assert.Equal(t, http.MethodGet, f.last().method)

	for id, reason := range map[uuid.UUID]string{b: client.SelectionNoLongerActive, stranger: client.SelectionNotOffered} {
		before := len(f.all())
		w, err = d.Select(ctx, id)
		assert.Nil(t, w)
		require.ErrorIs(t, err, client.ErrSelectionRejected)
		var se *client.SelectionError
		require.True(t, errors.As(err, &se))
		assert.Equal(t, reason, se.Reason)
		assert.Equal(t, id, se.WorkflowID)
		reqs := f.all()[before:]
		require.Len(t, reqs, 1, "a rejected choice is asked about (for the audit trail) and never fetched")
		assert.Equal(t, "/api/v1/workflows/discoveries/"+d.ID+"/validate", reqs[0].path)
		assert.JSONEq(t, `{"workflow_id":"`+id.String()+`"}`, string(reqs[0].body))
	}

	v, err := d.Validate(ctx, stranger)
	require.NoError(t, err)
	assert.Equal(t, client.SelectionValidation{Valid: false, Reason: "not_offered"}, *v)

	s.disabledOnGet = true
	_, err = d.Select(ctx, a)
	var se *client.SelectionError
	require.ErrorAs(t, err, &se, "a version disabled between the check and the fetch is refused")
	assert.Equal(t, client.SelectionNoLongerActive, se.Reason)

	_, err = c.ValidateSelection(ctx, "0193a000-0000-7000-8000-0000000000ff", a)
	assert.ErrorIs(t, err, client.ErrNotFound)
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
