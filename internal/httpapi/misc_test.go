package httpapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
)

func TestUnknownRoutesAndMethodsAreProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do("GET", "/api/v1/nothing-here", nil)
	require.Equal(t, 404, r.status)
	assert.Equal(t, "https://kubernaut.ai/problems/not-found", r.json(t)["type"])
	assert.Equal(t, "Not Found", r.json(t)["title"])
	assert.Equal(t, "/api/v1/nothing-here", r.json(t)["instance"])

	r = b.do("DELETE", "/api/v1/audit/events", nil)
	require.Equal(t, 405, r.status)
	assert.Equal(t, "https://kubernaut.ai/problems/method-not-allowed", r.json(t)["type"])
	assert.Equal(t, "GET, HEAD, POST", r.header.Get("Allow"))

	for _, m := range []string{"GET", "PUT", "DELETE"} {
		r = b.do(m, "/api/v1/audit/events/batch", nil)
		require.Equal(t, 405, r.status, m)
		assert.Equal(t, "POST", r.header.Get("Allow"), m)
	}
}

func TestRequestIDIsEchoedOrGenerated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do("GET", "/healthz", nil, "X-Request-ID", "trace-abc-123")
	assert.Equal(t, "trace-abc-123", r.header.Get("X-Request-ID"))
	r = b.do("GET", "/api/v1/nope", nil)
	assert.Len(t, r.header.Get("X-Request-ID"), 32, "generated when absent, also on errors")
	r = b.do("GET", "/healthz", nil, "X-Request-ID", strings.Repeat("x", 500))
	assert.Len(t, r.header.Get("X-Request-ID"), 32, "an unreasonable id is replaced")
}

func TestHealthProbes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, p := range []string{"/healthz", "/health/live"} {
		r := b.do("GET", p, nil)
		require.Equal(t, 200, r.status)
		assert.Equal(t, map[string]any{"status": "healthy"}, r.json(t))
	}
	check := func(db, spool, stopping bool, status int, want map[string]any) {
		t.Helper()
		b.health.db, b.health.spool, b.health.stopping = db, spool, stopping
		for _, p := range []string{"/readyz", "/health/ready", "/health"} {
			r := b.do("GET", p, nil)
			require.Equal(t, status, r.status, p)
			for k, v := range want {
				assert.Equal(t, v, r.json(t)[k], p+" "+k)
			}
		}
	}
	check(true, true, false, 200, map[string]any{"status": "ready", "database": "up", "spool": "up"})
	check(true, false, false, 200, map[string]any{"status": "ready", "spool": "down"})
	check(false, true, false, 200, map[string]any{"status": "ready", "database": "down"})
	check(false, false, false, 503, map[string]any{"status": "not_ready", "reason": "database_unreachable"})
	check(true, true, true, 503, map[string]any{"status": "not_ready", "reason": "shutting_down"})
}

// panickingReader stands in for a read path with a bug.
type panickingReader struct{}

func (panickingReader) List(context.Context, query.ListParams) (query.ListResult, error) {
	panic("bug in the read path")
}
func (panickingReader) Get(context.Context, uuid.UUID) (audit.Event, error) { panic("bug") }

func TestPanicIsA500Problem(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.reader = panickingReader{} })
	r := b.do("GET", "/api/v1/audit/events", nil)
	require.Equal(t, 500, r.status)
	p := r.json(t)
	assert.Equal(t, "https://kubernaut.ai/problems/internal-error", p["type"])
	assert.Contains(t, p["detail"], r.header.Get("X-Request-ID"))
	// The server survives.
	require.Equal(t, 200, b.do("GET", "/healthz", nil).status)
}

func notification(over map[string]any) map[string]any {
	n := map[string]any{
		"remediation_id":  "rr-1",
		"notification_id": uuid.NewString(),
		"recipient":       "oncall@example.com",
		"channel":         "slack",
		"message_summary": "pod restarted",
		"status":          "sent",
		"sent_at":         time.Now().UTC().Format(time.RFC3339),
	}
	for k, v := range over {
		if v == nil {
			delete(n, k)
		} else {
			n[k] = v
		}
	}
	return n
}

func TestNotificationAudit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	in := notification(map[string]any{"delivery_status": "delivered", "escalation_level": 2})
	r := b.do("POST", "/api/v1/audit/notifications", in)
	require.Equal(t, 201, r.status, "%s", r.body)
	n := r.json(t)
	assert.Greater(t, n["id"], float64(0))
	assert.Equal(t, in["notification_id"], n["notification_id"])
	assert.EqualValues(t, 2, n["escalation_level"])
	assert.Regexp(t, `\.\d{6}Z$`, n["created_at"])

	r = b.do("POST", "/api/v1/audit/notifications", in)
	require.Equal(t, 409, r.status)
	assert.Equal(t, "https://kubernaut.ai/problems/conflict", r.json(t)["type"])

	for _, tc := range []struct {
		edit  map[string]any
		field string
	}{
		{map[string]any{"remediation_id": nil}, "remediation_id"},
		{map[string]any{"notification_id": strings.Repeat("n", 256)}, "notification_id"},
		{map[string]any{"recipient": ""}, "recipient"},
		{map[string]any{"channel": "pigeon"}, "channel"},
		{map[string]any{"message_summary": strings.Repeat("m", 1001)}, "message_summary"},
		{map[string]any{"status": "lost"}, "status"},
		{map[string]any{"sent_at": "yesterday"}, "sent_at"},
		{map[string]any{"sent_at": time.Now().Add(10 * time.Minute).Format(time.RFC3339)}, "sent_at"},
		{map[string]any{"escalation_level": 101}, "escalation_level"},
	} {
		r := b.do("POST", "/api/v1/audit/notifications", notification(tc.edit))
		require.Equal(t, 400, r.status, tc.field)
		assert.Contains(t, r.fields(t), tc.field)
	}
	r = b.do("POST", "/api/v1/audit/notifications", map[string]any{})
	require.Equal(t, 400, r.status)
	assert.Len(t, r.fields(t), 7, "every failing field at once: %v", r.fields(t))
}
