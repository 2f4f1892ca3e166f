package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func requireSQLState(t *testing.T, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want SQLSTATE %s, got %v", code, err)
	assert.Equal(t, code, pgErr.Code, "%v", err)
}

// The standby streams the primary's writes, refuses its own, falls behind
// while replay is paused, catches up when resumed, and accepts writes once
// promoted.
func TestStandbyStreamsPausesAndPromotes(t *testing.T) {
	integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	primary := NewPostgres(t, WithReplication())
	standby := NewStandby(t, primary)
	require.NotEqual(t, primary.Port, standby.Port)
	in, err := standby.InRecovery(ctx)
	require.NoError(t, err)
	require.True(t, in, "a fresh standby is in recovery")

	pc := connect(t, primary.AdminURL())
	exec1(t, pc, `CREATE TABLE t (n int)`)
	exec1(t, pc, `INSERT INTO t VALUES (1)`)
	require.NoError(t, standby.WaitReplayed(ctx, primary))
	assert.Equal(t, 1, count(t, standby.AdminURL(), "t"), "the standby has the primary's row")

	sc := connect(t, standby.AdminURL())
	_, err = sc.Exec(ctx, `INSERT INTO t VALUES (2)`)
	requireSQLState(t, err, "25006")

	require.NoError(t, standby.PauseReplay(ctx))
	exec1(t, pc, `INSERT INTO t VALUES (3)`)
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	err = standby.WaitReplayed(short, primary)
	cancelShort()
	require.Error(t, err, "a paused standby does not catch up")
	assert.Equal(t, 1, count(t, standby.AdminURL(), "t"), "the paused standby does not show the new row")
	require.NoError(t, standby.ResumeReplay(ctx))
	require.NoError(t, standby.WaitReplayed(ctx, primary))
	assert.Equal(t, 2, count(t, standby.AdminURL(), "t"))

	// Failover: the primary crashes, the standby is promoted.
	require.NoError(t, primary.Kill())
	require.NoError(t, standby.Promote())
	in, err = standby.InRecovery(ctx)
	require.NoError(t, err)
	assert.False(t, in, "promoted")
	nc := connect(t, standby.AdminURL())
	exec1(t, nc, `INSERT INTO t VALUES (4)`)
	assert.Equal(t, 3, count(t, standby.AdminURL(), "t"))
}

// SetReadOnly fences a primary the way a switchover does: sessions already
// open and new ones get 25006 on writes, reads still work, and it can be
// undone.
func TestSetReadOnlyFencesOpenSessions(t *testing.T) {
	integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pg := NewPostgres(t)
	open := connect(t, pg.AdminURL())
	exec1(t, open, `CREATE TABLE t (n int)`)

	require.NoError(t, pg.SetReadOnly(ctx, true))
	fresh := connect(t, pg.AdminURL())
	_, err := fresh.Exec(ctx, `INSERT INTO t VALUES (1)`)
	requireSQLState(t, err, "25006")
	// The open session applies the reload at its next statement; the signal
	// is asynchronous, so wait for it rather than for a duration.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ro string
		require.NoError(t, open.QueryRow(ctx, `SHOW default_transaction_read_only`).Scan(&ro))
		if ro == "on" {
			break
		}
		require.False(t, time.Now().After(deadline), "the open session never saw the reload")
		time.Sleep(20 * time.Millisecond)
	}
	_, err = open.Exec(ctx, `INSERT INTO t VALUES (1)`)
	requireSQLState(t, err, "25006")
	assert.Equal(t, 0, count(t, pg.AdminURL(), "t"), "reads still work")

	require.NoError(t, pg.SetReadOnly(ctx, false))
	exec1(t, connect(t, pg.AdminURL()), `INSERT INTO t VALUES (1)`)
}

// A primary without WAL senders cannot feed a standby, and says how to fix it.
func TestStandbyNeedsReplication(t *testing.T) {
	integration(t)
	pg := NewPostgres(t, WithPostgresSetting("max_wal_senders", "0"))
	_, err := pg.StartStandby(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WithReplication")
}
