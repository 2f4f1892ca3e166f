package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCLIHistoryAndEffectivenessThroughTheAPI(t *testing.T) {
	t.Parallel()
	s := start(t)
	corr := "cli-hist-" + uuid.NewString()
	ago := func(d time.Duration) string { return time.Now().UTC().Add(-d).Format(time.RFC3339Nano) }
	status, body, err := s.post("/api/v1/audit/events/batch", []any{
		event(corr, map[string]any{"event_type": "remediation.workflow_created", "event_category": "orchestration",
			"event_timestamp": ago(2 * time.Hour), "event_data": map[string]any{"target_resource": "/Node/worker-9",
				"pre_remediation_spec_hash": "H1", "action_type": "CordonNode", "outcome": "Success"}}),
		event(corr, map[string]any{"event_type": "effectiveness.alert.assessed", "event_category": "effectiveness",
			"event_timestamp": ago(time.Hour), "event_data": map[string]any{"assessed": true, "score": 0.75,
				"details": "alert cleared", "alert_resolution": map[string]any{"alert_resolved": true}}}),
	})
	require.NoError(t, err)
	require.Equal(t, 201, status, "%v", body)

	code, out := run(t, nil, "history", "--server", s.base, "--target", "/Node/worker-9", "--spec-hash", "H1")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "/Node/worker-9  spec H1  regression detected: yes")
	assert.Contains(t, out, "Tier 1, last 24h0m0s (1, oldest first)")
	assert.Contains(t, out, "Tier 2, last 2160h0m0s before tier 1 (0, oldest first)")
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, corr) {
			row = l
		}
	}
	assert.Equal(t, []string{corr, "-", "CordonNode", "Success", "0.75", "-", "true", "preRemediation"},
		strings.Fields(row)[2:], "the row after its date and time: %q", row)

	code, out = run(t, nil, "history", "--server", s.base, "--target", "/Node/worker-9", "--spec-hash", "H1", "--output", "json")
	require.Equal(t, 0, code, out)
	var h map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &h))
	assert.Equal(t, "/Node/worker-9", h["targetResource"])

	code, out = run(t, nil, "history", "--server", s.base, "--target", "worker-9", "--spec-hash", "H1")
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "Usage: datastorage history")
	code, out = run(t, nil, "history", "--server", s.base, "--target", "ns/Pod/p", "--spec-hash", "H1", "--tier1-window", "7d")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "--tier1-window: must be a Go duration")

	code, out = run(t, nil, "effectiveness", corr, "--server", s.base)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, corr+"  score 0.75  status in_progress")
	assert.Regexp(t, `alert\s+true\s+0.75\s+alert cleared`, out)
	assert.Regexp(t, `health\s+false\s+-\s+-`, out)

	code, out = run(t, nil, "effectiveness", "--server", s.base, "--output", "json", corr)
	require.Equal(t, 0, code, out)
	var e map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &e))
	assert.Equal(t, 0.75, e["score"])

	code, out = run(t, nil, "effectiveness", "nope-"+uuid.NewString(), "--server", s.base)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "Not Found (404)")
}
