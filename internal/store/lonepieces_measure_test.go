package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// TestMeasureLonePieces splits what PostgreSQL spends on a lone event
// (loneSQL, single c=1) into its pieces, to say what stands between it and
// a naive writer's one INSERT (issue 15's single c=1 target). Four
// statements commit the same kind of event in autocommit, each on a
// connection and chains of its own, alternating in rounds:
//
//   - naive: one INSERT … VALUES of the row, as dsbench's naive writer;
//   - event: the row and its id check in loneSQL's shape (the id probe, the
//     event's INSERT, the id row's), no chain, no rollup;
//   - chain: loneSQL without the hourly rollup: the chain lock, the head's
//     UPDATE with its open cell, and a closed cell's correlation count;
//   - full: loneSQL as the store sends it (loneExtendSQL);
//   - same-cell: loneSameCellSQL, which the store sends instead when the
//     head's open cell is the event's and the hourly row is known to exist
//     (as every event here after its chain's first);
//   - nolock: same-cell without the chain lock (not safe beside the other
//     write paths: to see what the lock costs).
//
// So event − naive is the lone statement's shape, chain − event the hash
// chain's database side, full − chain the hourly rollup, full − same-cell
// what the general statement's unused parts cost. Each figure is the
// backend's own CPU (/proc/<pid>/schedstat, ns: its WAL flush included,
// the WAL writer's and checkpointer's work not) and the WAL it wrote, per
// event. Skipped unless DATASTORAGE_LONE_MEASURE=1:
//
//	DATASTORAGE_LONE_MEASURE=1 go test ./internal/store/ -run TestMeasureLonePieces -v -timeout 20m
//
// DATASTORAGE_LONE_ROUNDS (default 6) and DATASTORAGE_LONE_EVENTS (events
// per round and variant, default 1000) size it.
func TestMeasureLonePieces(t *testing.T) {
	if os.Getenv("DATASTORAGE_LONE_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_LONE_MEASURE=1 to measure the pieces of a lone commit")
	}
	ctx := context.Background()
	pg, _ := startMeasuredPostgres(t)
	rounds, err := strconv.Atoi(envOr("DATASTORAGE_LONE_ROUNDS", "6"))
	require.NoError(t, err)
	perRound, err := strconv.Atoi(envOr("DATASTORAGE_LONE_EVENTS", "1000"))
	require.NoError(t, err)
	url, err := pg.CreateDatabase(ctx, "lonepieces")
	require.NoError(t, err)
	st := measuredStore(t, url, Options{MaxConns: 2})

	// The pieces, cut out of loneExtendSQL so that they stay what the store
	// sends. A cut leaves parameters unused, which PostgreSQL cannot type:
	// the last line names them.
	tail := loneExtendSQL[strings.LastIndexByte(loneExtendSQL, '\n')+1:]
	cut := func(sql, from, to string) string {
		i, j := strings.Index(sql, from), strings.Index(sql, to)
		require.True(t, i > 0 && j > i, "cut %q … %q", from, to)
		return sql[:i] + sql[j:]
	}
	lp := newLoneParams(false)
	chainSQL := strings.TrimSuffix(cut(loneExtendSQL, "), hourly AS (", "), closed AS ("), tail) + tail + " WHERE " + lp.shard + " IS NOT NULL"
	cols := make([]string, len(insertColumns))
	for i := range cols {
		cols[i] = fmt.Sprintf("$%d", i+1)
	}
	vals := strings.Join(loneEventValues(), ", ")
	eventSQL := "WITH free AS MATERIALIZED (SELECT NOT EXISTS (SELECT 1 FROM audit_event_ids WHERE event_id = " + lp.id + ") AS ok" +
		"), event AS (INSERT INTO audit_events (" + strings.Join(insertColumns, ", ") + ") SELECT " + vals + " WHERE (SELECT ok FROM free)" +
		"), ids AS (INSERT INTO audit_event_ids (event_id, event_date) SELECT " + lp.id + ", $2::date WHERE " + lp.id + " IS NOT NULL AND (SELECT ok FROM free)" +
		") SELECT count(*) FROM free WHERE ok AND (" + strings.Join([]string{lp.expSeq, lp.expHash, lp.newHash, lp.bucket, lp.shard, lp.ns, lp.cluster}, ", ") + ") IS NOT NULL"
	// nolock: loneSameCellSQL without the chain lock.
	nolockSQL := strings.Replace(loneSameCellSQL, "pg_advisory_xact_lock(hashtextextended($9::text, 0)), ", "", 1)
	require.NotEqual(t, loneSameCellSQL, nolockSQL)
	naiveSQL := "INSERT INTO audit_events (" + strings.Join(insertColumns, ", ") + ") VALUES (" + strings.Join(cols, ", ") + ")"

	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30}
	type variant struct {
		name  string
		sql   string
		conn  *pgx.Conn
		pid   int
		heads *headCache
		seq   int
		cpu   time.Duration
		wal   int64
		n     int
	}
	variants := []*variant{{name: "naive", sql: naiveSQL}, {name: "event", sql: eventSQL}, {name: "chain", sql: chainSQL}, {name: "full", sql: loneExtendSQL}, {name: "same-cell", sql: loneSameCellSQL}, {name: "nolock", sql: nolockSQL}}
	for _, va := range variants {
		va.conn, err = pgx.Connect(ctx, url)
		require.NoError(t, err)
		conn := va.conn
		t.Cleanup(func() { conn.Close(context.Background()) })
		require.NoError(t, va.conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&va.pid))
		va.heads = newHeadCache()
	}
	// one commits the next event of va: 1,000 correlations of its own,
	// each in one namespace and cluster (as dsbench's default spread). A
	// chain starts with the full statement (loneStartSQL), so that every
	// measured event extends a head.
	one := func(va *variant) {
		va.seq++
		c := va.seq % 1000
		e, fe, err := v.DecodeOne(fmt.Appendf(nil, `{"version":"1.0","event_type":"aianalysis.analysis.completed","event_timestamp":%q,
			"event_category":"analysis","event_action":"completed","event_outcome":"success","namespace":"ns-%d","cluster_id":"c-%d",
			"correlation_id":"lone-%s-%d","event_data":{"signal":"OOMKilled","n":%d,"detail":%q}}`,
			time.Now().UTC().Format(time.RFC3339Nano), c%8, c%4, va.name, c, va.seq, strings.Repeat("x", 400)))
		require.NoError(t, err)
		require.Empty(t, fe)
		canon, err := e.Canonical()
		require.NoError(t, err)
		corrs := []string{e.CorrelationID}
		expected := va.heads.get(corrs)
		heads := linkEvents(st.hasher, expected, []*audit.Event{e}, [][]byte{canon})
		// A shard of its own: no variant prunes another's hourly row.
		sql, args, err := loneArgs(e, expected, heads, int16(slices.Index(variants, va)+1))
		require.NoError(t, err)
		switch {
		case va.name == "naive":
			sql, args = va.sql, args[:len(insertColumns)]
		case sql == loneExtendSQL:
			sql = va.sql
		}
		if va.name == "naive" {
			_, err := va.conn.Exec(ctx, sql, args...)
			require.NoError(t, err)
			va.heads.put(heads)
			return
		}
		rows, err := va.conn.Query(ctx, sql, args...)
		require.NoError(t, err, va.name)
		n, err := pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) (int64, error) {
			vals, err := r.Values()
			return vals[0].(int64), err
		})
		require.NoError(t, err, va.name)
		if n == 0 && sql != loneExtendSQL && sql != loneStartSQL {
			// The event's hour began since its chain's last one: the
			// same-cell statement wrote nothing, the general one follows.
			rows, err := va.conn.Query(ctx, loneExtendSQL, args...)
			require.NoError(t, err)
			rows.Close()
			n = 1
		}
		require.Equal(t, int64(1), n, "%s: the statement wrote nothing", va.name)
		va.heads.put(heads)
	}
	schedNS := func(pid int) time.Duration {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat")
		require.NoError(t, err)
		ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		require.NoError(t, err)
		return time.Duration(ns)
	}
	lsn := func() int64 {
		var n int64
		require.NoError(t, variants[0].conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn`).Scan(&n))
		return n
	}
	for range 2000 { // warm-up: every chain started, plans generic, rollup rows of the hour there
		for _, va := range variants {
			one(va)
		}
	}
	for round := range rounds {
		order := variants
		if round%2 == 1 {
			order = slices.Clone(variants)
			slices.Reverse(order)
		}
		for _, va := range order {
			c0, w0 := schedNS(va.pid), lsn()
			for range perRound {
				one(va)
			}
			va.cpu += schedNS(va.pid) - c0
			va.wal += lsn() - w0
			va.n += perRound
		}
	}
	base := variants[0]
	for _, va := range variants {
		t.Logf("%-9s backend CPU %4.0f µs/event (%+4.0f against naive), WAL %4.0f B/event (%+4.0f) — %d events",
			va.name, float64(va.cpu.Microseconds())/float64(va.n),
			float64(va.cpu.Microseconds())/float64(va.n)-float64(base.cpu.Microseconds())/float64(base.n),
			float64(va.wal)/float64(va.n), float64(va.wal)/float64(va.n)-float64(base.wal)/float64(base.n), va.n)
	}
}
