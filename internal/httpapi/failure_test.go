package httpapi_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exec runs SQL as the test's own connection (an operator's change).
func (b *bundle) exec(sql string) {
	b.t.Helper()
	_, err := b.store.Pool().Exec(context.Background(), sql)
	require.NoError(b.t, err)
}

// A batch over many correlations (several writers) with one element the
// database refuses stores nothing and names the element (issue 18, item 3).
func TestABatchWithAnEventTheDatabaseRefusesStoresNothingAndNamesIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(`ALTER TABLE audit_events ADD CONSTRAINT refuse_probe CHECK (event_action <> 'refused') NOT VALID`)
	var batch []any
	var ids []string
	for i := range 40 {
		id := uuid.NewString()
		ids = append(ids, id)
		over := map[string]any{"event_id": id, "correlation_id": fmt.Sprintf("rr-split-%d", i)}
		if i == 27 {
			over["event_action"] = "refused"
		}
		batch = append(batch, event(over))
	}
	r := b.do("POST", "/api/v1/audit/events/batch", batch)
	require.Equal(t, 400, r.status, "%s", r.body)
	fe := r.fields(t)
	require.Contains(t, fe, "[27]", "the answer names the refused element: %s", r.body)
	assert.Contains(t, fe["[27]"], "refuse_probe")
	assert.Contains(t, fe["[27]"], "23514")
	for _, id := range ids {
		assert.Zero(t, b.count(id), "nothing of the batch is stored")
	}

	// A single event the database refuses is a 400 too, never a 500.
	r = b.do("POST", "/api/v1/audit/events", event(map[string]any{"event_action": "refused"}))
	require.Equal(t, 400, r.status, "%s", r.body)
	assert.Contains(t, r.fields(t), "body")
}

// An internal error on a read (the schema changed under the service, so the
// rows no longer scan) is a 500 with the request id, not a 503 that clients
// would retry for ever (issue 18, item 2).
func TestAReadThatHitsAnInternalErrorIs500NotUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := uuid.NewString()
	require.Equal(t, 201, b.do("POST", "/api/v1/audit/events", event(map[string]any{"event_id": id})).status)
	b.exec(`ALTER TABLE audit_events ALTER COLUMN is_sensitive DROP DEFAULT, ALTER COLUMN is_sensitive TYPE int USING 7`)
	for _, path := range []string{"/api/v1/audit/events/" + id, "/api/v1/audit/events?limit=5"} {
		r := b.do("GET", path, nil)
		require.Equal(t, 500, r.status, "%s: %s", path, r.body)
		assert.Empty(t, r.header.Get("Retry-After"))
		p := r.json(t)
		assert.Equal(t, "https://kubernaut.ai/problems/internal-error", p["type"])
		assert.Contains(t, p["detail"], r.header.Get("X-Request-ID"))
	}
}

// A unique violation of notification_audit is a 409 only for the
// notification_id constraint (issue 18, item 5).
func TestANotificationConflictIsOnlyTheNotificationIDConstraint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(`CREATE UNIQUE INDEX notification_audit_one_per_remediation ON notification_audit (remediation_id)`)
	first := notification(map[string]any{"remediation_id": "rr-unique"})
	require.Equal(t, 201, b.do("POST", "/api/v1/audit/notifications", first).status)

	r := b.do("POST", "/api/v1/audit/notifications", first)
	require.Equal(t, 409, r.status, "the same notification_id: %s", r.body)

	other := notification(map[string]any{"remediation_id": "rr-unique"})
	r = b.do("POST", "/api/v1/audit/notifications", other)
	require.Equal(t, 400, r.status, "another unique constraint is not 'already recorded': %s", r.body)
	assert.Contains(t, r.fields(t)["body"], "notification_audit_one_per_remediation")
}
