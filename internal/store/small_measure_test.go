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

// TestMeasureSmallCommit measures what PostgreSQL does for commits of a few
// events (what single c=64 sends: some 14 events a commit), by commit
// size, for the one statement (smallSQL), the pipeline it replaced (BEGIN,
// the chain locks, commitEventsSQL, COMMIT) and a naive writer's INSERT of
// the same rows in autocommit (no chains, no rollups: the floor of a commit
// of that many rows). The variants alternate round by round on one private,
// durable PostgreSQL (fsync on, pg_stat_statements loaded), each writer on
// chains of its own (as the ingest pipeline's claims keep concurrent
// commits apart), and are compared on figures a shared machine's load does
// not change: PostgreSQL's CPU (all its processes, /proc) per event and
// per commit, WAL bytes, statements, transactions and round trips per
// commit. Skipped unless DATASTORAGE_SMALL_MEASURE=1:
//
//	DATASTORAGE_SMALL_MEASURE=1 go test ./internal/store/ -run TestMeasureSmallCommit -v -timeout 30m
//
// DATASTORAGE_SMALL_SIZES picks the commit sizes (default
// "2,4,8,14,32,64,128"), DATASTORAGE_SMALL_WRITERS the concurrent writers
// (default 2, as the server's ingest.writers), DATASTORAGE_SMALL_ROUNDS the
// rounds (default 3), DATASTORAGE_SMALL_EVENTS the events per round and
// variant (default 2800), DATASTORAGE_SMALL_VARIANTS the variants (default
// all: one, one-generic, implicit, pipeline, naive).
func TestMeasureSmallCommit(t *testing.T) {
	if os.Getenv("DATASTORAGE_SMALL_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_SMALL_MEASURE=1 to measure small commits")
	}
	ctx := context.Background()
	pg, postmaster := startMeasuredPostgres(t)
	url, err := pg.CreateDatabase(ctx, "smallcommit")
	require.NoError(t, err)
	writers, err := strconv.Atoi(envOr("DATASTORAGE_SMALL_WRITERS", "2"))
	require.NoError(t, err)
	rounds, err := strconv.Atoi(envOr("DATASTORAGE_SMALL_ROUNDS", "3"))
	require.NoError(t, err)
	perRound, err := strconv.Atoi(envOr("DATASTORAGE_SMALL_EVENTS", "2800"))
	require.NoError(t, err)

	rtOne, rtPipe := &roundTrips{}, &roundTrips{}
	one, err := Open(ctx, url, Options{MaxConns: int32(writers), Tracer: rtOne})
	require.NoError(t, err)
	t.Cleanup(one.Close)
	one.smallMode = smallAlone
	_, err = one.Migrate(ctx, nil)
	require.NoError(t, err)
	_, err = one.EnsurePartitions(ctx, time.Now().AddDate(0, -35, 0), 37)
	require.NoError(t, err)
	pipe, err := Open(ctx, url, Options{MaxConns: int32(writers), Tracer: rtPipe})
	require.NoError(t, err)
	t.Cleanup(pipe.Close)
	pipe.smallMode = smallPipelined
	// The one statement again, on connections where every prepared
	// statement runs a generic plan (plan_cache_mode for the session): the
	// plans the one statement gets when PostgreSQL's own choice (auto)
	// goes for generic ones.
	rtGeneric := &roundTrips{}
	generic, err := Open(ctx, url+"&plan_cache_mode=force_generic_plan", Options{MaxConns: int32(writers), Tracer: rtGeneric})
	require.NoError(t, err)
	t.Cleanup(generic.Close)
	generic.smallMode = smallAlone
	rtImplicit := &roundTrips{}
	implicit, err := Open(ctx, url, Options{MaxConns: int32(writers), Tracer: rtImplicit})
	require.NoError(t, err)
	t.Cleanup(implicit.Close)
	naive, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(naive.Close)
	admin, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { admin.Close(context.Background()) })
	_, err = admin.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
	require.NoError(t, err)
	commits := func() int64 {
		var n int64
		require.NoError(t, admin.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n))
		return n
	}

	type variant struct {
		name  string
		rt    *roundTrips
		write func([]*audit.Event) error
	}
	variants := []variant{
		{"one", rtOne, func(ev []*audit.Event) error { _, err := one.InsertEvents(ctx, ev); return err }},
		{"one-generic", rtGeneric, func(ev []*audit.Event) error { _, err := generic.InsertEvents(ctx, ev); return err }},
		{"implicit", rtImplicit, func(ev []*audit.Event) error { _, err := implicit.InsertEvents(ctx, ev); return err }},
		{"pipeline", rtPipe, func(ev []*audit.Event) error { _, err := pipe.InsertEvents(ctx, ev); return err }},
		{"naive", nil, func(ev []*audit.Event) error {
			stampUnchained(ev)
			cols, err := batchColumns(ev)
			if err != nil {
				return err
			}
			_, err = naive.Exec(ctx, insertEventsSQL, cols...)
			return err
		}},
	}
	if want := os.Getenv("DATASTORAGE_SMALL_VARIANTS"); want != "" {
		variants = slices.DeleteFunc(variants, func(v variant) bool { return !slices.Contains(strings.Split(want, ","), v.name) })
	}
	gens := map[string][]*chainEvents{}
	for _, v := range variants {
		for w := range writers {
			// 1000 correlations over all writers, as dsbench's load.
			gens[v.name] = append(gens[v.name], newChainEventsOf(fmt.Sprintf("%s-w%d", v.name, w), 1000/writers))
		}
	}
	run := func(v variant, size, events int) {
		var wg sync.WaitGroup
		for w := range writers {
			work := make([][]*audit.Event, max(1, events/size/writers))
			for i := range work {
				work[i] = gens[v.name][w].next(size)
			}
			wg.Go(func() {
				for _, ev := range work {
					require.NoError(t, v.write(ev))
				}
			})
		}
		wg.Wait()
	}

	sizes := strings.Split(envOr("DATASTORAGE_SMALL_SIZES", "2,4,8,14,32,64,128"), ",")
	for _, sz := range sizes {
		size, err := strconv.Atoi(sz)
		require.NoError(t, err)
		for _, v := range variants { // warm-up: heads, rollup rows, plans
			run(v, size, 600)
		}
		type total struct {
			events, commits, statements, rtrips, fallbacks int64
			wall, pgCPU, goCPU                             time.Duration
			wal                                            int64
			stmts                                          map[string][2]float64
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
					tt = &total{stmts: map[string][2]float64{}}
					totals[v.name] = tt
				}
				_, err := admin.Exec(ctx, `SELECT pg_stat_statements_reset()`)
				require.NoError(t, err)
				time.Sleep(600 * time.Millisecond) // backends publish their counters
				var rt0 int64
				if v.rt != nil {
					rt0 = v.rt.n.Load()
				}
				c0, wal0, pg0, go0 := commits(), walLSN(t, admin), pgCPU(postmaster), selfCPU()
				start := time.Now()
				run(v, size, perRound)
				tt.wall += time.Since(start)
				tt.pgCPU += pgCPU(postmaster) - pg0
				tt.goCPU += selfCPU() - go0
				tt.wal += walLSN(t, admin) - wal0
				if v.rt != nil {
					tt.rtrips += v.rt.n.Load() - rt0
				}
				tt.events += int64(max(1, perRound/size/writers) * writers * size)
				time.Sleep(600 * time.Millisecond)
				tt.commits += commits() - c0 - 2 // the admin's own reads
				rows, err := admin.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 60), calls, total_exec_time
					FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%xact_commit%'
					AND query NOT LIKE '%pg_current_wal%'`)
				require.NoError(t, err)
				var q string
				var calls int64
				var ms float64
				_, err = pgx.ForEachRow(rows, []any{&q, &calls, &ms}, func() error {
					if q != "BEGIN" && q != "COMMIT" {
						tt.statements += calls
					}
					if strings.HasPrefix(q, "SELECT correlation_id, last_seq, last_hash FROM audit_chain_heads WHERE correlation_id = ANY($1)") {
						tt.fallbacks += calls
					}
					s := tt.stmts[q]
					s[0] += float64(calls)
					s[1] += ms
					tt.stmts[q] = s
					return nil
				})
				require.NoError(t, err)
			}
		}
		for _, v := range variants {
			tt := totals[v.name]
			n, c := float64(tt.events), float64(tt.events)/float64(size)
			t.Logf("%3d events/commit %-8s %6.0f events/s | PostgreSQL CPU %5.1f µs/event, %6.0f µs/commit | Go CPU %5.1f µs/event | WAL %4.0f B/event | transactions/commit %.2f | statements/commit %.2f | round trips/commit %.2f | reading-path fallbacks %d",
				size, v.name, n/tt.wall.Seconds(), float64(tt.pgCPU.Microseconds())/n, float64(tt.pgCPU.Microseconds())/c,
				float64(tt.goCPU.Microseconds())/n, float64(tt.wal)/n, float64(tt.commits)/c, float64(tt.statements)/c,
				float64(tt.rtrips)/c, tt.fallbacks)
			var qs []string
			for q := range tt.stmts {
				qs = append(qs, q)
			}
			slices.SortFunc(qs, func(a, b string) int { return int(1000 * (tt.stmts[b][1] - tt.stmts[a][1])) })
			for _, q := range qs[:min(4, len(qs))] {
				s := tt.stmts[q]
				t.Logf("      %7.0f calls, %5.0f µs/commit in it: %s", s[0], s[1]*1000/c, q)
			}
		}
	}
	// The plan the store's connections run (generic, as pgx prepares the
	// statement and PostgreSQL settles on after five executions), for a
	// commit of 14 events: rolled back.
	if gens["one"] == nil {
		return
	}
	ev := gens["one"][0].next(14)
	canon, err := canonicalForms(ev)
	require.NoError(t, err)
	expected := one.heads.get(corrsOf(ev))
	args, err := smallArgs(ev, expected, linkEvents(one.hasher, expected, ev, canon), 1)
	require.NoError(t, err)
	tx, err := admin.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`)
	require.NoError(t, err)
	rows, err := tx.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) `+smallSQL, args...)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	t.Logf("smallSQL, 14 events, generic plan:\n%s", strings.Join(plan, "\n"))
}
