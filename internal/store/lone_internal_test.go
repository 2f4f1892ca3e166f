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
		corr                       string
		guarded, trigger, sameCell bool
	}{{"rr-race-guarded", true, true, false}, {"rr-race-same-cell", true, true, true},
		{"rr-race-unguarded", false, true, false}, {"rr-race-nothing", false, false, false}} {
		corr, guarded := c.corr, c.guarded
		if !c.trigger {
			_, err := st.pool.Exec(ctx, `ALTER TABLE audit_chain_heads DISABLE TRIGGER audit_chain_heads_forward`)
			require.NoError(t, err)
		}
		// A head to race for.
		// All three in one hour: one open cell.
		hour := time.Now().Truncate(time.Hour)
		first := overlapEvent(corr, hour)
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
			switch {
			case c.sameCell:
				// The winner counts in the hourly row of shard 1 first.
				sql = loneSameCellSQL
			case !guarded:
				sql = unguarded(t)
			}
			return sql, args
		}
		winner, loser := overlapEvent(corr, hour.Add(time.Second)), overlapEvent(corr, hour.Add(time.Second))
		tx, err := st.pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		sql, args := statement(winner)
		if c.sameCell {
			// loneSameCellSQL adds to an hourly row that exists.
			_, err := tx.Exec(ctx, `INSERT INTO audit_rollup_hourly (bucket, event_type, event_category, event_outcome, severity, shard, events)
				VALUES ($1, $2, $3, $4, $5, 1, 0) ON CONFLICT DO NOTHING`, rollupBucket(winner), winner.Type, winner.Category, winner.Outcome, winner.Severity)
			require.NoError(t, err)
		}
		n, err := loneCount(ctx, tx, sql, args)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)

		conn, err := st.pool.Acquire(ctx)
		require.NoError(t, err)
		var pid int
		require.NoError(t, conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		done := make(chan insertResult, 1)
		go func() {
			sql, args := statement(loser)
			n, err := loneCount(ctx, conn, sql, args)
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

// loneCount runs a lone statement (loneSQL, loneSameCellSQL) and returns
// its first column: the events it wrote.
func loneCount(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args []any) (int64, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return 0, err
	}
	return pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) (int64, error) {
		var n int64
		vals, err := r.Values()
		if err == nil {
			n = vals[0].(int64)
		}
		return n, err
	})
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

// A lone event in its head's open cell goes by loneSameCellSQL, which only
// adds to an hourly rollup row this process met before. RebuildRollups
// deletes the hour's rows and recounts them under shard 0: the next such
// event finds its row gone. The statement must then fail and leave nothing
// (its head, event and id would otherwise be written with the event
// uncounted), and loneSQL follow, which inserts the row: one event
// stored, counted once. With the failure taken away (the statement
// answering 1 when the row is missing), the event is stored and the hourly
// rollup misses it.
func TestALoneEventWhoseHourlyRowWasRebuiltAwayIsCountedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tracer := &commitTracer{}
	st := cellStore(t, Options{MaxConns: 2, Tracer: tracer})
	hour := time.Now().UTC().Truncate(time.Hour)
	corr := "rr-same-cell-rebuilt"
	write := func(minute int) {
		t.Helper()
		n, err := st.InsertEvents(ctx, []*audit.Event{cellEvent(corr, hour.Add(time.Duration(minute)*time.Minute), "a")})
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		storedRollupsMatch(t, st)
	}
	sqls := func(as []loneAttempt) (out []string) {
		for _, a := range as {
			name := map[string]string{loneStartSQL: "start", loneExtendSQL: "extend", loneSameCellSQL: "same-cell"}[a.sql]
			if a.err != nil {
				require.True(t, hourlyRowMissing(a.err), "%s: %v", name, a.err)
				name += " (row missing)"
			}
			out = append(out, name)
		}
		return out
	}

	write(1)
	assert.Equal(t, []string{"start"}, sqls(tracer.takeAttempts()))
	write(2)
	assert.Equal(t, []string{"same-cell"}, sqls(tracer.takeAttempts()))

	counted, err := st.RebuildRollups(ctx, hour, hour.Add(time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 2, counted)

	write(3)
	assert.Equal(t, []string{"same-cell (row missing)", "extend"}, sqls(tracer.takeAttempts()))
	write(4)
	assert.Equal(t, []string{"same-cell"}, sqls(tracer.takeAttempts()))

	var stored, hourly, cell int64
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE correlation_id = $1`, corr).Scan(&stored))
	require.NoError(t, st.pool.QueryRow(ctx, `SELECT sum(events) FROM audit_rollup_hourly WHERE bucket = $1`, hour).Scan(&hourly))
	_, _, cell, _ = openCell(t, st, corr)
	assert.EqualValues(t, 4, stored)
	assert.EqualValues(t, 4, hourly)
	assert.EqualValues(t, 2, cell, "the open cell after the rebuild emptied it")
}

// The head cache knows a head's open cell only from a lone commit, and
// forgets it when any other commit (which does not say what cell it left)
// or an optimistic one in flight moves the head: the same-cell statement
// is then not tried. hourlyRows starts over when full.
func TestTheHeadCacheKnowsAnOpenCellOnlyFromALoneCommit(t *testing.T) {
	hour := time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	cell := headCell{bucket: hour, ns: "a", cluster: "east"}
	heads := func(seq int64) chainHeads {
		return chainHeads{ids: []string{"c"}, seqs: []int64{seq}, hashes: []string{fmt.Sprint("h", seq)}}
	}
	c := newHeadCache()
	assert.False(t, c.inCell("c", cell), "no head")
	c.putLone(heads(1), cell)
	assert.True(t, c.inCell("c", cell))
	assert.True(t, c.inCell("c", headCell{bucket: hour.In(time.FixedZone("x", 3600)), ns: "a", cluster: "east"}), "the same hour in another zone")
	for _, other := range []headCell{{hour.Add(time.Hour), "a", "east"}, {hour, "b", "east"}, {hour, "a", "west"}, {}} {
		assert.False(t, c.inCell("c", other), "%v", other)
	}
	c.putLone(heads(2), headCell{})
	assert.False(t, c.inCell("c", cell), "a lone commit that kept an older cell open")
	c.putLone(heads(3), cell)
	c.put(heads(4))
	assert.False(t, c.inCell("c", cell), "another path moved the head")
	c.putLone(heads(5), cell)
	r, busy := c.reserve(audit.NewHasher(nil), []string{"c"}, []*audit.Event{overlapEvent("c", hour)}, [][]byte{[]byte("{}")}, nil)
	require.Nil(t, busy)
	assert.False(t, c.inCell("c", cell), "an optimistic commit in flight")
	c.settle(r, []*audit.Event{overlapEvent("c", hour)}, true)
	assert.False(t, c.inCell("c", cell), "the optimistic commit's cell is not known")

	var h hourlyRows
	first := hourlyRow{hourlyKey{bucket: hour, typ: "t0"}, 1}
	h.add(first)
	assert.True(t, h.has(first))
	assert.False(t, h.has(hourlyRow{first.key, 2}), "another shard")
	for i := 1; i < maxHourlyRows; i++ {
		h.add(hourlyRow{hourlyKey{bucket: hour, typ: fmt.Sprint("t", i)}, 1})
	}
	assert.True(t, h.has(first))
	h.add(hourlyRow{hourlyKey{bucket: hour, typ: "one more"}, 1})
	assert.False(t, h.has(first), "full: started over")
	h.forget(hourlyRow{hourlyKey{bucket: hour, typ: "one more"}, 1})
	assert.False(t, h.has(hourlyRow{hourlyKey{bucket: hour, typ: "one more"}, 1}))
}
