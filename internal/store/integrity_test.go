package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/integrity"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
	"kubernaut.ai/datastorage/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// openStore opens a migrated store on a fresh database, with partitions
// around now.
func openStore(t *testing.T, url string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, url, store.Options{MaxConns: 8})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}

func newStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	return storetest.New(t, store.Options{MaxConns: 8}, 1)
}

// newEvent builds a valid event of correlation corr at ts.
func newEvent(corr string, ts time.Time, retentionDays int32) *audit.Event {
	return &audit.Event{
		ID: uuid.New(), Version: "1.0", Type: "gateway.signal.received",
		Timestamp: audit.NewTime(ts), Date: audit.DateOf(ts), Category: "gateway",
		Action: "received", Outcome: "success", CorrelationID: corr,
		Data:      json.RawMessage(`{"signal":"OOMKilled","n":1.50}`),
		ActorType: "service", ActorID: "gateway-service", ResourceType: "gateway", ResourceID: corr,
		Severity: "info", RetentionDays: retentionDays,
	}
}

func requireRefused(t *testing.T, err error, contains string) {
	t.Helper()
	require.Error(t, err)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a PostgreSQL error, got %v", err)
	require.Equal(t, "42501", pgErr.Code, "%v", err)
	require.Contains(t, pgErr.Message, contains)
}

func TestAppendOnlyTriggers(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	ev := newEvent("rr-append-only", time.Now().Add(-time.Minute), 30)
	_, err := st.InsertEvents(ctx, []*audit.Event{ev})
	require.NoError(t, err)
	db := st.Pool()

	_, err = db.Exec(ctx, `UPDATE audit_events SET event_data = '{"signal":"forged"}' WHERE event_id = $1`, ev.ID)
	requireRefused(t, err, "only the legal hold columns may change")
	_, err = db.Exec(ctx, `UPDATE audit_events SET event_hash = 'x', legal_hold = true WHERE event_id = $1`, ev.ID)
	requireRefused(t, err, "only the legal hold columns may change")
	_, err = db.Exec(ctx, `DELETE FROM audit_events WHERE event_id = $1`, ev.ID)
	requireRefused(t, err, "deleted only by the retention job")
	_, err = db.Exec(ctx, `TRUNCATE audit_events`)
	requireRefused(t, err, "TRUNCATE is refused")

	// Even with the retention flag, a row within its retention stays.
	tx, err := db.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SET LOCAL datastorage.retention = 'on'`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `DELETE FROM audit_events WHERE event_id = $1`, ev.ID)
	requireRefused(t, err, "within its retention")
	require.NoError(t, tx.Rollback(ctx))

	// The legal hold columns may change.
	_, err = db.Exec(ctx, `UPDATE audit_events SET legal_hold = true, legal_hold_reason = 'x',
		legal_hold_placed_by = 'y', legal_hold_placed_at = now() WHERE event_id = $1`, ev.ID)
	require.NoError(t, err)

	// Chain heads only move forward; histories stay.
	_, err = db.Exec(ctx, `UPDATE audit_chain_heads SET last_seq = 0`)
	requireRefused(t, err, "append-only history")
	_, err = db.Exec(ctx, `DELETE FROM audit_chain_heads`)
	requireRefused(t, err, "append-only history")
	_, err = st.PlaceHold(ctx, ev.CorrelationID, "litigation", "alice", time.Now())
	require.NoError(t, err)
	_, err = db.Exec(ctx, `DELETE FROM legal_holds`)
	requireRefused(t, err, "append-only history")
	_, err = db.Exec(ctx, `UPDATE legal_holds SET reason = 'other'`)
	requireRefused(t, err, "append-only history")

	// A repeated write of the same event (same head rewritten) still works.
	_, err = st.InsertEvents(ctx, []*audit.Event{ev})
	require.NoError(t, err)
}

func TestLeastPrivilegeRole(t *testing.T) {
	t.Parallel()
	owner, dbURL := newStore(t)
	ctx := context.Background()
	role := "ds_app_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	_, err := owner.Pool().Exec(ctx, `CREATE ROLE `+role+` LOGIN`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = owner.Pool().Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = owner.Pool().Exec(context.Background(), `DROP ROLE `+role)
	})
	_, err = owner.Pool().Exec(ctx, store.LeastPrivilegeSQL(role))
	require.NoError(t, err)

	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.User(role)
	app := openStore(t, u.String())

	// What the API does works.
	ev := newEvent("rr-least-privilege", time.Now().Add(-time.Minute), 30)
	child := newEvent("rr-least-privilege", time.Now(), 30)
	child.ParentID = &ev.ID
	_, err = app.InsertEvents(ctx, []*audit.Event{ev, child})
	require.NoError(t, err)
	_, err = app.GetEvent(ctx, ev.ID)
	require.NoError(t, err)
	_, err = app.PlaceHold(ctx, ev.CorrelationID, "audit", "bob", time.Now())
	require.NoError(t, err)
	_, err = app.ReleaseHold(ctx, ev.CorrelationID, "done", "bob", time.Now())
	require.NoError(t, err)
	_, err = app.InsertNotification(ctx, audit.Notification{
		RemediationID: "rr-1", NotificationID: uuid.NewString(), Recipient: "x", Channel: "email",
		MessageSummary: "m", Status: "sent", SentAt: audit.NewTime(time.Now()),
	})
	require.NoError(t, err)

	// What it must not do is refused by privileges, whatever the triggers.
	for _, sql := range []string{
		`UPDATE audit_events SET event_data = '{}' WHERE event_id = $1`,
		`DELETE FROM audit_events WHERE event_id = $1`,
	} {
		_, err = app.Pool().Exec(ctx, sql, ev.ID)
		requireRefused(t, err, "permission denied")
	}
	tx, err := app.Pool().Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SET LOCAL datastorage.retention = 'on'`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `DELETE FROM audit_events WHERE event_id = $1`, ev.ID)
	requireRefused(t, err, "permission denied")
	require.NoError(t, tx.Rollback(ctx))
	for _, sql := range []string{`TRUNCATE audit_events`, `DELETE FROM legal_holds`, `DELETE FROM audit_chain_tombstones`} {
		_, err = app.Pool().Exec(ctx, sql)
		requireRefused(t, err, "permission denied")
	}
}

func TestLegalHoldHistory(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	corr := "rr-hold"
	var evs []*audit.Event
	for i := range 3 {
		evs = append(evs, newEvent(corr, time.Now().Add(-time.Duration(10-i)*time.Minute), 30))
	}
	_, err := st.InsertEvents(ctx, evs)
	require.NoError(t, err)

	_, err = st.PlaceHold(ctx, "rr-nothing", "r", "alice", time.Now())
	require.ErrorIs(t, err, integrity.ErrNotFound)
	_, err = st.ReleaseHold(ctx, corr, "r", "alice", time.Now())
	require.ErrorIs(t, err, integrity.ErrNotFound)

	at := time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)
	h, err := st.PlaceHold(ctx, corr, "litigation 42", "alice", at)
	require.NoError(t, err)
	require.Equal(t, integrity.Hold{CorrelationID: corr, EventsAffected: 3, PlacedBy: "alice", PlacedAt: at, Reason: "litigation 42"}, h)

	// An event written after the hold is protected, and flagged by a
	// repeated placement (or the retention job's sweep); the hold keeps its
	// first placement.
	late := newEvent(corr, time.Now(), 30)
	_, err = st.InsertEvents(ctx, []*audit.Event{late})
	require.NoError(t, err)
	h2, err := st.PlaceHold(ctx, corr, "again", "bob", time.Now())
	require.NoError(t, err)
	require.Equal(t, integrity.Hold{CorrelationID: corr, EventsAffected: 4, PlacedBy: "alice", PlacedAt: at, Reason: "litigation 42"}, h2)
	got, err := st.GetEvent(ctx, late.ID)
	require.NoError(t, err)
	require.True(t, got.LegalHold)
	require.Equal(t, "litigation 42", got.HoldReason)
	require.Equal(t, "alice", got.HoldPlacedBy)

	holds, err := st.ListHolds(ctx)
	require.NoError(t, err)
	require.Equal(t, []integrity.Hold{h2}, holds)

	rel, err := st.ReleaseHold(ctx, corr, "case closed", "carol", at.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, integrity.HoldRelease{CorrelationID: corr, EventsReleased: 4, ReleasedBy: "carol", ReleasedAt: at.Add(time.Hour)}, rel)
	holds, err = st.ListHolds(ctx)
	require.NoError(t, err)
	require.Empty(t, holds)
	got, err = st.GetEvent(ctx, late.ID)
	require.NoError(t, err)
	require.False(t, got.LegalHold)
	require.Empty(t, got.HoldReason)

	// The history keeps both the placement and the release.
	var n int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM legal_holds
		WHERE correlation_id = $1 AND placed_by = 'alice' AND released_by = 'carol' AND release_reason = 'case closed'
		AND events_released = 4`, corr).Scan(&n))
	require.Equal(t, 1, n)

	// A new hold after a release is a new history row.
	_, err = st.PlaceHold(ctx, corr, "second case", "dave", time.Now())
	require.NoError(t, err)
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM legal_holds WHERE correlation_id = $1`, corr).Scan(&n))
	require.Equal(t, 2, n)
}

func TestExportCursorStreamsInChainOrder(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	var evs []*audit.Event
	for i := range 7 {
		// Later correlations first in time, to see the order is by chain.
		evs = append(evs, newEvent(fmt.Sprintf("rr-%d", 2-i%3), base.Add(time.Duration(i)*time.Second), 30))
	}
	_, err := st.InsertEvents(ctx, evs)
	require.NoError(t, err)

	cur, err := st.OpenExport(ctx, integrity.ExportFilter{}, 2)
	require.NoError(t, err)
	defer cur.Close(ctx)
	var got []string
	for {
		batch, err := cur.Next(ctx)
		require.NoError(t, err)
		if len(batch) == 0 {
			break
		}
		require.LessOrEqual(t, len(batch), 2)
		for _, e := range batch {
			got = append(got, fmt.Sprintf("%s/%d", e.CorrelationID, e.ChainSeq))
		}
	}
	require.Equal(t, []string{"rr-0/1", "rr-0/2", "rr-1/1", "rr-1/2", "rr-2/1", "rr-2/2", "rr-2/3"}, got)

	cur2, err := st.OpenExport(ctx, integrity.ExportFilter{CorrelationID: "rr-2", Offset: 1, Limit: 1}, 10)
	require.NoError(t, err)
	defer cur2.Close(ctx)
	batch, err := cur2.Next(ctx)
	require.NoError(t, err)
	require.Len(t, batch, 1)
	require.Equal(t, int64(2), batch[0].ChainSeq)
}
