package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// TestMeasureCommitFixedCost breaks down what PostgreSQL spends on a commit
// of single c=64's shape (issue 15: some 14 events on as many
// correlations, every 4th naming a parent), to tell the commit's fixed
// cost apart from its rows': the same commits with 0, 4 and 14 parents
// (each parent is one foreign-key check, audit_events_parent_fk, that
// PostgreSQL runs per row against the partitioned table), on a database
// with 36 monthly partitions (as dsbench's) and one with this month's
// alone, beside two floors on the same server: an autocommit
// INSERT of one tiny row (a statement, a commit record and its WAL flush)
// and SELECT 1 (a statement and no commit to flush). The variants
// alternate round by round, two writers each on correlations of their
// own, as the pipeline's two writers; the figures are PostgreSQL's CPU
// (/proc/<pid>/schedstat of the postmaster and its children, in ns), WAL
// bytes and pg_stat_statements (track all, so the foreign-key checks
// appear as statements of their own), none of which a shared machine's
// load changes much. Skipped unless DATASTORAGE_COMMIT_MEASURE=1:
//
//	DATASTORAGE_COMMIT_MEASURE=1 go test ./internal/store/ -run TestMeasureCommitFixedCost -v -timeout 30m
//
// DATASTORAGE_COMMIT_ROUNDS (default 3) and DATASTORAGE_COMMIT_COMMITS
// (commits per round, variant and writer; default 150) size it;
// DATASTORAGE_COMMIT_VARIANTS picks variants by name (e.g. 36p-4par, to
// profile one with perf).
func TestMeasureCommitFixedCost(t *testing.T) {
	if os.Getenv("DATASTORAGE_COMMIT_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_COMMIT_MEASURE=1 to measure a commit's fixed cost")
	}
	ctx := context.Background()
	pg, postmaster := startMeasuredPostgres(t)
	rounds, err := strconv.Atoi(envOr("DATASTORAGE_COMMIT_ROUNDS", "3"))
	require.NoError(t, err)
	perRound, err := strconv.Atoi(envOr("DATASTORAGE_COMMIT_COMMITS", "150"))
	require.NoError(t, err)
	const writers, size = 2, 14

	open := func(name string, partitions bool) (*Store, *pgx.Conn, int) {
		url, err := pg.CreateDatabase(ctx, name)
		require.NoError(t, err)
		st, err := Open(ctx, url, Options{MaxConns: writers + 1})
		require.NoError(t, err)
		t.Cleanup(st.Close)
		_, err = st.Migrate(ctx, nil)
		require.NoError(t, err)
		// 36 months up to this one, or this month's alone.
		from, ahead := time.Now(), 0
		if partitions {
			from, ahead = time.Now().AddDate(0, -35, 0), 35
		}
		_, err = st.EnsurePartitions(ctx, from, ahead)
		require.NoError(t, err)
		admin, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		t.Cleanup(func() { admin.Close(context.Background()) })
		_, err = admin.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
		require.NoError(t, err)
		_, err = admin.Exec(ctx, `CREATE TABLE commit_floor (v int)`)
		require.NoError(t, err)
		var n int
		require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass`).Scan(&n))
		return st, admin, n
	}
	many, manyAdmin, manyParts := open("many", true)
	few, _, fewParts := open("few", false)
	t.Logf("partitions of audit_events: %d and %d", manyParts, fewParts)

	type variant struct {
		name string
		// commit writes writer w's next commit; prev is the writer's
		// previous commit (nil before the first), whose events the
		// parents name.
		commit func(w int, prev []*audit.Event) ([]*audit.Event, error)
		events int // per commit
		// commits is the number of commits per round and writer (0: the
		// round's perRound).
		commits int
	}
	withParents := func(name string, st *Store, parents int) variant {
		gens := make([]*chainEvents, writers)
		for w := range gens {
			gens[w] = newChainEventsOf(fmt.Sprintf("%s-w%d", name, w), 1000/writers)
		}
		return variant{name: name, events: size, commit: func(w int, prev []*audit.Event) ([]*audit.Event, error) {
			ev := gens[w].next(size)
			for i := range min(parents, len(prev)) {
				// Spread over the commit as dsbench's every 4th.
				k := i * size / parents
				p := prev[i]
				id := p.ID
				ev[k].ParentID = &id
				ev[k].ResolveParent(p.Date)
			}
			_, err := st.InsertEvents(ctx, ev)
			return ev, err
		}}
	}
	floor := func(name, sql string) variant {
		conns := make([]*pgx.Conn, writers)
		for w := range conns {
			c, err := pgx.Connect(ctx, manyAdmin.Config().ConnString())
			require.NoError(t, err)
			t.Cleanup(func() { c.Close(context.Background()) })
			conns[w] = c
		}
		return variant{name: name, events: 1, commit: func(w int, _ []*audit.Event) ([]*audit.Event, error) {
			_, err := conns[w].Exec(ctx, sql)
			return nil, err
		}}
	}
	// What any commit of those rows costs, without chains, rollups or
	// ids: the naive writer's INSERT through unnest in autocommit, and
	// COPY in a transaction, by 14 and by 500 rows.
	naivePool, err := pgxpool.New(ctx, manyAdmin.Config().ConnString())
	require.NoError(t, err)
	t.Cleanup(naivePool.Close)
	naive := func(name string, rows int, copyRows bool) variant {
		gens := make([]*chainEvents, writers)
		for w := range gens {
			gens[w] = newChainEventsOf(fmt.Sprintf("%s-w%d", name, w), 1000/writers)
		}
		return variant{name: name, events: rows, commits: max(1, perRound*size/rows), commit: func(w int, _ []*audit.Event) ([]*audit.Event, error) {
			ev := gens[w].next(rows)
			stampUnchained(ev)
			if !copyRows {
				cols, err := batchColumns(ev)
				if err != nil {
					return nil, err
				}
				_, err = naivePool.Exec(ctx, insertEventsSQL, cols...)
				return nil, err
			}
			return nil, pgx.BeginFunc(ctx, naivePool, func(tx pgx.Tx) error {
				_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, insertColumns, &eventRows{events: ev})
				return err
			})
		}}
	}
	variants := []variant{
		withParents(fmt.Sprintf("%dp-0par", manyParts), many, 0),
		withParents(fmt.Sprintf("%dp-4par", manyParts), many, 4),
		withParents(fmt.Sprintf("%dp-14par", manyParts), many, 14),
		withParents(fmt.Sprintf("%dp-0par", fewParts), few, 0),
		withParents(fmt.Sprintf("%dp-4par", fewParts), few, 4),
		withParents(fmt.Sprintf("%dp-14par", fewParts), few, 14),
		naive("naive-unnest-14", size, false),
		naive("naive-copy-14", size, true),
		naive("naive-copy-500", 500, true),
		floor("floor-insert", `INSERT INTO commit_floor VALUES (1)`),
		floor("floor-select", `SELECT 1`),
	}
	if want := os.Getenv("DATASTORAGE_COMMIT_VARIANTS"); want != "" {
		variants = slices.DeleteFunc(variants, func(v variant) bool { return !slices.Contains(strings.Split(want, ","), v.name) })
	}
	prev := map[string][][]*audit.Event{}
	// scaled is v's share of n commits: n, or v.commits scaled to n.
	scaled := func(v variant, n int) int {
		if v.commits == 0 {
			return n
		}
		return max(1, n*v.commits/perRound)
	}
	run := func(v variant, commits int) {
		commits = scaled(v, commits)
		if prev[v.name] == nil {
			prev[v.name] = make([][]*audit.Event, writers)
		}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for range commits {
					ev, err := v.commit(w, prev[v.name][w])
					require.NoError(t, err)
					prev[v.name][w] = ev
				}
			})
		}
		wg.Wait()
	}
	for _, v := range variants { // warm-up: heads, rollup rows, plans
		run(v, 40)
	}

	type total struct {
		commits       int64
		pgCPU         time.Duration
		wal           int64
		riCalls, riMs float64
		stmtCalls     float64
		topMs         map[string]float64
		topCalls      map[string]float64
		wall          time.Duration
	}
	totals := map[string]*total{}
	for round := range rounds {
		order := slices.Clone(variants)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			tt := totals[v.name]
			if tt == nil {
				tt = &total{topMs: map[string]float64{}, topCalls: map[string]float64{}}
				totals[v.name] = tt
			}
			_, err := manyAdmin.Exec(ctx, `SELECT pg_stat_statements_reset()`)
			require.NoError(t, err)
			wal0, cpu0, start := walLSN(t, manyAdmin), pgSchedCPU(postmaster), time.Now()
			run(v, perRound)
			tt.wall += time.Since(start)
			tt.pgCPU += pgSchedCPU(postmaster) - cpu0
			tt.wal += walLSN(t, manyAdmin) - wal0
			tt.commits += int64(scaled(v, perRound) * writers)
			rows, err := manyAdmin.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 70), calls, total_exec_time
				FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_current_wal%'`)
			require.NoError(t, err)
			var q string
			var calls int64
			var ms float64
			_, err = pgx.ForEachRow(rows, []any{&q, &calls, &ms}, func() error {
				if strings.HasPrefix(q, `SELECT 1 FROM "public"."audit_events" x`) { // the RI trigger's query
					tt.riCalls += float64(calls)
					tt.riMs += ms
				}
				tt.stmtCalls += float64(calls)
				tt.topMs[q] += ms
				tt.topCalls[q] += float64(calls)
				return nil
			})
			require.NoError(t, err)
		}
	}
	for _, v := range variants {
		tt := totals[v.name]
		c := float64(tt.commits)
		ri := "–"
		if tt.riCalls > 0 {
			ri = fmt.Sprintf("%.2f/commit, %.1f µs each (exec time)", tt.riCalls/c, tt.riMs*1000/tt.riCalls)
		}
		t.Logf("%-13s PostgreSQL CPU %6.0f µs/commit, %5.1f µs/event | WAL %6.0f B/commit | statements/commit %.2f | FK checks %s | %.0f commits/s",
			v.name, float64(tt.pgCPU.Microseconds())/c, float64(tt.pgCPU.Microseconds())/c/float64(v.events),
			float64(tt.wal)/c, tt.stmtCalls/c, ri, c/tt.wall.Seconds())
		var qs []string
		for q := range tt.topMs {
			qs = append(qs, q)
		}
		slices.SortFunc(qs, func(a, b string) int { return int(1000 * (tt.topMs[b] - tt.topMs[a])) })
		for _, q := range qs[:min(5, len(qs))] {
			t.Logf("      %6.2f calls/commit, %6.0f µs/commit exec: %s", tt.topCalls[q]/c, tt.topMs[q]*1000/c, q)
		}
	}
}

// pgSchedCPU is pgCPU with the nanosecond run time of /proc/<pid>/schedstat
// for the live processes (pgCPU's clock ticks truncate each process's
// time to 10 ms, too coarse for a window of a few hundred commits), plus
// the postmaster's reaped children in clock ticks.
func pgSchedCPU(postmaster int) time.Duration {
	var total time.Duration
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ppid, _ := strconv.Atoi(f[1])
		if pid != postmaster && ppid != postmaster {
			continue
		}
		if s, err := os.ReadFile("/proc/" + e.Name() + "/schedstat"); err == nil {
			ns, _ := strconv.ParseInt(strings.Fields(string(s))[0], 10, 64)
			total += time.Duration(ns)
		}
		if pid == postmaster {
			cu, _ := strconv.ParseInt(f[13], 10, 64)
			cs, _ := strconv.ParseInt(f[14], 10, 64)
			total += time.Duration(cu+cs) * 10 * time.Millisecond
		}
	}
	return total
}
