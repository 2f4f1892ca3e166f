package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
)

// copyOf returns a fresh copy of e as a client (or the spool) would send it
// again: same content, no chain fields.
func copyOf(e *audit.Event) *audit.Event {
	c := &audit.Event{
		ID: e.ID, Version: e.Version, Type: e.Type, Timestamp: e.Timestamp, Date: e.Date,
		Category: e.Category, Action: e.Action, Outcome: e.Outcome, CorrelationID: e.CorrelationID,
		Data: e.Data, ActorType: e.ActorType, ActorID: e.ActorID, ResourceType: e.ResourceType,
		ResourceID: e.ResourceID, Severity: e.Severity, RetentionDays: e.RetentionDays,
	}
	return c
}

func countRows(t *testing.T, st *store.Store, e *audit.Event) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM audit_events WHERE event_id = $1`, e.ID).Scan(&n))
	return n
}

func TestAnEventIDNamesOneEventWhateverTheDate(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	_, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 3)
	require.NoError(t, err)
	orig := newEvent("rr-ids", time.Now().Add(-time.Hour), 30)
	n, err := st.InsertEvents(ctx, []*audit.Event{orig})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	t.Run("a retry with the same content is stored once", func(t *testing.T) {
		n, err := st.InsertEvents(ctx, []*audit.Event{copyOf(orig)})
		require.NoError(t, err)
		assert.Zero(t, n)
		assert.Equal(t, 1, countRows(t, st, orig))
	})
	t.Run("the same id with other content on the same date is a conflict", func(t *testing.T) {
		forged := copyOf(orig)
		forged.Data = json.RawMessage(`{"signal":"forged"}`)
		_, err := st.InsertEvents(ctx, []*audit.Event{newEvent("rr-ids-ok", time.Now(), 30), forged})
		var conflict *store.ConflictError
		require.ErrorAs(t, err, &conflict)
		assert.Equal(t, []int{1}, conflict.Indices)
		assert.Equal(t, 1, countRows(t, st, orig))
	})
	t.Run("the same id on another date is a conflict", func(t *testing.T) {
		forged := copyOf(orig)
		ts := time.Now().AddDate(0, 0, -20)
		forged.Timestamp, forged.Date = audit.NewTime(ts), audit.DateOf(ts)
		forged.CorrelationID = "rr-ids-forger"
		_, err := st.InsertEvents(ctx, []*audit.Event{forged})
		var conflict *store.ConflictError
		require.ErrorAs(t, err, &conflict)
		assert.Equal(t, []int{0}, conflict.Indices)
		assert.Equal(t, 1, countRows(t, st, orig))
		// A child naming the id links to the original.
		child := childOf(orig, "rr-ids", time.Now())
		_, err = st.InsertEvents(ctx, []*audit.Event{child})
		require.NoError(t, err)
		require.NotNil(t, child.ParentDate)
		assert.Equal(t, orig.Date.Std(), child.ParentDate.Std())
	})
	t.Run("the same id twice in one batch with other content is a conflict", func(t *testing.T) {
		a := newEvent("rr-ids-batch", time.Now(), 30)
		b := copyOf(a)
		b.Action = "other"
		_, err := st.InsertEvents(ctx, []*audit.Event{a, b})
		var conflict *store.ConflictError
		require.ErrorAs(t, err, &conflict)
		assert.Equal(t, []int{1}, conflict.Indices)
		assert.Equal(t, 0, countRows(t, st, a), "nothing of the batch was written")

		n, err := st.InsertEvents(ctx, []*audit.Event{a, copyOf(a)})
		require.NoError(t, err)
		assert.EqualValues(t, 1, n, "the same event twice in one batch is stored once")
	})
}

func TestRowsSharingAnIDFromBeforeIDsWereUniqueResolveToTheOriginal(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	_, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 3)
	require.NoError(t, err)
	orig := newEvent("rr-legacy", time.Now().AddDate(0, 0, -10), 30)
	_, err = st.InsertEvents(ctx, []*audit.Event{orig})
	require.NoError(t, err)
	// A second row under the same id and a later date, as the old primary
	// key allowed (written around the id table, as before migration 00006).
	_, err = st.Pool().Exec(ctx, `INSERT INTO audit_events (event_id, event_date, event_timestamp, version, event_type,
		event_category, event_action, event_outcome, correlation_id, event_data, actor_type, actor_id,
		resource_type, resource_id, severity, retention_days, chain_seq, event_hash, previous_event_hash, hash_algorithm)
		VALUES ($1, $2, $3, '1.0', 't', 'gateway', 'a', 'success', 'rr-legacy-forger', '{}', 'service', 's',
		'gateway', 'r', 'info', 30, 1, '\x00', '\x00', 'sha256')`, orig.ID, time.Now().UTC().Truncate(24*time.Hour), time.Now())
	require.NoError(t, err)
	require.Equal(t, 2, countRows(t, st, orig))

	got, err := st.GetEvent(ctx, orig.ID)
	require.NoError(t, err)
	assert.Equal(t, "rr-legacy", got.CorrelationID, "GET resolves the id to the row audit_event_ids names")
	child := childOf(orig, "rr-legacy", time.Now())
	require.NoError(t, st.ResolveParents(ctx, []*audit.Event{child}))
	assert.Equal(t, orig.Date.Std(), child.ParentDate.Std(), "a parent link resolves to the original")
}
