package store

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// unguarded is loneExtendSQL without its guard: the head UPDATE no longer
// checks that the head (and its open cell) is the one the event was
// linked to.
func unguarded(t *testing.T) string {
	t.Helper()
	guard := "AND a.last_seq = $30::int8 AND a.last_hash = $31::text AND " + cellUnchanged
	require.Contains(t, loneExtendSQL, guard)
	return strings.Replace(loneExtendSQL, guard, "AND $30::int8 IS NOT NULL AND $31::text IS NOT NULL", 1)
}

// Two writers link an event each to the same remembered head. The first
// holds its transaction open (its chain lock and head row with it); the
// second, started meanwhile, waits for it inside its one statement, whose
// snapshot is older than the first's commit. When the first commits, the
// second must write nothing (0: the caller reads the heads and relinks).
// With the guard removed, the head's append-only trigger (migration
// 00002) refuses the second head update, which would rewind it: the
// request fails (42501) where the guard made it relink. With that trigger
// disabled too, the second writer stores its event on top of the same
// predecessor: two events with one chain_seq, a forked chain.
func TestALoneEventThatLostTheRaceForItsHeadWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)

	for _, c := range []struct {
		corr             string
		guarded, trigger bool
	}{{"rr-race-guarded", true, true}, {"rr-race-unguarded", false, true}, {"rr-race-nothing", false, false}} {
		corr, guarded := c.corr, c.guarded
		if !c.trigger {
			_, err := st.pool.Exec(ctx, `ALTER TABLE audit_chain_heads DISABLE TRIGGER audit_chain_heads_forward`)
			require.NoError(t, err)
		}
		// A head to race for.
		first := overlapEvent(corr, time.Now().Add(-time.Minute))
		_, err = st.InsertEvents(ctx, []*audit.Event{first})
		require.NoError(t, err)
		expected := st.heads.get([]string{corr})
		require.EqualValues(t, 1, expected.seqs[0])

		statement := func(e *audit.Event) (string, []any) {
			canon, err := e.Canonical()
			require.NoError(t, err)
			heads := linkEvents(st.hasher, expected, []*audit.Event{e}, [][]byte{canon})
			sql, args, err := loneArgs(e, expected, heads, 1)
			require.NoError(t, err)
			if !guarded {
				sql = unguarded(t)
			}
			return sql, args
		}
		winner, loser := overlapEvent(corr, time.Now()), overlapEvent(corr, time.Now())
		tx, err := st.pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		sql, args := statement(winner)
		var n int64
		require.NoError(t, tx.QueryRow(ctx, sql, args...).Scan(&n))
		require.EqualValues(t, 1, n)

		conn, err := st.pool.Acquire(ctx)
		require.NoError(t, err)
		var pid int
		require.NoError(t, conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		done := make(chan insertResult, 1)
		go func() {
			sql, args := statement(loser)
			var n int64
			err := conn.QueryRow(ctx, sql, args...).Scan(&n)
			done <- insertResult{n, err}
		}()
		require.Eventually(t, func() bool {
			select {
			case r := <-done:
				require.Failf(t, "the second writer did not wait for the first", "%s: %d, %v", corr, r.n, r.err)
			default:
			}
			var waiting bool
			err := st.pool.QueryRow(ctx, `SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting)
			return err == nil && waiting
		}, 30*time.Second, 5*time.Millisecond, "the second writer never waited for the first")
		require.NoError(t, tx.Commit(ctx))
		lost := <-done
		conn.Release()

		var events, seqs int
		require.NoError(t, st.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT chain_seq) FROM audit_events WHERE correlation_id = $1`, corr).
			Scan(&events, &seqs))
		switch {
		case guarded:
			require.NoError(t, lost.err)
			assert.EqualValues(t, 0, lost.n, "the loser wrote")
			assert.Equal(t, 2, events)
			assert.Equal(t, 2, seqs)
			storedRollupsMatch(t, st)
		case c.trigger:
			require.Error(t, lost.err)
			assert.Contains(t, lost.err.Error(), "append-only")
			assert.Equal(t, 2, events)
		default:
			// What the guard's assertions above catch when it is gone.
			require.NoError(t, lost.err)
			assert.EqualValues(t, 1, lost.n)
			assert.Equal(t, 3, events)
			assert.Equal(t, 2, seqs, "forked: two events share a chain_seq")
		}
	}
}

// storedRollupsMatch checks both rollups against the events stored.
func storedRollupsMatch(t *testing.T, st *Store) {
	t.Helper()
	ctx := context.Background()
	var bad int
	require.NoError(t, st.pool.QueryRow(ctx, `
		SELECT count(*) FROM (
			SELECT date_trunc('hour', event_timestamp, 'UTC') AS b, correlation_id, coalesce(namespace, '') AS ns,
				coalesce(cluster_id, '') AS cl, count(*) AS n FROM audit_events GROUP BY 1, 2, 3, 4
		) e FULL JOIN (SELECT bucket, correlation_id, namespace, cluster_id, sum(events) AS events
			FROM audit_rollup_correlations_all GROUP BY 1, 2, 3, 4) r
			ON (r.bucket, r.correlation_id, r.namespace, r.cluster_id) = (e.b, e.correlation_id, e.ns, e.cl)
		WHERE e.n IS DISTINCT FROM r.events`).Scan(&bad))
	assert.Zero(t, bad, "correlation rollup rows that differ from the events")
	var hourly, events int64
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT (SELECT coalesce(sum(events), 0) FROM audit_rollup_hourly), (SELECT count(*) FROM audit_events)`).
		Scan(&hourly, &events))
	assert.Equal(t, events, hourly, "hourly rollup total")
}

// A lone event commits by loneSQL, not by the reading path: one statement
// that leaves the same chain, id row and rollups as the array path would.
func TestALoneEventTakesTheLoneStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	catcher := &sqlCounter{}
	st, err := Open(ctx, testenv.NewDatabase(t), Options{MaxConns: 2, Tracer: catcher})
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
	require.NoError(t, err)
	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30}
	for i := range 6 {
		e := overlapEvent("rr-lone-stmt", time.Now())
		if i%2 == 1 { // no event_id: the server makes it
			var fe audit.FieldErrors
			e, fe, err = v.DecodeOne(fmt.Appendf(nil, `{"version":"1.0","event_type":"gateway.signal.received","event_timestamp":%q,
				"event_category":"gateway","event_action":"received","event_outcome":"success",
				"correlation_id":"rr-lone-stmt","event_data":{"n":%d},"namespace":"ns-1"}`, time.Now().UTC().Format(time.RFC3339Nano), i))
			require.NoError(t, err)
			require.Empty(t, fe)
			require.True(t, e.ServerID())
		}
		n, err := st.InsertEvents(ctx, []*audit.Event{e})
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
	}
	assert.Equal(t, map[string]int{loneStartSQL: 1, loneExtendSQL: 5}, catcher.counts())
	var ids int
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT count(*) FROM audit_event_ids`).Scan(&ids))
	assert.Equal(t, 3, ids, "id rows: the client-given ids only")
	storedRollupsMatch(t, st)
}

// sqlCounter counts the write path's statements a store sends, by text.
type sqlCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *sqlCounter) count(sql string) {
	if sql != loneStartSQL && sql != loneExtendSQL && sql != commitEventsSQL && sql != smallSQL && sql != readHeadsSQL {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[sql]++
}

func (c *sqlCounter) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

func (c *sqlCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.count(d.SQL)
	return ctx
}
func (c *sqlCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *sqlCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *sqlCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.count(d.SQL)
}
func (c *sqlCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
