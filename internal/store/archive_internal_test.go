package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/archive"
	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// archiveDropEnv is a migrated store with two old months: the first has
// chains whose links name their predecessor as parent (the rows that keep
// a partition from being detached), the second has events of its own.
func archiveDropEnv(t *testing.T) (st *Store, month time.Time, perMonth int) {
	t.Helper()
	ctx := context.Background()
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	y, m, _ := time.Now().UTC().AddDate(0, -6, 0).Date()
	month = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	_, err = st.EnsurePartitions(ctx, month, 3)
	require.NoError(t, err)
	const chains, links = 20, 5
	for _, mo := range []time.Time{month, month.AddDate(0, 1, 0)} {
		var evs []*audit.Event
		for c := range chains {
			corr := fmt.Sprintf("rr-%s-%d", mo.Format("2006-01"), c)
			var prev *audit.Event
			for l := range links {
				ev := overlapEvent(corr, mo.Add(time.Duration(c)*time.Hour+time.Duration(l)*time.Minute))
				if prev != nil {
					ev.ParentID = &prev.ID
				}
				evs = append(evs, ev)
				prev = ev
			}
		}
		_, err := st.InsertEvents(ctx, evs)
		require.NoError(t, err)
	}
	return st, month, chains * links
}

// TestDropMonthDeletesChildRowsEitherWay: the drop takes a month whose
// rows name parents in it whether it may skip the row triggers for their
// delete (session_replication_role, here as the tests' superuser) or must
// fire them row by row (a role without that privilege): the partition is
// gone, the month's event ids with it, the next month untouched, and the
// watch decided without a comparison in full.
func TestDropMonthDeletesChildRowsEitherWay(t *testing.T) {
	for _, rowByRow := range []bool{false, true} {
		t.Run(fmt.Sprintf("rowByRow=%v", rowByRow), func(t *testing.T) {
			ctx := context.Background()
			st, month, perMonth := archiveDropEnv(t)
			s, leader, err := st.OpenArchive(ctx)
			require.NoError(t, err)
			require.True(t, leader)
			defer s.Close(ctx)
			s.(*archiveSession).rowByRow = rowByRow

			watch, err := s.WatchMonth(ctx, month)
			require.NoError(t, err)
			require.NoError(t, s.SaveRecord(ctx, archive.Record{Month: month, Status: archive.StatusVerified,
				Target: "test", ManifestKey: "k", ManifestSHA256: "s", Watch: watch, ArchivedAt: time.Now()}))
			compared, err := s.DropMonth(ctx, month, watch, func(archive.Sums) error {
				t.Error("the watch proves the month: no comparison in full")
				return nil
			})
			require.NoError(t, err)
			assert.False(t, compared)

			var part *string
			require.NoError(t, st.pool.QueryRow(ctx, `SELECT to_regclass($1)::text`, partitionName(month)).Scan(&part))
			assert.Nil(t, part, "the partition is gone")
			count := func(from time.Time) (ids, events int) {
				require.NoError(t, st.pool.QueryRow(ctx, `SELECT
					(SELECT count(*) FROM audit_event_ids WHERE event_date >= $1 AND event_date < $2),
					(SELECT count(*) FROM audit_events WHERE event_date >= $1 AND event_date < $2)`,
					from, from.AddDate(0, 1, 0)).Scan(&ids, &events))
				return ids, events
			}
			ids, _ := count(month)
			assert.Zero(t, ids, "the month's ids are freed")
			ids, events := count(month.AddDate(0, 1, 0))
			assert.Equal(t, perMonth, ids)
			assert.Equal(t, perMonth, events)
			var status string
			require.NoError(t, st.pool.QueryRow(ctx, `SELECT status FROM audit_archives WHERE month = $1`, month).Scan(&status))
			assert.Equal(t, archive.StatusDropped, status)
		})
	}
}

// TestChildRowsSkippedTriggersStillCannotStrandAReference: with the row
// triggers skipped for the delete of the month's child rows, the detach
// still refuses while a row of another month names a parent in the month
// (a reference that appeared after the drop counted them): nothing is
// left pointing at a dropped partition.
func TestChildRowsSkippedTriggersStillCannotStrandAReference(t *testing.T) {
	ctx := context.Background()
	st, month, _ := archiveDropEnv(t)
	ident := pgx.Identifier{partitionName(month)}.Sanitize()
	var parent audit.Event
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT event_id FROM `+ident+` WHERE parent_event_id IS NULL LIMIT 1`).
		Scan(&parent.ID))
	late := overlapEvent("rr-late", month.AddDate(0, 1, 3))
	late.ParentID = &parent.ID
	_, err := st.InsertEvents(ctx, []*audit.Event{late})
	require.NoError(t, err)

	tx, err := st.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	require.NoError(t, deleteChildRows(ctx, tx, month, ident, false))
	var role string
	require.NoError(t, tx.QueryRow(ctx, `SHOW session_replication_role`).Scan(&role))
	assert.Equal(t, "origin", role, "the triggers fire again after the delete")
	_, err = tx.Exec(ctx, `ALTER TABLE audit_events DETACH PARTITION `+ident)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "23503", pgErr.Code, "foreign key violation: %v", err)
}

// TestAWriterWithTheAPIRoleGrantsIsNotedNotRefused: a write to a watched
// month by a role with only the API's grants (migration 00002) succeeds
// and is noted: the watch's trigger runs as its owner, so the writer needs
// no grant on audit_archive_writes, and a late event is never refused
// because its month is being archived.
func TestAWriterWithTheAPIRoleGrantsIsNotedNotRefused(t *testing.T) {
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	st, err := Open(ctx, url, Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	y, m, _ := time.Now().UTC().AddDate(0, -6, 0).Date()
	month := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	_, err = st.EnsurePartitions(ctx, month, 1)
	require.NoError(t, err)
	_, err = st.InsertEvents(ctx, []*audit.Event{overlapEvent("rr-1", month.Add(time.Hour))})
	require.NoError(t, err)

	role := fmt.Sprintf("app_%d", time.Now().UnixNano())
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT USAGE ON SCHEMA public TO ` + role,
		`GRANT SELECT, INSERT ON audit_events TO ` + role,
	} {
		_, err := st.pool.Exec(ctx, q)
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		_, _ = st.pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = st.pool.Exec(context.Background(), `DROP ROLE `+role)
	})

	s, leader, err := st.OpenArchive(ctx)
	require.NoError(t, err)
	require.True(t, leader)
	defer s.Close(ctx)
	_, err = s.WatchMonth(ctx, month)
	require.NoError(t, err)

	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.User = role
	app, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer app.Close(ctx)
	_, err = app.Exec(ctx, `INSERT INTO audit_events SELECT (jsonb_populate_record(NULL::audit_events,
		to_jsonb(e) || jsonb_build_object('event_id', gen_random_uuid(), 'correlation_id', 'rr-late'))).*
		FROM audit_events e WHERE event_date >= $1 AND event_date < $2 LIMIT 1`, month, month.AddDate(0, 1, 0))
	require.NoError(t, err, "the API role's write to a watched month")
	var noted bool
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_archive_writes WHERE month = $1)`, month).Scan(&noted))
	assert.True(t, noted)
}
