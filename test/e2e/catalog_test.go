package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
)

const exampleWorkflows = "../../config/workflows"

// applyLines maps each file of an apply's table output to its outcome.
func applyLines(t *testing.T, out string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if ext := filepath.Ext(line); len(f) == 3 && (ext == ".yaml" || ext == ".json") {
			got[filepath.Base(f[2])] = f[0]
		}
	}
	return got
}

// TestApplyTheExampleCatalogTwiceAndAConflict is the GitOps loop: the
// example directory applied to a fresh server creates every version, applied
// again changes nothing, and a released version edited without a version
// bump is a conflict that fails the run.
func TestApplyTheExampleCatalogTwiceAndAConflict(t *testing.T) {
	t.Parallel()
	s := start(t)
	files, err := filepath.Glob(filepath.Join(exampleWorkflows, "*"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 3)

	code, out := run(t, nil, "workflows", "apply", "-f", exampleWorkflows, "--server", s.base)
	require.Equal(t, 0, code, out)
	first := applyLines(t, out)
	require.Len(t, first, len(files), out)
	for f, outcome := range first {
		assert.Equal(t, "created", outcome, f)
	}
	assert.Contains(t, out, strconv.Itoa(len(files))+" file(s): "+strconv.Itoa(len(files))+" created, 0 unchanged")

	code, out = run(t, nil, "workflows", "apply", "-f", exampleWorkflows, "--server", s.base)
	require.Equal(t, 0, code, out)
	second := applyLines(t, out)
	require.Len(t, second, len(files), out)
	for f, outcome := range second {
		assert.Equal(t, "unchanged", outcome, "%s: a second apply must change nothing", f)
	}

	// A copy of the directory with one released file edited in place.
	dir := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		if filepath.Base(f) == "restart-pod-2.1.0.yaml" {
			edited := strings.Replace(string(b), "--grace-period=", "--force --grace-period=", 1)
			require.NotEqual(t, string(b), edited)
			b = []byte(edited)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600))
	}
	code, out = run(t, nil, "workflows", "apply", "-f", dir, "--server", s.base)
	assert.Equal(t, 1, code, "a conflict fails the run:\n%s", out)
	third := applyLines(t, out)
	for f, outcome := range third {
		want := "unchanged"
		if f == "restart-pod-2.1.0.yaml" {
			want = "conflict"
		}
		assert.Equal(t, want, outcome, f)
	}
	assert.Contains(t, out, "1 conflict(s), 0 error(s)")
	assert.Contains(t, strings.ToLower(out), "version", "the conflict's detail says to bump the version")

	// JSON output carries the same, for scripts.
	code, out = run(t, nil, "workflows", "apply", "-f", dir, "--server", s.base, "--output", "json")
	assert.Equal(t, 1, code)
	jsonPart := out[:strings.LastIndex(out, "}")+1]
	var res struct {
		Results []struct {
			File    string `json:"file"`
			Outcome string `json:"outcome"`
		} `json:"results"`
		Summary map[string]int `json:"summary"`
	}
	require.NoError(t, json.Unmarshal([]byte(jsonPart), &res), out)
	assert.Equal(t, map[string]int{"unchanged": len(files) - 1, "conflict": 1}, res.Summary)

	// The stored version is the first one, untouched.
	code, out = run(t, nil, "workflows", "get", "restart-pod@2.1.0", "--server", s.base)
	require.Equal(t, 0, code, out)
	assert.NotContains(t, out, "--force")
	assert.Contains(t, out, "status:")
}

// workedExample is the example of docs/catalog.md, read from the page.
type workedExample struct {
	request json.RawMessage
	// terms per workflow name: term → match, weight, contribution.
	terms   map[string]map[string][3]float64
	results []struct {
		rank          int
		name, version string
		score         float64
	}
}

func readWorkedExample(t *testing.T) workedExample {
	t.Helper()
	b, err := os.ReadFile("../../docs/catalog.md")
	require.NoError(t, err)
	doc := string(b)
	var ex workedExample
	_, after, ok := strings.Cut(doc, "<!-- worked-example:request -->")
	require.True(t, ok, "docs/catalog.md lost its worked example")
	m := regexp.MustCompile("(?s)```json\n(.*?)```").FindStringSubmatch(after)
	require.NotNil(t, m)
	ex.request = json.RawMessage(m[1])
	require.True(t, json.Valid(ex.request), "the worked example's request is not JSON")

	table := func(marker string) [][]string {
		_, rest, ok := strings.Cut(doc, marker)
		require.True(t, ok, "docs/catalog.md: no %s", marker)
		var rows [][]string
		for line := range strings.SplitSeq(strings.TrimLeft(rest, "\n"), "\n") {
			if !strings.HasPrefix(line, "|") {
				break
			}
			cells := strings.Split(strings.Trim(line, "|"), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			rows = append(rows, cells)
		}
		require.Greater(t, len(rows), 2, marker)
		return rows[2:] // header and separator
	}
	num := func(s string) float64 {
		f, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err, s)
		return f
	}
	ex.terms = map[string]map[string][3]float64{}
	for _, name := range []string{"increase-memory", "restart-pod"} {
		ex.terms[name] = map[string][3]float64{}
		for _, r := range table("<!-- worked-example:terms " + name + " -->") {
			require.Len(t, r, 6)
			ex.terms[name][r[0]] = [3]float64{num(r[3]), num(r[4]), num(r[5])}
		}
	}
	for _, r := range table("<!-- worked-example:results -->") {
		require.Len(t, r, 4)
		rank, err := strconv.Atoi(r[0])
		require.NoError(t, err)
		ex.results = append(ex.results, struct {
			rank          int
			name, version string
			score         float64
		}{rank, r[1], r[2], num(r[3])})
	}
	return ex
}

// TestWorkedExampleOfTheCatalogDocs runs the search of docs/catalog.md on
// the example catalog and checks every number the page states.
func TestWorkedExampleOfTheCatalogDocs(t *testing.T) {
	t.Parallel()
	s := start(t)
	code, out := run(t, nil, "workflows", "apply", "-f", exampleWorkflows, "--server", s.base)
	require.Equal(t, 0, code, out)
	ex := readWorkedExample(t)
	c, err := client.New(s.base)
	require.NoError(t, err)
	ctx := context.Background()

	var req client.SearchRequest
	require.NoError(t, json.Unmarshal(ex.request, &req))
	res, err := c.SearchWorkflows(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, len(ex.results), res.TotalCandidates)
	require.Len(t, res.Results, len(ex.results))
	for i, want := range ex.results {
		got := res.Results[i]
		assert.Equal(t, want.rank, got.Rank)
		assert.Equal(t, want.name, got.Workflow.WorkflowName)
		assert.Equal(t, want.version, got.Workflow.Version)
		assert.InDelta(t, want.score, got.Score, 5e-7, "%s", want.name)
		wantTerms := ex.terms[want.name]
		require.Len(t, got.Terms, len(wantTerms), want.name)
		var sum float64
		for _, term := range got.Terms {
			w, ok := wantTerms[term.Term]
			require.True(t, ok, "%s: term %s is not in the docs", want.name, term.Term)
			assert.InDelta(t, w[0], term.Match, 1e-9, "%s %s match", want.name, term.Term)
			assert.InDelta(t, w[1], term.Weight, 1e-9, "%s %s weight", want.name, term.Term)
			assert.InDelta(t, w[2], term.Contribution, 5e-7, "%s %s contribution", want.name, term.Term)
			sum += term.Contribution
		}
		assert.InDelta(t, got.Score, sum, 1e-9, "the contributions add up to the score")
	}

	// The same signal on a GitOps-managed target: increase-memory is left out.
	req.DetectedLabels.GitOpsManaged = client.Bool(true)
	res, err = c.SearchWorkflows(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, 1, res.TotalCandidates)
	require.Len(t, res.Results, 1)
	assert.Equal(t, "restart-pod", res.Results[0].Workflow.WorkflowName)

	// The CLI prints the same ranking, and the terms with --explain.
	code, out = run(t, nil, "workflows", "search", "--server", s.base, "--signal-type", "OOMKilled", "--severity", "critical",
		"--component", "deployment", "--environment", "production", "--priority", "P1", "--risk-tolerance", "low",
		"--business-category", "payments", "--detected", "gitops_managed=false", "--custom", "team=payments", "--explain")
	require.Equal(t, 0, code, out)
	lines := strings.Split(out, "\n")
	require.Greater(t, len(lines), 3, out)
	assert.Regexp(t, `^1\s+0\.8571\s+increase-memory\s+1\.2\.0`, lines[1])
	assert.Contains(t, out, "context.priority")
	assert.Regexp(t, `(?m)^2\s+0\.5714\s+restart-pod\s+2\.1\.0`, out)
	assert.Contains(t, out, "2 shown of 2 candidates")
}

// TestDiscoverThenSelect is the agent's way through the SDK and the CLI:
// a choice from the results validates and fetches the version; one that was
// not offered, or was disabled after the search, is refused.
func TestDiscoverThenSelect(t *testing.T) {
	t.Parallel()
	s := start(t)
	code, out := run(t, nil, "workflows", "apply", "-f", exampleWorkflows, "--server", s.base)
	require.Equal(t, 0, code, out)
	c, err := client.New(s.base)
	require.NoError(t, err)
	ctx := context.Background()

	d, err := c.Discover(ctx, client.SearchRequest{
		Context:       client.SearchContext{SignalType: "OOMKilled", Severity: "critical", Environment: "production"},
		RemediationID: "rr-e2e-discover",
	})
	require.NoError(t, err)
	best, ok := d.Best()
	require.True(t, ok)
	require.Equal(t, "increase-memory", best.Workflow.WorkflowName)
	assert.Empty(t, best.Workflow.Content, "search results carry no content")

	wf, err := d.Select(ctx, best.Workflow.WorkflowID)
	require.NoError(t, err)
	file, err := os.ReadFile(filepath.Join(exampleWorkflows, "increase-memory-1.2.0.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(file), strings.SplitN(wf.Content, "\n", 2)[0], "Select returns the version's content")
	assert.Equal(t, client.WorkflowID("increase-memory", "1.2.0"), wf.WorkflowID)

	// Not offered: scale-out is for other signals.
	_, err = d.Select(ctx, client.WorkflowID("scale-out", "1.0.0"))
	var se *client.SelectionError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, client.SelectionNotOffered, se.Reason)
	code, out = run(t, nil, "workflows", "validate", d.ID, "scale-out@1.0.0", "--server", s.base)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "not_offered")
	code, out = run(t, nil, "workflows", "validate", d.ID, "increase-memory@1.2.0", "--server", s.base)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "valid:")

	// Disabled after the search: refused, and the next version down is latest.
	code, out = run(t, nil, "workflows", "disable", "increase-memory@1.2.0", "--reason", "OOMs again on 1.31 nodes", "--server", s.base)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "increase-memory 1.2.0 is now disabled")
	_, err = d.Select(ctx, best.Workflow.WorkflowID)
	require.ErrorAs(t, err, &se)
	assert.Equal(t, client.SelectionNoLongerActive, se.Reason)
	code, out = run(t, nil, "workflows", "validate", d.ID, "increase-memory@1.2.0", "--server", s.base)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "no_longer_active")

	vs, err := c.WorkflowVersions(ctx, "increase-memory")
	require.NoError(t, err)
	require.Len(t, vs.Versions, 2)
	assert.Equal(t, "1.2.0", vs.Versions[0].Version)
	assert.False(t, vs.Versions[0].IsLatest)
	assert.True(t, vs.Versions[1].IsLatest, "1.1.0 took over as latest")

	// The workflow's history is one hash chain: two registrations and the
	// status change, intact.
	status, body, err := s.post("/api/v1/audit/verify-chain", map[string]string{"correlation_id": "workflow/increase-memory"})
	require.NoError(t, err)
	require.Equal(t, 200, status, "%v", body)
	assert.Equal(t, true, body["is_valid"], "%v", body)
	assert.EqualValues(t, 3, body["total_events"], "%v", body)

	// A second disable is an invalid transition; the CLI says so and fails.
	code, out = run(t, nil, "workflows", "disable", "increase-memory@1.2.0", "--reason", "again", "--server", s.base)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "Invalid Status Transition")

	// The list through the CLI, one page and every page.
	code, out = run(t, nil, "workflows", "list", "--server", s.base, "--limit", "2", "--all", "--output", "json")
	require.Equal(t, 0, code, out)
	var all struct {
		Workflows []client.Workflow `json:"workflows"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &all))
	assert.Len(t, all.Workflows, 4)
	code, out = run(t, nil, "workflows", "list", "--server", s.base, "--latest")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "3 shown")
}
