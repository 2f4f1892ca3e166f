package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/catalog"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// catalogEvent is a valid catalog event for the chain of workflow/<name>.
func catalogEvent(t *testing.T, name, action string) *audit.Event {
	t.Helper()
	v := &audit.Validator{MaxAge: time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}
	ev, fe, err := v.DecodeOne([]byte(`{"version":"1.0","event_type":"datastorage.workflow.` + action + `","event_timestamp":"` +
		time.Now().UTC().Format(time.RFC3339Nano) + `","event_category":"workflow","event_action":"` + action +
		`","event_outcome":"success","correlation_id":"workflow/` + name + `","event_data":{"x":1}}`))
	require.NoError(t, err)
	require.Empty(t, fe)
	return ev
}

func record(name, version, key string) catalog.WorkflowRecord {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return catalog.WorkflowRecord{ID: uuid.NewSHA1(uuid.NameSpaceURL, []byte(name+"/"+version)), Name: name, Version: version,
		VersionKey: key, Title: "t", Description: []byte(`{"what":"w"}`), ActionType: "A", Labels: []byte(`{}`),
		DetectedLabels: []byte(`{}`), CustomLabels: []byte(`{}`), LabelTerms: []string{"signal_type=x"},
		Execution: []byte(`{}`), Parameters: []byte(`[]`), Content: "c", ContentHash: "sha256:x",
		CreatedAt: now, CreatedBy: "me", UpdatedAt: now, UpdatedBy: "me"}
}

func TestWorkflowVersionsAreImmutable(t *testing.T) {
	st, _ := storetest.New(t, store.Options{}, 1)
	ctx := context.Background()
	rec, err := st.RegisterWorkflow(ctx, record("imm", "1.0.0", "a"), catalogEvent(t, "imm", "created"))
	require.NoError(t, err)
	require.True(t, rec.IsLatest)

	for _, sql := range []string{
		`UPDATE workflow_versions SET title = 'changed'`,
		`UPDATE workflow_versions SET content = 'changed'`,
		`UPDATE workflow_versions SET labels = '{"a":1}'`,
		`DELETE FROM workflow_versions`,
	} {
		_, err := st.Pool().Exec(ctx, sql)
		require.Error(t, err, sql)
	}
	_, err = st.Pool().Exec(ctx, `UPDATE workflow_versions SET status = 'disabled', is_latest = false, status_reason = 'r', updated_by = 'x', updated_at = now()`)
	require.NoError(t, err, "the lifecycle columns may change")

	got, err := st.ChangeWorkflowStatus(ctx, rec.ID, func(cur catalog.WorkflowRecord) (catalog.StatusChange, *audit.Event, error) {
		return catalog.StatusChange{Status: "active", Reason: "back", By: "me", At: time.Now()}, catalogEvent(t, "imm", "updated"), nil
	})
	require.NoError(t, err)
	require.Equal(t, "active", got.Status)
	require.True(t, got.IsLatest)
}

// With N replicas every one runs the discovery sweeper; while one sweeps,
// the others' sweeps do nothing instead of contending for the same rows.
func TestDiscoverySweepRunsOnOneReplicaAtATime(t *testing.T) {
	t.Parallel()
	st, url := newStore(t)
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	for range 2 {
		require.NoError(t, st.InsertDiscovery(ctx, catalog.Discovery{ID: uuid.New(), CreatedAt: old, Request: []byte(`{}`)}))
	}
	other, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(0x6473_6469_7363))
	require.NoError(t, err)
	n, err := st.DeleteDiscoveriesBefore(ctx, time.Now().Add(-24*time.Hour))
	require.NoError(t, err)
	assert.Zero(t, n, "another replica's sweep is running")
	require.NoError(t, tx.Rollback(ctx))
	n, err = st.DeleteDiscoveriesBefore(ctx, time.Now().Add(-24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
}
