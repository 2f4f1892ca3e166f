package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// firstMigration creates audit_events; its Down drops the table and every
// event with it, so a rollback stops above it (docs/operations.md,
// "Rollback").
const firstMigration = 1

// TestEveryDownMigrationKeepsEveryEventAndUpRestoresThem is the rollback
// drill of docs/operations.md: on a populated database it rolls back every
// migration above the first, one at a time and newest first, checking after
// each step that every event is still there; then it migrates up again and
// checks that every event reads exactly as before, every chain verifies,
// the rollups are exact and the store still writes. A migration added later
// is part of the drill automatically: its Down must keep the events too.
func TestEveryDownMigrationKeepsEveryEventAndUpRestoresThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t)
	now := time.Now().UTC().Add(-time.Hour)

	var events []*audit.Event
	for i, corr := range []string{"rr-rb-a", "rr-rb-a", "rr-rb-b", "rr-rb-c"} {
		e := newEvent(corr, now.Add(time.Duration(i)*time.Second), 30)
		if i == 2 {
			e.Namespace, e.Severity, e.ActorType, e.ActorID = "prod", "critical", "user", "alice"
		}
		events = append(events, e)
	}
	events = append(events, childOf(events[0], "rr-rb-a", now.Add(10*time.Second)))
	_, err := st.InsertEvents(ctx, events)
	require.NoError(t, err)
	_, err = st.PlaceHold(ctx, "rr-rb-c", "litigation", "auditor", now)
	require.NoError(t, err)
	before := apiForms(t, st)
	require.Len(t, before, len(events))

	status, err := st.MigrationStatus(ctx)
	require.NoError(t, err)
	var versions []int64
	for _, m := range status {
		require.True(t, m.Applied, "migration %d applied", m.Version)
		versions = append(versions, m.Version)
	}
	require.Greater(t, len(versions), 1)

	for i := len(versions) - 1; i > 0 && versions[i] > firstMigration; i-- {
		down := versions[i]
		t.Run(fmt.Sprintf("down %05d", down), func(t *testing.T) {
			n, err := st.MigrateDownTo(ctx, versions[i-1])
			require.NoError(t, err)
			require.Equal(t, 1, n, "exactly migration %d rolled back", down)
			var count int
			require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&count))
			assert.Equal(t, len(events), count, "the Down of %d kept every event", down)
		})
	}

	n, err := st.Migrate(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, len(versions)-1, n, "up again applies every migration above the first")
	assert.Equal(t, before, apiForms(t, st), "every event reads as before the rollback")
	for _, corr := range []string{"rr-rb-a", "rr-rb-b", "rr-rb-c"} {
		verifyChain(t, st, corr)
	}
	storetest.RequireRollupsMatchEvents(t, st)

	next := newEvent("rr-rb-a", now.Add(time.Minute), 30)
	_, err = st.InsertEvents(ctx, []*audit.Event{next})
	require.NoError(t, err)
	assert.EqualValues(t, 4, verifyChain(t, st, "rr-rb-a"), "the chain continues after the round trip")
}
