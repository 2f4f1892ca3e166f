package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

// TestStorageSettingsReachOldAndNewPartitions checks migration 00004
// (docs/storage.md) on a partition that existed before it and on one
// EnsurePartitions creates after it.
func TestStorageSettingsReachOldAndNewPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, testenv.NewDatabase(t), store.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.MigrateUpTo(ctx, 3)
	require.NoError(t, err)
	now := time.Now().UTC()
	_, err = st.EnsurePartitions(ctx, now, 0) // exists before 00004
	require.NoError(t, err)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	later := now.AddDate(2, 0, 0)
	n, err := st.EnsurePartitions(ctx, later, 0) // created after it
	require.NoError(t, err)
	require.Equal(t, 1, n)

	pool := st.Pool()
	t.Run("every partition compresses event_data with lz4", func(t *testing.T) {
		rows, err := pool.Query(ctx, `
			SELECT c.relname, a.attcompression::text
			FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'event_data'
			WHERE c.oid = 'audit_events'::regclass
			   OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'audit_events'::regclass)
			ORDER BY 1`)
		require.NoError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowToMap)
		require.NoError(t, err)
		require.Len(t, got, 3, "the parent and two partitions")
		for _, r := range got {
			assert.Equal(t, "l", r["attcompression"], "%s", r["relname"])
		}
	})

	t.Run("the category index is gone, the filter indexes stay", func(t *testing.T) {
		rows, err := pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE tablename = 'audit_events'`)
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		assert.NotContains(t, names, "audit_events_category_idx")
		for _, want := range []string{"audit_events_pkey", "audit_events_time_idx", "audit_events_correlation_idx",
			"audit_events_type_idx", "audit_events_namespace_idx", "audit_events_resource_idx",
			"audit_events_actor_idx", "audit_events_workflow_idx"} {
			assert.Contains(t, names, want)
		}
	})

	// A typical event_data (~600 bytes) is stored as it is: PostgreSQL
	// compresses only rows over ~2 KB. A large one is compressed with lz4,
	// in either partition.
	small := newEvent("rr-storage", now.Add(-time.Minute), 30)
	small.Data = eventData(600)
	bigOld := newEvent("rr-storage", now, 30)
	bigOld.Data = eventData(6000)
	bigNew := newEvent("rr-storage-later", later, 30)
	bigNew.Data = eventData(6000)
	_, err = st.InsertEvents(ctx, []*audit.Event{small, bigOld, bigNew})
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		ev     *audit.Event
		method *string
	}{
		{"a 600-byte event_data stays uncompressed", small, nil},
		{"a large event_data in the old partition is lz4", bigOld, ptr("lz4")},
		{"a large event_data in the new partition is lz4", bigNew, ptr("lz4")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var method *string
			var stored, text int
			require.NoError(t, pool.QueryRow(ctx, `
				SELECT pg_column_compression(event_data), pg_column_size(event_data), octet_length(event_data::text)
				FROM audit_events WHERE event_id = $1`, tc.ev.ID).Scan(&method, &stored, &text))
			assert.Equal(t, tc.method, method)
			if tc.method != nil {
				assert.Less(t, stored, text/2, "stored %d bytes of %d", stored, text)
			}
		})
	}

	t.Run("the append-only trigger guards the new partition", func(t *testing.T) {
		_, err := pool.Exec(ctx, `UPDATE audit_events SET event_type = 'x.y.z' WHERE event_id = $1`, bigNew.ID)
		requireRefused(t, err, "append-only")
	})
}

// eventData returns a JSON object of about n bytes, shaped like an AI
// agent's answer: a few fields and a long text.
func eventData(n int) json.RawMessage {
	var text strings.Builder
	for i := 0; text.Len() < n-120; i++ {
		fmt.Fprintf(&text, "Step %d: the pod was OOMKilled because its memory limit is below the working set. ", i)
	}
	b, err := json.Marshal(map[string]any{"model": "gpt", "attempt": 1, "workflow_id": "wf-007", "response": text.String()})
	if err != nil {
		panic(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }
