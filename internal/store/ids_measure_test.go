package store_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// TestMeasureIDTableCost measures what audit_event_ids (migration 00006)
// adds to a write: WAL bytes and PostgreSQL execution time per event of the
// id insert alone, next to the whole write path (InsertEvents: events,
// ids, chain heads, rollups) for batches of 500 and single events. WAL bytes
// do not depend on the machine's load; execution times do (they are
// PostgreSQL's own, from EXPLAIN ANALYZE, not the client's). Skipped unless
// DATASTORAGE_IDS_MEASURE=1:
//
//	DATASTORAGE_IDS_MEASURE=1 go test ./internal/store/ -run TestMeasureIDTableCost -v
func TestMeasureIDTableCost(t *testing.T) {
	if os.Getenv("DATASTORAGE_IDS_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_IDS_MEASURE=1 to measure the id table's write cost")
	}
	st, _ := newStore(t)
	ctx := context.Background()
	lsn := func() int64 {
		var n int64
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn`).Scan(&n))
		return n
	}
	// Warm up: partitions, plans, a first B-tree page.
	for range 3 {
		_, err := st.InsertEvents(ctx, batchOf(500))
		require.NoError(t, err)
	}
	for _, size := range []int{500, 1} {
		const rounds = 20
		var pathWAL, idWAL int64
		var idExec time.Duration
		start := time.Now()
		for range rounds {
			w := lsn()
			_, err := st.InsertEvents(ctx, batchOf(size))
			require.NoError(t, err)
			pathWAL += lsn() - w

			ids := make([]pgtype.UUID, size)
			dates := make([]time.Time, size)
			for i := range ids {
				ids[i] = pgtype.UUID{Bytes: uuid.Must(uuid.NewV7()), Valid: true}
				dates[i] = time.Now().UTC().Truncate(24 * time.Hour)
			}
			w = lsn()
			var plan string
			require.NoError(t, st.Pool().QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON)
				INSERT INTO audit_event_ids (event_id, event_date) SELECT * FROM unnest($1::uuid[], $2::date[])`,
				ids, dates).Scan(&plan))
			idWAL += lsn() - w
			idExec += execTime(t, plan)
		}
		elapsed := time.Since(start)
		n := float64(rounds * size)
		t.Logf("batch of %d: whole write path %.0f WAL B/event; id insert alone %.0f WAL B/event (%.1f %%), %.2f µs/event PostgreSQL execution; (%s for %d rounds, load-dependent)",
			size, float64(pathWAL)/n, float64(idWAL)/n, 100*float64(idWAL)/float64(pathWAL),
			float64(idExec.Microseconds())/n, elapsed.Round(time.Millisecond), rounds)
	}
}

func batchOf(n int) []*audit.Event {
	evs := make([]*audit.Event, n)
	for i := range evs {
		evs[i] = newEvent("rr-measure-"+uuid.NewString()[:4], time.Now(), 30)
	}
	return evs
}

// execTime reads "Execution Time" (ms) from EXPLAIN (ANALYZE, FORMAT JSON).
func execTime(t *testing.T, plan string) time.Duration {
	t.Helper()
	var out []struct {
		ExecutionTime float64 `json:"Execution Time"`
	}
	require.NoError(t, json.Unmarshal([]byte(plan), &out))
	require.Len(t, out, 1)
	return time.Duration(out[0].ExecutionTime * float64(time.Millisecond))
}
