package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/client"
	"kubernaut.ai/datastorage/internal/catalog"
)

// The example directory is what docs/catalog.md and the README tell a
// newcomer to apply: every file must read and pass the server's rules.
// test/e2e/catalog_test.go applies it to a running server.
func TestExampleWorkflowsReadAndPassTheServersRules(t *testing.T) {
	t.Parallel()
	files, err := workflowFiles([]string{"../../config/workflows"})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 3)
	seen := map[string]bool{}
	for _, f := range files {
		raw, spec, err := readWorkflowFile(f)
		require.NoError(t, err, f)
		w, err := catalog.DecodeRegistration(raw)
		require.NoError(t, err, "%s breaks a rule of CONTRACT §15.1", f)
		assert.Equal(t, catalog.WorkflowID(spec.WorkflowName, spec.Version), client.WorkflowID(spec.WorkflowName, spec.Version),
			"the SDK derives the server's id")
		_ = w
		key := spec.WorkflowName + "@" + spec.Version
		assert.False(t, seen[key], "%s: %s twice", f, key)
		seen[key] = true
	}
}

func TestReadWorkflowFileRefusesWhatTheServerWouldMisread(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	_, spec, err := readWorkflowFile(write("typo.yaml", "workflow_name: a\nversion: 1.0.0\ncustom_label: {team: [x]}\n"))
	assert.ErrorContains(t, err, `unknown field "custom_label"`, "a top-level typo the server would ignore")
	assert.Equal(t, "a", spec.WorkflowName, "the file is still reported under its name")
	_, _, err = readWorkflowFile(write("two.yaml", "workflow_name: a\n---\nworkflow_name: b\n"))
	assert.ErrorContains(t, err, "more than one YAML document")
	_, _, err = readWorkflowFile(write("list.yaml", "- a\n- b\n"))
	assert.ErrorContains(t, err, "not an object")
	_, _, err = readWorkflowFile(write("bad.json", "{"))
	assert.ErrorContains(t, err, "not valid JSON")
	_, _, err = readWorkflowFile(write("num.yaml", "workflow_name: a\nversion: 1.5\n"))
	assert.ErrorContains(t, err, "version", "a version YAML reads as a number is refused, not sent as 1.5")

	raw, _, err := readWorkflowFile(write("ok.yml", "workflow_name: a\nversion: 1.0.0\nparameters: [{name: N, type: integer, default: 3}]\n"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"workflow_name":"a","version":"1.0.0","parameters":[{"name":"N","type":"integer","default":3}]}`, string(raw))

	_, err = workflowFiles([]string{t.TempDir()})
	assert.ErrorContains(t, err, "no .yaml, .yml or .json file")
}

func TestWorkflowRefTakesAnIDOrNameAtVersion(t *testing.T) {
	t.Parallel()
	id, err := workflowRef("restart-pod@2.1.0")
	require.NoError(t, err)
	assert.Equal(t, client.WorkflowID("restart-pod", "2.1.0"), id)
	id2, err := workflowRef(id.String())
	require.NoError(t, err)
	assert.Equal(t, id, id2)
	_, err = workflowRef("restart-pod")
	assert.ErrorContains(t, err, "NAME@VERSION")
}

func TestWorkflowsCommandRefusesBadUsageBeforeCallingTheServer(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"workflows"},
		{"workflows", "frobnicate"},
		{"workflows", "get"},
		{"workflows", "apply"},
		{"workflows", "validate", "only-one"},
	} {
		var out, errOut bytes.Buffer
		assert.Equal(t, 2, run(args, nil, &out, &errOut), "%v", args)
	}
	for args, want := range map[string][]string{
		"--reason: required":      {"workflows", "disable", "a@1.0.0", "--server", "http://127.0.0.1:1"},
		"--signal-type: required": {"workflows", "search", "--server", "http://127.0.0.1:1"},
		"--detected stateful":     {"workflows", "search", "--signal-type", "X", "--detected", "stateful=maybe", "--server", "http://127.0.0.1:1"},
	} {
		var out, errOut bytes.Buffer
		assert.Equal(t, 1, run(want, nil, &out, &errOut))
		assert.Contains(t, errOut.String(), args)
	}
}
