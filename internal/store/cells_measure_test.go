package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
)

// TestMeasureCorrelationRows measures, per event, the rows a commit
// inserts and updates in each table (PostgreSQL's own counters,
// pg_stat_user_tables), its WAL and PostgreSQL's CPU, for commits of 1
// (one writer), 14 (four writers) and 500 events (two writers) over 1,000
// correlations, with two ways of spreading a correlation's events:
//
//   - dsbench: as cmd/dsbench's generator does, each event in a random
//     one of 8 namespaces and 4 clusters, stamped anywhere in the hour
//     before now (so over two UTC hours);
//   - remediation: each correlation in one namespace and cluster (a
//     remediation acts on one workload), stamped when it is written, as
//     the platform's buffered clients send them;
//   - fixed-ns: each correlation in one namespace and cluster, stamped
//     anywhere in the hour before now as dsbench stamps them.
//
// It only uses what every version of the store has (InsertEvents), so the
// same file measures a tree before migration 00012 and after: run it in
// both, alternately. Skipped unless DATASTORAGE_CELLS_MEASURE=1:
//
//	DATASTORAGE_CELLS_MEASURE=1 go test ./internal/store/ -run TestMeasureCorrelationRows -v -timeout 30m
func TestMeasureCorrelationRows(t *testing.T) {
	if os.Getenv("DATASTORAGE_CELLS_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_CELLS_MEASURE=1 to measure the rows a commit writes per correlation")
	}
	ctx := context.Background()
	pg, postmaster := startMeasuredPostgres(t, [2]string{"shared_buffers", "512MB"}, [2]string{"checkpoint_timeout", "30min"},
		[2]string{"autovacuum", "off"})

	namespaces := []string{"payments", "checkout", "inventory", "search", "auth", "ledger", "edge", "batch"}
	clusters := []string{"prod-eu-1", "prod-us-1", "prod-us-2", "staging-1"}
	const corrs = 1000
	spreads := []string{"dsbench", "remediation", "fixed-ns"}
	if v := os.Getenv("DATASTORAGE_CELLS_SPREADS"); v != "" {
		spreads = strings.Split(v, ",")
	}
	for _, spread := range spreads {
		for _, shape := range []struct{ batch, writers, commits int }{{1, 1, 3000}, {14, 4, 800}, {500, 2, 100}} {
			url, err := pg.CreateDatabase(ctx, fmt.Sprintf("cells_%s_%d", strings.ReplaceAll(spread, "-", "_"), shape.batch))
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(uint64(shape.batch), 5))
			next := func(n int) []*audit.Event {
				out := make([]*audit.Event, n)
				now := time.Now()
				for i := range out {
					c := rng.IntN(corrs)
					corr := fmt.Sprintf("rr-%08x-%04d", uint64(c)*104729, c)
					ts := now.Add(-time.Duration(rng.IntN(2000)) * time.Millisecond)
					ns, cl := namespaces[c%len(namespaces)], clusters[c/len(namespaces)%len(clusters)]
					switch spread {
					case "dsbench":
						ts = now.Add(-time.Duration(rng.IntN(3600_000)) * time.Millisecond)
						ns, cl = namespaces[rng.IntN(len(namespaces))], clusters[rng.IntN(len(clusters))]
					case "fixed-ns":
						ts = now.Add(-time.Duration(rng.IntN(3600_000)) * time.Millisecond)
					}
					e := overlapEvent(corr, ts)
					e.ID = audit.NewServerID(audit.NewTime(ts))
					e.Namespace, e.ClusterID = ns, cl
					e.Type = []string{"gateway.signal.received", "workflowexecution.step.completed", "aiagent.recommendation.created"}[rng.IntN(3)]
					out[i] = e
				}
				return out
			}
			// Warm-up: every correlation has a head and rows in the
			// rollups; the measured commits then find what a running
			// system finds.
			st, err := Open(ctx, url, Options{MaxConns: int32(shape.writers + 1)})
			require.NoError(t, err)
			_, err = st.Migrate(ctx, nil)
			require.NoError(t, err)
			_, err = st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), 2)
			require.NoError(t, err)
			warm := 10*500 + 200/shape.batch*shape.batch
			for range 10 {
				_, err := st.InsertEvents(ctx, next(500))
				require.NoError(t, err)
			}
			for range 200 / shape.batch {
				_, err := st.InsertEvents(ctx, next(shape.batch))
				require.NoError(t, err)
			}
			admin, err := pgx.Connect(ctx, url)
			require.NoError(t, err)
			_, err = admin.Exec(ctx, `VACUUM ANALYZE`)
			require.NoError(t, err)
			before := tableCounters(t, admin, int64(warm))
			wal0, pg0 := walLSN(t, admin), pgCPU(postmaster)
			work := make(chan []*audit.Event, shape.commits)
			for range shape.commits {
				work <- next(shape.batch)
			}
			close(work)
			start := time.Now()
			var wg sync.WaitGroup
			for range shape.writers {
				wg.Go(func() {
					for ev := range work {
						_, err := st.InsertEvents(ctx, ev)
						require.NoError(t, err)
					}
				})
			}
			wg.Wait()
			wall := time.Since(start)
			// The backends publish their counters when they exit.
			st.Close()
			n := float64(shape.batch * shape.commits)
			after := tableCounters(t, admin, before["audit_events"][0]+int64(n))
			wal, cpu := walLSN(t, admin)-wal0, pgCPU(postmaster)-pg0
			admin.Close(ctx)
			var parts []string
			for _, tbl := range []string{"audit_chain_heads", "audit_rollup_correlations", "audit_rollup_hourly"} {
				a, b := after[tbl], before[tbl]
				parts = append(parts, fmt.Sprintf("%s ins %.3f upd %.3f (HOT %.3f)", strings.TrimPrefix(tbl, "audit_"),
					float64(a[0]-b[0])/n, float64(a[1]-b[1])/n, float64(a[2]-b[2])/n))
			}
			var upd int64
			for tbl, a := range after {
				upd += a[1] - before[tbl][1]
			}
			t.Logf("%-11s batch %3d × %d | rows updated %.3f/event | %s | WAL %4.0f B/event | PostgreSQL CPU %5.1f µs/event | %6.0f events/s (indicative)",
				spread, shape.batch, shape.writers, float64(upd)/n, strings.Join(parts, " | "), float64(wal)/n,
				float64(cpu.Microseconds())/n, n/wall.Seconds())
		}
	}
}

// tableCounters reads inserted, updated and HOT-updated rows per table
// (audit_events summed over its partitions), once audit_events shows at
// least wantEvents inserted rows: the backends that wrote them have
// published their counters by then.
func tableCounters(t *testing.T, conn *pgx.Conn, wantEvents int64) map[string][3]int64 {
	t.Helper()
	ctx := context.Background()
	for {
		_, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`)
		require.NoError(t, err)
		rows, err := conn.Query(ctx, `SELECT CASE WHEN relname LIKE 'audit_events_%' THEN 'audit_events' ELSE relname END,
			sum(n_tup_ins)::bigint, sum(n_tup_upd)::bigint, sum(n_tup_hot_upd)::bigint
			FROM pg_stat_user_tables GROUP BY 1`)
		require.NoError(t, err)
		out := map[string][3]int64{}
		var name string
		var c [3]int64
		_, err = pgx.ForEachRow(rows, []any{&name, &c[0], &c[1], &c[2]}, func() error {
			out[name] = c
			return nil
		})
		require.NoError(t, err)
		if out["audit_events"][0] >= wantEvents {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}
