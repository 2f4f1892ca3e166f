package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's promise: a newcomer writes an event with curl, opens
// /console/ and finds it, its timeline and the dashboards.
func TestTheBinaryServesTheConsole(t *testing.T) {
	t.Parallel()
	s := start(t)
	corr := "console-" + uuid.NewString()
	status, body, err := s.post("/api/v1/audit/events", event(corr, map[string]any{
		"event_timestamp": time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano)}))
	require.NoError(t, err)
	require.Equal(t, 201, status, "%v", body)

	get := func(path string) (int, string, http.Header) {
		resp, err := http.Get(s.base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b), resp.Header
	}
	code, page, h := get("/console/")
	require.Equal(t, 200, code, page)
	assert.True(t, strings.HasPrefix(h.Get("Content-Type"), "text/html"))
	assert.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'")
	assert.Contains(t, page, corr, "the latest events include the one just written")
	code, page, _ = get("/console/timeline/" + corr)
	assert.Equal(t, 200, code, page)
	code, page, _ = get("/console/dashboards")
	assert.Equal(t, 200, code, page)
	code, _, h = get("/console/assets/console.css")
	assert.Equal(t, 200, code)
	assert.Contains(t, h.Get("Content-Type"), "text/css")
}
