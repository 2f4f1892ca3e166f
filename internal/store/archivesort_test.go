package store_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
)

// TestArchiveSortMatchesPostgreSQLOrder reads a month whose physical order
// is not the archive's (correlations written interleaved, ids whose byte
// order differs from insertion order, some with upper case and non-ASCII
// bytes that a non-C collation would order differently, some sharing
// their first 8 bytes) through the
// archive session's sort, once in memory and once spilled to many runs,
// and compares both with PostgreSQL's ORDER BY correlation_id COLLATE "C",
// chain_seq: the same events, whole, in the same order.
func TestArchiveSortMatchesPostgreSQLOrder(t *testing.T) {
	t.Parallel()
	st, url := newStore(t)
	ctx := context.Background()
	y, m, _ := time.Now().UTC().AddDate(0, -5, 0).Date()
	month := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	_, err := st.EnsurePartitions(ctx, month, 2)
	require.NoError(t, err)

	const corrs, links = 40, 12
	ids := make([]string, corrs)
	for c := range ids {
		// Ids sharing their first 8 bytes or more ("remediation-") and ids
		// that differ there.
		ids[c] = []string{"rr-", "RR-", "ré-", "Rz-", "remediation-", "remediation-request-"}[c%6] + uuid.NewString()
	}
	// Round after round, one link of every correlation: the heap holds the
	// correlations interleaved.
	for s := range links {
		var batch []*audit.Event
		for c, id := range ids {
			ev := newEvent(id, month.Add(time.Duration(s*corrs+c)*time.Minute), 2555)
			ev.Data = fmt.Appendf(nil, `{"round":%d,"pad":"%0*d"}`, s, 200+c*7, c)
			if c%3 == 0 {
				ev.Namespace, ev.ClusterID = "ns-a", "cluster-1" // NULL in the others
			}
			batch = append(batch, ev)
		}
		_, err := st.InsertEvents(ctx, batch)
		require.NoError(t, err)
	}

	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	part := pgx.Identifier{fmt.Sprintf("audit_events_y%04dm%02d", month.Year(), int(month.Month()))}.Sanitize()
	rows, err := conn.Query(ctx, `SELECT event_id, correlation_id, chain_seq FROM `+part+` ORDER BY correlation_id COLLATE "C", chain_seq`)
	require.NoError(t, err)
	type key struct {
		ID   uuid.UUID
		Corr string
		Seq  int64
	}
	want, err := pgx.CollectRows(rows, pgx.RowToStructByPos[key])
	require.NoError(t, err)
	require.Len(t, want, corrs*links)
	var physical []string
	rows, err = conn.Query(ctx, `SELECT correlation_id FROM `+part)
	require.NoError(t, err)
	physical, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEqual(t, physical[1], physical[0], "the heap is not in the archive's order")

	stored := map[uuid.UUID]audit.Event{}
	for _, id := range ids {
		evs, err := st.CorrelationEvents(ctx, id, 100)
		require.NoError(t, err)
		for _, ev := range evs {
			stored[ev.ID] = ev
		}
	}

	s, leader, err := st.OpenArchive(ctx)
	require.NoError(t, err)
	require.True(t, leader)
	defer s.Close(ctx)
	for _, tc := range []struct {
		name   string
		memory int64
	}{
		{"in memory", 0},
		{"spilled runs", 4 << 10}, // ~10 rows a run: dozens of runs merged
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var got []key
			err := s.EachRow(ctx, month, archive.SortOptions{TempDir: dir, Memory: tc.memory}, func(r *archive.Row) error {
				got = append(got, key{r.EventID, r.CorrelationID, r.ChainSeq})
				want, err := archive.RowOf(new(stored[r.EventID]))
				require.NoError(t, err)
				assert.Equal(t, want, *r)
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, want, got)
			left, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Empty(t, left, "the runs are unlinked as soon as they are created")
		})
	}
}
