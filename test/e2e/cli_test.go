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

func TestCLIReadsEventsAndTimelineThroughTheAPI(t *testing.T) {
	t.Parallel()
	s := start(t)
	corr := "cli-" + uuid.NewString()
	root := uuid.NewString()
	status, body, err := s.post("/api/v1/audit/events/batch", []any{
		event(corr, map[string]any{"event_id": root, "event_type": "gateway.signal.received",
			"event_timestamp": time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano)}),
		event(corr, map[string]any{"parent_event_id": root, "event_type": "workflowexecution.step.failed",
			"event_outcome": "failure", "error_message": "pod not found"}),
	})
	require.NoError(t, err)
	require.Equal(t, 201, status, "%v", body)

	code, out := run(t, nil, "events", "--server", s.base, "--correlation-id", corr)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "TIME")
	assert.Contains(t, out, "workflowexecution.step.failed")
	assert.Contains(t, out, "2 shown, 2 in all")
	assert.NotContains(t, out, "\x1b[", "no colours when stdout is not a terminal")

	code, out = run(t, []string{"KUBERNAUT_DATASTORAGE_URL=" + s.base}, "timeline", corr)
	require.Equal(t, 0, code, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Contains(t, lines[0], corr)
	assert.Contains(t, lines[1], "└─ ")
	assert.Contains(t, lines[1], "gateway.signal.received")
	assert.Contains(t, lines[2], "   └─ ", "the child is indented under its parent")
	assert.Contains(t, lines[2], "pod not found")

	code, out = run(t, nil, "timeline", corr, "--server", s.base, "--output", "json")
	require.Equal(t, 0, code, out)
	var tl map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &tl))
	assert.Equal(t, corr, tl["correlation_id"])

	code, out = run(t, nil, "timeline", "nope-"+uuid.NewString(), "--server", s.base)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "Not Found (404)")
	code, out = run(t, nil, "events", "--server", s.base, "--since", "yesterday")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "since:")
}
