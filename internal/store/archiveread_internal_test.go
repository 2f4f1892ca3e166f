package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// TestArchiveStreamsShareOneSnapshot: the COPY streams that read a month
// together see it as of one moment. Between the first stream's snapshot
// and the second's start, a row of the first pages gets a new version
// (a hold's columns: the new version lands on the last page, in the second
// stream's range) and a new event is written to the month (last page too).
// The read must yield the month as it was: every row once, unchanged, and
// not the new one. With a snapshot of its own, the second stream sees the
// changed row a second time and the new one.
func TestArchiveStreamsShareOneSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 6})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	y, m, _ := time.Now().UTC().AddDate(0, -5, 0).Date()
	month := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	_, err = st.EnsurePartitions(ctx, month, 2)
	require.NoError(t, err)

	event := func(corr string, i int) *audit.Event {
		ts := month.Add(time.Duration(i) * time.Minute)
		return &audit.Event{ID: uuid.New(), Version: "1.0", Type: "gateway.signal.received",
			Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Category: "gateway", Action: "received",
			Outcome: "success", CorrelationID: corr, Severity: "info", RetentionDays: 30,
			Data: []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", 300)))}
	}
	var evs []*audit.Event
	for i := range 200 { // full pages: an updated row cannot stay on its page
		evs = append(evs, event(fmt.Sprintf("rr-snap-%02d", i%20), i))
	}
	_, err = st.InsertEvents(ctx, evs)
	require.NoError(t, err)
	var firstID uuid.UUID
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT event_id FROM `+partitionName(month)+` WHERE ctid = '(0,1)'`).Scan(&firstID))

	s, leader, err := st.OpenArchive(ctx)
	require.NoError(t, err)
	require.True(t, leader)
	defer s.Close(ctx)
	sess := s.(*archiveSession)
	changed := false
	sess.exported = func(ctx context.Context) {
		_, err := st.pool.Exec(ctx, `UPDATE audit_events SET legal_hold = true, legal_hold_reason = 'late'
			WHERE event_id = $1`, firstID)
		require.NoError(t, err)
		var page string
		require.NoError(t, st.pool.QueryRow(ctx, `SELECT (ctid::text::point)[0]::text FROM `+partitionName(month)+
			` WHERE event_id = $1`, firstID).Scan(&page))
		require.NotEqual(t, "0", page, "the new version of the row is on another page")
		_, err = st.InsertEvents(ctx, []*audit.Event{event("rr-snap-late", 500)})
		require.NoError(t, err)
		changed = true
	}
	seen := map[[16]byte]int{}
	err = s.EachRow(ctx, month, archive.SortOptions{TempDir: t.TempDir(), Memory: 8 << 10}, func(r *archive.Row) error {
		seen[r.EventID]++
		if r.EventID == firstID {
			require.False(t, r.LegalHold, "the row as it was when the read began")
		}
		return nil
	})
	require.NoError(t, err)
	require.True(t, changed, "the month was read by several streams")
	require.Len(t, seen, len(evs), "the rows of the month when the read began, not the late one")
	for _, e := range evs {
		require.Equal(t, 1, seen[e.ID], "event %s read once", e.ID)
	}
}
