package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/query"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/store/storetest"
)

// rollupEvents are n events over the `span` before now, with every column
// the rollups keep drawn from a few values (namespace and cluster sometimes
// absent).
func rollupEvents(rng *rand.Rand, n int, now time.Time, span time.Duration) []*audit.Event {
	types := [][2]string{{"gateway.signal.received", "gateway"}, {"aiagent.llm.response", "aiagent"},
		{"workflow.step.done", "workflow"}, {"workflow.step.failed", "workflow"}}
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	out := make([]*audit.Event, n)
	for i := range out {
		ts := now.Add(-time.Duration(rng.Int64N(int64(span))))
		tc := types[rng.IntN(len(types))]
		e := newEvent(fmt.Sprintf("rr-roll-%d", rng.IntN(40)), ts, 30)
		e.Type, e.Category = tc[0], tc[1]
		e.Outcome = pick("success", "success", "failure", "pending")
		e.Severity = pick("info", "warning", "critical")
		e.Namespace = pick("", "payments", "checkout")
		e.ClusterID = pick("", "east", "west")
		out[i] = e
	}
	return out
}

// writeConcurrently stores events in batches of the given sizes from several
// goroutines at once, so the rollups are written under several shards and
// through both the unnest and the COPY path.
func writeConcurrently(t *testing.T, st *store.Store, events []*audit.Event, sizes ...int) {
	t.Helper()
	var batches [][]*audit.Event
	for i := 0; len(events) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(events))
		batches = append(batches, events[:n])
		events = events[n:]
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(batches))
	work := make(chan []*audit.Event)
	for range 4 {
		wg.Go(func() {
			for b := range work {
				if _, err := st.InsertEvents(context.Background(), b); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// truth answers each aggregation by counting audit_events directly, the
// way the store did before it had rollups.
type truth struct {
	t  *testing.T
	st *store.Store
}

func (tr truth) rows(sql string, args ...any) []string {
	tr.t.Helper()
	rows, err := tr.st.Pool().Query(context.Background(), sql, args...)
	require.NoError(tr.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		require.NoError(tr.t, err)
		out = append(out, fmt.Sprint(vals...))
	}
	require.NoError(tr.t, rows.Err())
	return out
}

const inWindow = ` FROM audit_events WHERE event_timestamp >= $1 AND event_timestamp <= $2`

func outcomes(c query.OutcomeCounts) string {
	return fmt.Sprint(c.Successes, c.Failures, c.Pending)
}

func TestAggregationsOverRollupsEqualCountsOfTheEvents(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	rng := rand.New(rand.NewPCG(1, 2))
	writeConcurrently(t, st, rollupEvents(rng, 3000, now, 70*time.Hour), 1, 7, 40, 250)
	storetest.RequireRollupsMatchEvents(t, st)

	var shards int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(DISTINCT shard) FROM audit_rollup_hourly`).Scan(&shards))
	assert.Greater(t, shards, 1, "concurrent commits write under shards of their own")

	tr := truth{t, st}
	hour := now.Truncate(time.Hour)
	windows := map[string]query.Window{
		"whole hours":             {From: hour.Add(-48 * time.Hour), To: hour.Add(-time.Microsecond)},
		"ragged edges":            {From: now.Add(-49*time.Hour - 17*time.Minute), To: now.Add(-3*time.Hour - 5*time.Minute)},
		"up to now":               {From: now.Add(-7 * 24 * time.Hour), To: now},
		"inside one hour":         {From: hour.Add(-5*time.Hour + 10*time.Minute), To: hour.Add(-5*time.Hour + 50*time.Minute)},
		"across one hour's start": {From: hour.Add(-5*time.Hour - 10*time.Minute), To: hour.Add(-5*time.Hour + 10*time.Minute)},
		"one whole hour, closed":  {From: hour.Add(-5 * time.Hour), To: hour.Add(-4 * time.Hour)},
	}
	for name, w := range windows {
		t.Run(name, func(t *testing.T) {
			tr.t = t
			args := []any{w.From, w.To}
			for _, f := range []query.SuccessFilter{{EventType: "workflow.step.failed"}, {EventCategory: "workflow"}} {
				got, err := st.CountOutcomes(ctx, w, f)
				require.NoError(t, err)
				col, v := "event_type", f.EventType
				if v == "" {
					col, v = "event_category", f.EventCategory
				}
				want := tr.rows(`SELECT count(*) FILTER (WHERE event_outcome = 'success'), count(*) FILTER (WHERE event_outcome = 'failure'),
					count(*) FILTER (WHERE event_outcome = 'pending')`+inWindow+` AND `+col+` = $3`, w.From, w.To, v)
				assert.Equal(t, want[0], outcomes(got), "success rate by %s", col)
			}

			ns, err := st.CountByNamespace(ctx, w)
			require.NoError(t, err)
			var gotNS []string
			for _, n := range ns {
				gotNS = append(gotNS, fmt.Sprint(n.Namespace, n.Remediations, n.Events))
			}
			assert.Equal(t, tr.rows(`SELECT namespace, count(DISTINCT correlation_id), count(*)`+inWindow+
				` AND namespace IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1`, args...), gotNS, "by-namespace")

			for _, interval := range []string{"hour", "day"} {
				points, err := st.Trend(ctx, w, interval)
				require.NoError(t, err)
				var got []string
				for _, p := range points {
					if p.Count > 0 {
						got = append(got, fmt.Sprint(p.Bucket.UTC().Format(time.RFC3339), p.Count, p.Failures))
					}
				}
				assert.Equal(t, tr.rows(`SELECT to_char(date_trunc('`+interval+`', event_timestamp), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
					count(*), count(*) FILTER (WHERE event_outcome = 'failure')`+inWindow+` GROUP BY 1 ORDER BY 1`, args...), got, "trend by %s", interval)
			}

			for _, cols := range [][]string{{"event_category", "event_outcome"}, {"severity"},
				{"event_type", "event_category", "event_outcome", "severity"}, {"namespace"}, {"cluster_id", "namespace"},
				{"namespace", "event_outcome"}} {
				groups, err := st.CountGroups(ctx, w, cols)
				require.NoError(t, err)
				var got []string
				for _, g := range groups {
					var keys []any
					for _, k := range g.Keys {
						if k == nil {
							keys = append(keys, nil)
						} else {
							keys = append(keys, *k)
						}
					}
					got = append(got, fmt.Sprint(append(keys, g.Count)...))
				}
				c := strings.Join(cols, ", ")
				want := tr.rows(`SELECT `+c+`, count(*)`+inWindow+` GROUP BY `+c+` ORDER BY count(*) DESC, `+c, args...)
				assert.Equal(t, want, got, "counts by %s", c)
			}
		})
	}
}

func TestRebuildRollupsRecountsWhatReachedTheTableAnotherWay(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	rng := rand.New(rand.NewPCG(3, 4))
	writeConcurrently(t, st, rollupEvents(rng, 800, now, 30*time.Hour), 13, 300)

	// Lose some counts, as a bulk load or an older version would.
	_, err := st.Pool().Exec(ctx, `DELETE FROM audit_rollup_hourly WHERE bucket < $1`, now.Add(-10*time.Hour))
	require.NoError(t, err)
	_, err = st.Pool().Exec(ctx, `UPDATE audit_rollup_correlations SET events = events + 5`)
	require.NoError(t, err)

	n, err := st.RebuildRollups(ctx, now.Add(-31*time.Hour), now.Add(time.Minute))
	require.NoError(t, err)
	assert.EqualValues(t, 800, n)
	storetest.RequireRollupsMatchEvents(t, st)
	var shards []int16
	rows, err := st.Pool().Query(ctx, `SELECT DISTINCT shard FROM audit_rollup_hourly`)
	require.NoError(t, err)
	for rows.Next() {
		var s int16
		require.NoError(t, rows.Scan(&s))
		shards = append(shards, s)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []int16{0}, shards, "a rebuilt range is one shard")

	// Writes go on adding to the rebuilt hours.
	more := rollupEvents(rng, 50, now, 20*time.Hour)
	writeConcurrently(t, st, more, 10)
	storetest.RequireRollupsMatchEvents(t, st)
	require.False(t, slices.ContainsFunc(more, func(e *audit.Event) bool { return e.ChainSeq == 0 }))
}

// RebuildRollups while writers commit to the hours it recounts, on every
// path (lone, small and COPY commits): a commit either lands before the
// rebuild's snapshot (it is in the recount, and its open cell is emptied)
// or waits for the rebuild's locks and adds after it. The counts stay exact
// and neither side deadlocks with the other (the rebuild locks the tables
// in the order the writers' statements name them).
func TestRebuildRollupsWhileWritersCommitStaysExact(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var commits atomic.Int64
	errs := make(chan error, 8)
	for w := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				events := rollupEvents(rng, []int{1, 3, 250}[w], now, 6*time.Hour)
				if _, err := st.InsertEvents(ctx, events); err != nil {
					errs <- err
					return
				}
				commits.Add(1)
			}
		})
	}
	for range 4 {
		// Each rebuild after some commits of every size, while more are
		// on their way.
		seen := commits.Load()
		require.Eventually(t, func() bool { return commits.Load() >= seen+6 || len(errs) > 0 }, time.Minute, time.Millisecond)
		_, err := st.RebuildRollups(ctx, now.Add(-7*time.Hour), now.Add(time.Minute))
		require.NoError(t, err)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	storetest.RequireRollupsMatchEvents(t, st)
}
