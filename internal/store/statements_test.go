package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// The batch INSERT and the COPY share one column order: the INSERT's column
// list must be BatchInsertColumns, one unnest array parameter per column.
func TestBatchInsertSQLNamesBatchInsertColumnsInOrder(t *testing.T) {
	sql := store.BatchInsertSQL()
	_, rest, ok := strings.Cut(sql, "INSERT INTO audit_events (")
	require.True(t, ok, sql)
	list, rest, ok := strings.Cut(rest, ")")
	require.True(t, ok, sql)
	var got []string
	for c := range strings.SplitSeq(list, ",") {
		got = append(got, strings.TrimSpace(c))
	}
	cols := store.BatchInsertColumns()
	assert.Equal(t, cols, got)
	assert.Equal(t, len(cols), strings.Count(rest, "[]"), "one array parameter per column")

	cols[0] = "changed"
	assert.Equal(t, "event_id", store.BatchInsertColumns()[0], "callers get a copy")
}

// The statements handed to cmd/dsbench are the store's own and are valid for
// the migrated schema: each one prepares, with the parameter count its
// documentation gives.
func TestExportedStatementsPrepareOnTheMigratedSchema(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t, store.Options{MaxConns: 2}, 0)
	ctx := context.Background()
	conn, err := st.Pool().Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	params := map[string]int{"chain heads": 1, "stored ids": 3, "parents, bounded": 5, "parents, unbounded": 1}
	hot := store.HotPathSQL()
	require.Len(t, hot, len(params))
	for name, sql := range hot {
		sd, err := conn.Conn().Prepare(ctx, "", sql)
		require.NoError(t, err, name)
		assert.Len(t, sd.ParamOIDs, params[name], name)
	}
	sd, err := conn.Conn().Prepare(ctx, "", store.BatchInsertSQL())
	require.NoError(t, err)
	assert.Len(t, sd.ParamOIDs, len(store.BatchInsertColumns()))
}

// CopyRows and BatchInsertArgs encode events as the store itself does: rows
// written through them read back as the events that were written.
func TestCopyRowsAndBatchInsertArgsWriteWhatTheStoreReadsBack(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t, store.Options{MaxConns: 2}, 0)
	ctx := context.Background()
	now := time.Now()
	mk := func(corr string) *audit.Event {
		e := newEvent(corr, now, 30)
		e.ID, e.ChainSeq, e.Hash, e.HashAlgorithm = uuid.Must(uuid.NewV7()), 1, strings.Repeat("ab", 32), audit.AlgSHA256
		e.Namespace, e.ActorIP = "payments", "10.0.0.7"
		return e
	}
	copied, inserted := []*audit.Event{mk("rr-copy")}, []*audit.Event{mk("rr-insert")}
	n, err := st.Pool().CopyFrom(ctx, pgx.Identifier{"audit_events"}, store.BatchInsertColumns(), store.CopyRows(copied))
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	args, err := store.BatchInsertArgs(inserted)
	require.NoError(t, err)
	tag, err := st.Pool().Exec(ctx, store.BatchInsertSQL(), args...)
	require.NoError(t, err)
	require.Equal(t, int64(1), tag.RowsAffected())

	for _, want := range append(copied, inserted...) {
		// The rows alone, without the id table the write path fills too,
		// which GetEvent looks ids up in.
		_, err := st.Pool().Exec(ctx, `INSERT INTO audit_event_ids (event_id, event_date) VALUES ($1, $2)`, want.ID, want.Date.Std())
		require.NoError(t, err)
		got, err := st.GetEvent(ctx, want.ID)
		require.NoError(t, err, want.CorrelationID)
		assert.Equal(t, want.CorrelationID, got.CorrelationID)
		assert.Equal(t, want.Hash, got.Hash)
		assert.Equal(t, want.ActorID, got.ActorID, "the default actor is stored as NULL and read back")
		assert.Equal(t, want.ResourceID, got.ResourceID)
		assert.Equal(t, want.ActorIP, got.ActorIP)
		assert.Equal(t, want.Namespace, got.Namespace)
		assert.JSONEq(t, string(want.Data), string(got.Data))
	}

	bad := []*audit.Event{mk("rr-bad")}
	bad[0].Hash = "NOT HEX"
	_, err = store.BatchInsertArgs(bad)
	require.ErrorContains(t, err, "event_hash")
}
