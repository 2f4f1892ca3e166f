package store

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/ingest"
	"kubernaut.ai/datastorage/internal/testenv"
)

// TestMeasureChainCost measures what the hash chains cost a batched writer,
// as `make bench`'s "chains on vs off" does, but with the variants
// interleaved round by round on one private, durable PostgreSQL (fsync on,
// pg_stat_statements loaded), so that a shared machine's load drifts over
// all of them alike, and with the figures that do not depend on that load:
// PostgreSQL's CPU (all its processes, /proc) and this process's CPU per
// event, WAL bytes per event, round trips and statements per commit.
// Skipped unless DATASTORAGE_CHAIN_MEASURE=1:
//
//	DATASTORAGE_CHAIN_MEASURE=1 go test ./internal/store/ -run TestMeasureChainCost -v -timeout 30m
//
// DATASTORAGE_CHAIN_SHAPES picks shapes (default "500x1,32x2"),
// DATASTORAGE_CHAIN_ROUNDS the rounds (default 4), DATASTORAGE_CHAIN_VARIANTS
// the variants (default all of the shape's).
func TestMeasureChainCost(t *testing.T) {
	if os.Getenv("DATASTORAGE_CHAIN_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_CHAIN_MEASURE=1 to measure what the chains cost")
	}
	ctx := context.Background()
	pg, postmaster := startMeasuredPostgres(t)
	url, err := pg.CreateDatabase(ctx, "chaincost")
	require.NoError(t, err)
	rt := &roundTrips{}
	st := measuredStore(t, url, Options{MaxConns: 4, Tracer: rt})
	admin, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { admin.Close(context.Background()) })
	_, err = admin.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
	require.NoError(t, err)

	gen := newChainEvents(1000)
	shapes := strings.Split(envOr("DATASTORAGE_CHAIN_SHAPES", "500x1,32x2"), ",")
	rounds, err := strconv.Atoi(envOr("DATASTORAGE_CHAIN_ROUNDS", "4"))
	require.NoError(t, err)
	want := os.Getenv("DATASTORAGE_CHAIN_VARIANTS")

	for _, shape := range shapes {
		var batch, writers int
		_, err := fmt.Sscanf(shape, "%dx%d", &batch, &writers)
		require.NoError(t, err)
		pipe := ingest.New(st, nil, ingest.Options{Writers: 2, MaxBatch: 2000}, nil, slog.New(slog.DiscardHandler))
		require.NoError(t, pipe.Start(ctx))
		// The small commits as they were before smallSQL (BEGIN, locks,
		// commitEventsSQL, COMMIT), on chains of their own.
		before, err := Open(ctx, url, Options{MaxConns: 4, Tracer: rt})
		require.NoError(t, err)
		before.smallMode = smallPipelined
		pipeBefore := ingest.New(before, nil, ingest.Options{Writers: 2, MaxBatch: 2000}, nil, slog.New(slog.DiscardHandler))
		require.NoError(t, pipeBefore.Start(ctx))
		variants := []struct {
			name  string
			write func([]*audit.Event) error
		}{
			{"off", func(ev []*audit.Event) error {
				stampUnchained(ev)
				_, err := st.InsertUnchained(ctx, ev)
				return err
			}},
			{"off-sameids", func(ev []*audit.Event) error {
				// As off, but keeping the server-made ids (dated by the
				// events' own timestamps) that the on variants write.
				for i, e := range ev {
					e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = int64(i+1), strings.Repeat("9f86d081", 8), nil, audit.AlgSHA256
				}
				_, err := st.InsertUnchained(ctx, ev)
				return err
			}},
			{"on-pipeline", func(ev []*audit.Event) error { _, err := pipe.Submit(ctx, ev); return err }},
			{"on-pipeline-pipelined", func(ev []*audit.Event) error {
				for _, e := range ev {
					e.CorrelationID = "before-" + e.CorrelationID
				}
				_, err := pipeBefore.Submit(ctx, ev)
				return err
			}},
			{"on-store", func(ev []*audit.Event) error { _, err := st.InsertEvents(ctx, ev); return err }},
			{"on-readingpath", func(ev []*audit.Event) error {
				conn, err := st.pool.Acquire(ctx)
				if err != nil {
					return err
				}
				defer conn.Release()
				canon := make([][]byte, len(ev))
				for i, e := range ev {
					if canon[i], err = e.Canonical(); err != nil {
						return err
					}
				}
				_, err = st.insertTx(ctx, conn.Conn(), ev, canon, false)
				if err != nil {
					rollback(conn.Conn())
				}
				return err
			}},
		}
		// Warm-up: every correlation has a head, rollup rows exist, plans are cached.
		for _, v := range variants {
			for range 4000 / batch {
				require.NoError(t, v.write(gen.next(batch)))
			}
		}
		type total struct {
			rows, rtrips       int64
			wall, goCPU, pgCPU time.Duration
			wal                int64
			copyNS, batchNS    int64
			stmts              map[string][2]float64
		}
		totals := map[string]*total{}
		perRound := 12000 / batch / writers
		for round := range rounds {
			order := slices.Clone(variants)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, v := range order {
				if want != "" && !slices.Contains(strings.Split(want, ","), v.name) {
					continue
				}
				work := make([][]*audit.Event, perRound*writers)
				for i := range work {
					work[i] = gen.next(batch)
				}
				tt := totals[v.name]
				if tt == nil {
					tt = &total{stmts: map[string][2]float64{}}
					totals[v.name] = tt
				}
				_, err := admin.Exec(ctx, `SELECT pg_stat_statements_reset()`)
				require.NoError(t, err)
				wal0, pg0, go0, rt0 := walLSN(t, admin), pgCPU(postmaster), selfCPU(), rt.n.Load()
				cp0, bt0 := rt.copy.Load(), rt.batch.Load()
				start := time.Now()
				var wg sync.WaitGroup
				next := make(chan []*audit.Event, len(work))
				for _, w := range work {
					next <- w
				}
				close(next)
				for range writers {
					wg.Go(func() {
						for ev := range next {
							require.NoError(t, v.write(ev))
						}
					})
				}
				wg.Wait()
				tt.wall += time.Since(start)
				tt.goCPU += selfCPU() - go0
				tt.pgCPU += pgCPU(postmaster) - pg0
				tt.wal += walLSN(t, admin) - wal0
				tt.rtrips += rt.n.Load() - rt0
				tt.copyNS += rt.copy.Load() - cp0
				tt.batchNS += rt.batch.Load() - bt0
				tt.rows += int64(len(work) * batch)
				time.Sleep(600 * time.Millisecond) // backends publish their counters
				rows, err := admin.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 70), calls, total_exec_time
					FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%xact_commit%'`)
				require.NoError(t, err)
				var q string
				var calls int64
				var ms float64
				_, err = pgx.ForEachRow(rows, []any{&q, &calls, &ms}, func() error {
					s := tt.stmts[q]
					s[0] += float64(calls)
					s[1] += ms
					tt.stmts[q] = s
					return nil
				})
				require.NoError(t, err)
			}
		}
		require.NoError(t, pipe.Stop(ctx))
		require.NoError(t, pipeBefore.Stop(ctx))
		before.Close()
		off := totals["off"]
		for _, v := range variants {
			tt := totals[v.name]
			if tt == nil {
				continue
			}
			n := float64(tt.rows)
			rate := n / tt.wall.Seconds()
			rel := ""
			if off != nil && v.name != "off" {
				rel = fmt.Sprintf(" (%.0f %% of off)", 100*rate/(float64(off.rows)/off.wall.Seconds()))
			}
			batches := n / float64(batch)
			t.Logf("%s %-15s %6.0f rows/s%s | Go CPU %5.1f µs/row | PostgreSQL CPU %5.1f µs/row | WAL %4.0f B/row | round trips/request %.2f | wall µs/row: all %.1f, in COPY %.1f, in pipelines %.1f",
				shape, v.name, rate, rel, float64(tt.goCPU.Microseconds())/n, float64(tt.pgCPU.Microseconds())/n,
				float64(tt.wal)/n, float64(tt.rtrips)/batches, float64(tt.wall.Microseconds())/n*float64(writers),
				float64(tt.copyNS)/1e3/n, float64(tt.batchNS)/1e3/n)
			var qs []string
			for q := range tt.stmts {
				qs = append(qs, q)
			}
			slices.SortFunc(qs, func(a, b string) int { return int(tt.stmts[b][1] - tt.stmts[a][1]) })
			for _, q := range qs[:min(8, len(qs))] {
				s := tt.stmts[q]
				t.Logf("      %7.0f calls %8.1f ms  %.1f µs/row  %s", s[0], s[1], s[1]*1000/n, q)
			}
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// roundTrips counts a store's round trips (each statement sent alone, each
// pipeline and each COPY) and the time spent in each kind.
type roundTrips struct {
	n     atomicInt64
	copy  atomicInt64 // ns in COPY
	batch atomicInt64 // ns in pipelines
}

type atomicInt64 struct {
	mu sync.Mutex
	v  int64
}

func (a *atomicInt64) Add(d int64) { a.mu.Lock(); a.v += d; a.mu.Unlock() }
func (a *atomicInt64) Load() int64 { a.mu.Lock(); defer a.mu.Unlock(); return a.v }

type startKey struct{}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return context.WithValue(ctx, startKey{}, time.Now())
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	if t, ok := ctx.Value(startKey{}).(time.Time); ok {
		r.batch.Add(int64(time.Since(t)))
	}
}
func (r *roundTrips) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	r.n.Add(1)
	return context.WithValue(ctx, startKey{}, time.Now())
}
func (r *roundTrips) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	if t, ok := ctx.Value(startKey{}).(time.Time); ok {
		r.copy.Add(int64(time.Since(t)))
	}
}

func walLSN(t *testing.T, conn *pgx.Conn) int64 {
	var n int64
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn`).Scan(&n))
	return n
}

// pgCPU sums the CPU time of the postmaster and its children, those that
// have exited included (the postmaster's cutime and cstime: autovacuum
// workers come and go within a measured window).
func pgCPU(postmaster int) time.Duration {
	var total int64
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
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += u + s
		if pid == postmaster {
			cu, _ := strconv.ParseInt(f[13], 10, 64)
			cs, _ := strconv.ParseInt(f[14], 10, 64)
			total += cu + cs
		}
	}
	return time.Duration(total) * 10 * time.Millisecond
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// chainEvents makes events shaped like dsbench's (some 600 bytes of
// event_data) over a fixed set of correlations, with server-made ids, in
// 8 namespaces and 4 clusters as dsbench's generator spreads them (the
// correlation rollup rows two commits share depend on it).
type chainEvents struct {
	rng   *rand.Rand
	corrs []string
}

func newChainEvents(n int) *chainEvents { return newChainEventsOf("rr", n) }

// newChainEventsOf is newChainEvents over correlations named with prefix:
// writers with distinct prefixes never share a chain.
func newChainEventsOf(prefix string, n int) *chainEvents {
	g := &chainEvents{rng: rand.New(rand.NewPCG(7, 11))}
	for i := range n {
		g.corrs = append(g.corrs, fmt.Sprintf("%s-%08x-%04d", prefix, uint64(i)*104729, i))
	}
	return g
}

func (g *chainEvents) next(n int) []*audit.Event {
	now := time.Now()
	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 2555}
	out := make([]*audit.Event, n)
	for i := range out {
		ts := now.Add(-time.Duration(g.rng.IntN(3600)) * time.Second)
		corr := g.corrs[g.rng.IntN(len(g.corrs))]
		body := fmt.Appendf(nil, `{"version":"1.0","event_type":"workflowexecution.step.completed","event_timestamp":%q,`+
			`"event_category":"workflowexecution","event_action":"executed","event_outcome":"success","correlation_id":%q,`+
			`"actor_type":"service","actor_id":"workflowexecution-service","resource_type":"workflowexecution","resource_id":%q,`+
			`"namespace":"ns-%d","cluster_id":"cluster-%d","severity":"info",`+
			`"event_data":{"event_type":"workflowexecution.step.completed","remediation_id":%q,"step":%d,"attempt":%d,`+
			`"workflow_id":"wf-oomkilled-%03d","reason":"OOMKilled","target_resource":{"kind":"Deployment","name":"payments-api-%x","namespace":"payments"},`+
			`"message":"phase %d of executed finished after %d probes; replicas %d/6 ready","detail":%q}}`,
			ts.UTC().Format(time.RFC3339Nano), corr, corr, g.rng.IntN(8), g.rng.IntN(4), corr, g.rng.IntN(12), 1+g.rng.IntN(3), g.rng.IntN(40), g.rng.Uint32(),
			g.rng.IntN(9), g.rng.IntN(50), g.rng.IntN(6), strings.Repeat("x", 180+g.rng.IntN(40)))
		e, fe, err := v.DecodeOne(body)
		if err != nil || len(fe) > 0 {
			panic(fmt.Sprint(err, fe))
		}
		out[i] = e
	}
	return out
}

func stampUnchained(events []*audit.Event) {
	for i, e := range events {
		e.ID = uuid.Must(uuid.NewV7())
		e.ChainSeq, e.Hash, e.PreviousHash, e.HashAlgorithm = int64(i+1), strings.Repeat("9f86d081", 8), nil, audit.AlgSHA256
	}
}

// argsOf keeps the arguments of the last execution of one statement.
type argsOf struct {
	sql  string
	mu   sync.Mutex
	args []any
}

func (a *argsOf) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if d.SQL == a.sql {
		a.mu.Lock()
		a.args = d.Args
		a.mu.Unlock()
	}
	return ctx
}
func (a *argsOf) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (a *argsOf) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (a *argsOf) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if d.SQL == a.sql {
		a.mu.Lock()
		a.args = d.Args
		a.mu.Unlock()
	}
}
func (a *argsOf) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestExplainBatchCommit prints the plan (auto_explain, ANALYZE) of the
// commit statement of a batch of DATASTORAGE_CHAIN_BATCH events (default
// 500) on tables warmed by a few thousand events, as insertOverlap or
// insertFast runs it, with its guard holding; rolled back. Skipped unless
// DATASTORAGE_CHAIN_MEASURE=1.
func TestExplainBatchCommit(t *testing.T) {
	if os.Getenv("DATASTORAGE_CHAIN_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_CHAIN_MEASURE=1")
	}
	ctx := context.Background()
	batch, err := strconv.Atoi(envOr("DATASTORAGE_CHAIN_BATCH", "500"))
	require.NoError(t, err)
	sql, expAt := commitAfterCopySQL, 3
	if batch < copyMinRows {
		sql, expAt = commitEventsSQL, 30
	}
	url := testenv.NewDatabase(t)
	catcher := &argsOf{sql: sql}
	st := measuredStore(t, url, Options{MaxConns: 2, Tracer: catcher})
	gen := newChainEvents(1000)
	for range 20000 / batch {
		_, err := st.InsertEvents(ctx, gen.next(batch))
		require.NoError(t, err)
	}
	args := slices.Clone(catcher.args)
	require.NotNil(t, args)
	// No expectations: the guard holds and every write runs.
	args[expAt], args[expAt+1] = []int64{}, []string{}
	if batch < copyMinRows {
		// Fresh ids for the rows themselves.
		ids := make([]pgtype.UUID, batch)
		for i := range ids {
			ids[i] = pgtype.UUID{Bytes: uuid.Must(uuid.NewV7()), Valid: true}
		}
		args[0] = ids
	}
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	var plans []string
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { plans = append(plans, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, q := range []string{`LOAD 'auto_explain'`, `SET auto_explain.log_min_duration = 0`, `SET auto_explain.log_analyze = on`,
		`SET auto_explain.log_nested_statements = on`, `SET auto_explain.log_level = notice`} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err)
	}
	for range 3 {
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, genericPlansSQL)
		require.NoError(t, err)
		plans = nil
		_, err = tx.Exec(ctx, sql, args...)
		require.NoError(t, err)
		require.NoError(t, tx.Rollback(ctx))
	}
	t.Logf("%s", strings.Join(plans, "\n"))
}
