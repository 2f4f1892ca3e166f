package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// commitSQL inserts the rollup rows that do not exist yet. Another replica
// that drew the same shard can insert the same hourly row meanwhile: the
// primary key refuses ours, and the commit must be retried (and then add
// to that row), not refused as bad data nor lost.
func TestARollupRowAddedConcurrentlyIsRetriedNotRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)

	ts := time.Now().Add(-time.Minute)
	ev := &audit.Event{
		ID: uuid.New(), Version: "1.0", Type: "gateway.signal.received",
		Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Category: "gateway",
		Action: "received", Outcome: "success", CorrelationID: "rr-rollup-race",
		Data: json.RawMessage(`{"n":1}`), ActorType: "service", ActorID: "gateway-service",
		ResourceType: "gateway", ResourceID: "rr-rollup-race", Severity: "info", RetentionDays: 30,
	}
	shard := st.shards.base // what the store's next commit draws: no other is running

	// The other replica: its row for the same hour and key, not committed yet.
	other, err := pgx.Connect(ctx, st.pool.Config().ConnConfig.ConnString())
	require.NoError(t, err)
	t.Cleanup(func() { other.Close(context.Background()) })
	tx, err := other.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO audit_rollup_hourly (bucket, event_type, event_category, event_outcome, severity, shard, events)
		VALUES ($1, $2, $3, $4, $5, $6, 41)`, rollupBucket(ev), ev.Type, ev.Category, ev.Outcome, ev.Severity, shard)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := st.InsertEvents(ctx, []*audit.Event{ev})
		done <- err
	}()
	// Wait until our commit waits on the other's row, then commit it.
	require.Eventually(t, func() bool {
		var waiting bool
		err := other.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'datastorage' AND wait_event_type = 'Lock')`).Scan(&waiting)
		return err == nil && waiting
	}, 30*time.Second, 5*time.Millisecond, "our commit never waited on the other replica's row")
	require.NoError(t, tx.Commit(ctx))

	require.NoError(t, <-done, "the commit is retried, not refused")
	var n int64
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT events FROM audit_rollup_hourly WHERE bucket = $1 AND event_type = $2 AND shard = $3`,
		rollupBucket(ev), ev.Type, shard).Scan(&n))
	assert.EqualValues(t, 42, n, "the retry added to the other replica's row")
	var stored int
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE event_id = $1`, ev.ID).Scan(&stored))
	assert.Equal(t, 1, stored)
}
