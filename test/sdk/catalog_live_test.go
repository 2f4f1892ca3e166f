package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
)

// The catalog calls against the real API over a real database; every
// exchange is checked against api/openapi.yaml in both directions.

func TestCatalogCallsAgainstTheServer(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, tr := newSpecClient(t, srv.url)
	ctx := context.Background()

	spec := sampleSpec("restart-pod", "1.0.0")
	spec.DetectedLabels = client.DetectedLabels{GitOpsManaged: client.Bool(false)}
	spec.CustomLabels = map[string][]string{"team": {"sre"}}
	spec.Parameters = []client.WorkflowParameter{{Name: "GRACE", Type: "integer", Default: 30}}
	res, err := c.RegisterWorkflow(ctx, spec)
	require.NoError(t, err)
	assert.True(t, res.Created)
	w := res.Workflow
	assert.Equal(t, client.WorkflowID("restart-pod", "1.0.0"), w.WorkflowID, "the SDK derives the server's id")
	assert.Equal(t, client.WorkflowActive, w.Status)
	assert.True(t, w.IsLatest)
	assert.Equal(t, spec.Content, w.Content)
	assert.Regexp(t, "^sha256:[0-9a-f]{64}$", w.ContentHash)
	assert.Equal(t, client.Bool(false), w.DetectedLabels.GitOpsManaged)
	assert.EqualValues(t, 30, w.Parameters[0].Default)

	again, err := c.RegisterWorkflow(ctx, spec)
	require.NoError(t, err)
	assert.False(t, again.Created, "the same spec again is idempotent")
	assert.Equal(t, w.CreatedAt, again.Workflow.CreatedAt)

	changed := spec
	changed.Title = "Restart the pod, differently"
	_, err = c.RegisterWorkflow(ctx, changed)
	require.ErrorIs(t, err, client.ErrConflict)
	assert.NotErrorIs(t, err, client.ErrInvalidTransition)

	bad := sampleSpec("Restart_Pod", "v1")
	bad.Execution.Bundle = "quay.io/kubernaut/restart-pod:latest"
	_, err = c.RegisterWorkflow(badRequest(ctx), bad)
	require.ErrorIs(t, err, client.ErrValidation)
	var p *client.Problem
	require.True(t, errors.As(err, &p))
	for _, key := range []string{"workflow_name", "version", "execution.bundle"} {
		assert.Contains(t, p.FieldErrors, key, "every failing key is named at once")
	}

	// Versions 1.1.0 … 1.10.0: precedence is numeric.
	for _, v := range []string{"1.2.0", "1.10.0", "1.9.0", "2.0.0-rc.1"} {
		_, err := c.RegisterWorkflow(ctx, sampleSpec("restart-pod", v))
		require.NoError(t, err, v)
	}
	vs, err := c.WorkflowVersions(ctx, "restart-pod")
	require.NoError(t, err)
	var order []string
	latest := ""
	for _, v := range vs.Versions {
		order = append(order, v.Version)
		assert.Empty(t, v.Content, "lists omit the content")
		if v.IsLatest {
			latest = v.Version
		}
	}
	assert.Equal(t, []string{"2.0.0-rc.1", "1.10.0", "1.9.0", "1.2.0", "1.0.0"}, order)
	assert.Equal(t, "1.10.0", latest, "stable versions before pre-releases")
	_, err = c.WorkflowVersions(ctx, "no-such-workflow")
	assert.ErrorIs(t, err, client.ErrNotFound)

	// The iterator walks every page by cursor.
	for i := range 3 {
		_, err := c.RegisterWorkflow(ctx, sampleSpec(fmt.Sprintf("other-%d", i), "1.0.0"))
		require.NoError(t, err)
	}
	before := tr.count()
	var names []string
	for w, err := range c.Workflows(ctx, client.WorkflowQuery{Limit: 2}) {
		require.NoError(t, err)
		names = append(names, w.WorkflowName+"@"+w.Version)
	}
	assert.Len(t, names, 8)
	assert.Equal(t, "other-0@1.0.0", names[0], "ordered by name")
	assert.Equal(t, 4, tr.count()-before, "8 versions in pages of 2")
	page, err := c.ListWorkflows(ctx, client.WorkflowQuery{Latest: true, SignalType: "crashloopbackoff"})
	require.NoError(t, err)
	assert.Len(t, page.Workflows, 4, "one latest per name; signal_type matches case-insensitively")

	// Status: disabling the latest hands the role down.
	id := client.WorkflowID("restart-pod", "1.10.0")
	got, err := c.SetWorkflowStatus(ctx, id, client.WorkflowDisabled, "broken on 1.31")
	require.NoError(t, err)
	assert.Equal(t, client.WorkflowDisabled, got.Status)
	assert.Equal(t, "broken on 1.31", got.StatusReason)
	assert.False(t, got.IsLatest)
	nine, err := c.GetWorkflow(ctx, client.WorkflowID("restart-pod", "1.9.0"))
	require.NoError(t, err)
	assert.True(t, nine.IsLatest)
	_, err = c.SetWorkflowStatus(ctx, id, client.WorkflowDisabled, "again")
	assert.ErrorIs(t, err, client.ErrInvalidTransition)
	_, err = c.GetWorkflow(ctx, client.WorkflowID("restart-pod", "9.9.9"))
	assert.ErrorIs(t, err, client.ErrNotFound)

	// The ledger: each change is an event on workflow/<name> (its chain is
	// internal/catalog's and test/e2e's to verify).
	var kinds []string
	for ev, err := range c.Events(ctx, client.Query{CorrelationID: "workflow/restart-pod", Order: client.OrderAsc}) {
		require.NoError(t, err)
		kinds = append(kinds, ev.Type)
	}
	assert.Len(t, kinds, 6, "five registrations and one status change; the idempotent one added nothing")
	assert.Equal(t, "datastorage.workflow.updated", kinds[5])
}

func TestCatalogSearchAndDiscoveryAgainstTheServer(t *testing.T) {
	t.Parallel()
	srv := startLiveServer(t)
	c, _ := newSpecClient(t, srv.url)
	ctx := context.Background()

	exact := sampleSpec("restart-pod", "1.0.0")
	exact.Labels.Severity = []string{"critical"}
	wild := sampleSpec("restart-any", "1.0.0")
	other := sampleSpec("scale-out", "1.0.0")
	other.Labels.SignalType = []string{"CPUThrottlingHigh"}
	for _, s := range []client.WorkflowSpec{exact, wild, other} {
		_, err := c.RegisterWorkflow(ctx, s)
		require.NoError(t, err)
	}

	d, err := c.Discover(ctx, client.SearchRequest{
		Context: client.SearchContext{SignalType: "crashloopbackoff", Severity: "critical"},
		Explain: true, RemediationID: "rr-sdk-discover",
	})
	require.NoError(t, err)
	assert.Equal(t, 2, d.TotalCandidates)
	require.Len(t, d.Results, 2)
	assert.Equal(t, "restart-pod", d.Results[0].Workflow.WorkflowName, "exact beats wildcard")
	assert.InDelta(t, 1.0, d.Results[0].Score, 1e-9)
	assert.InDelta(t, 0.5, d.Results[1].Score, 1e-9)
	require.Len(t, d.Results[1].Terms, 1)
	assert.Equal(t, "context.severity", d.Results[1].Terms[0].Term)
	assert.JSONEq(t, `"critical"`, string(d.Results[1].Terms[0].Requested))
	assert.JSONEq(t, `["*"]`, string(d.Results[1].Terms[0].Offered))

	w, err := d.Select(ctx, d.Results[0].Workflow.WorkflowID)
	require.NoError(t, err)
	assert.Equal(t, exact.Content, w.Content)

	_, err = d.Select(ctx, client.WorkflowID("scale-out", "1.0.0"))
	var se *client.SelectionError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, client.SelectionNotOffered, se.Reason)

	_, err = c.SetWorkflowStatus(ctx, client.WorkflowID("restart-any", "1.0.0"), client.WorkflowDeprecated, "superseded")
	require.NoError(t, err)
	_, err = d.Select(ctx, client.WorkflowID("restart-any", "1.0.0"))
	require.ErrorAs(t, err, &se)
	assert.Equal(t, client.SelectionNoLongerActive, se.Reason)

	_, err = c.ValidateSelection(ctx, "0193a000-0000-7000-8000-0000000000ff", w.WorkflowID)
	assert.ErrorIs(t, err, client.ErrNotFound)
	_, err = c.SearchWorkflows(badRequest(ctx), client.SearchRequest{})
	assert.ErrorIs(t, err, client.ErrValidation, "signal_type is required")

	// The search and the validations are in the remediation's trail.
	page, err := c.QueryEvents(ctx, client.Query{CorrelationID: "rr-sdk-discover"})
	require.NoError(t, err)
	types := map[string]int{}
	for _, ev := range page.Data {
		types[ev.Type]++
	}
	assert.Equal(t, map[string]int{"workflow.catalog.search_completed": 1, "workflow.catalog.selection_validated": 3}, types)
}
