package store

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/audit"
	"kubernaut.ai/datastorage/internal/testenv"
)

// TestMeasureServerIDs measures what keeping no audit_event_ids row for
// server-made ids (ids.go) saves on the write path and costs on the reads
// that must then probe audit_events: WAL bytes per event (from the WAL
// insert position, load-independent), and for GET by id and the parent
// lookup PostgreSQL's own planning and execution time and shared buffers
// touched (EXPLAIN ANALYZE, BUFFERS; buffers are load-independent, times are
// not), at 36 monthly partitions, server-made ids against client-given v7
// ids (which keep their row: what every id cost before). Skipped unless
// DATASTORAGE_IDS_MEASURE=1:
//
//	DATASTORAGE_IDS_MEASURE=1 go test ./internal/store/ -run TestMeasureServerIDs -v
func TestMeasureServerIDs(t *testing.T) {
	if os.Getenv("DATASTORAGE_IDS_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_IDS_MEASURE=1 to measure server-made ids")
	}
	ctx := context.Background()
	st := measuredStore(t, testenv.NewDatabase(t), Options{MaxConns: 4})
	v := &audit.Validator{MaxAge: 7 * 24 * time.Hour, MaxSkew: time.Hour, DefaultRetentionDays: 30}
	seq := 0
	make1 := func(server bool) *audit.Event {
		seq++
		ts := time.Now().Add(-time.Duration(seq%5000) * time.Minute) // the last ~3.5 days
		body := fmt.Sprintf(`{"version":"1.0","event_type":"gateway.signal.received","event_timestamp":%q,
			"event_category":"gateway","event_action":"received","event_outcome":"success",
			"correlation_id":"rr-m-%d","event_data":{"signal":"OOMKilled","n":%d}}`, ts.UTC().Format(time.RFC3339Nano), seq%300, seq)
		ev, fe, err := v.DecodeOne([]byte(body))
		require.NoError(t, err)
		require.Empty(t, fe)
		if !server {
			// As the SDK does: a v7 id made at emit time, sent with the event.
			var c audit.Event
			raw, _ := json.Marshal(ev)
			require.NoError(t, json.Unmarshal(raw, &c))
			c.ID = uuid.Must(uuid.NewV7())
			c.Hash, c.PreviousHash, c.HashAlgorithm, c.ChainSeq = "", nil, "", 0
			ev = &c
		}
		return ev
	}
	batch := func(n int, server bool) []*audit.Event {
		out := make([]*audit.Event, n)
		for i := range out {
			out[i] = make1(server)
		}
		return out
	}
	lsn := func() int64 {
		var n int64
		require.NoError(t, st.pool.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn`).Scan(&n))
		return n
	}
	var kept = map[bool][]*audit.Event{}
	for range 4 { // warm-up, and events to look up later
		for _, server := range []bool{true, false} {
			b := batch(500, server)
			_, err := st.InsertEvents(ctx, b)
			require.NoError(t, err)
			kept[server] = append(kept[server], b...)
		}
	}
	for _, size := range []int{1, 500} {
		rounds := 200
		if size > 1 {
			rounds = 10
		}
		wal := map[bool]int64{}
		for range rounds {
			for _, server := range []bool{true, false} {
				w := lsn()
				_, err := st.InsertEvents(ctx, batch(size, server))
				require.NoError(t, err)
				wal[server] += lsn() - w
			}
		}
		n := float64(rounds * size)
		t.Logf("write, batches of %d: %.0f WAL B/event with server-made ids, %.0f with client-given ids (%.0f saved, %.1f %%)",
			size, float64(wal[true])/n, float64(wal[false])/n, float64(wal[false]-wal[true])/n,
			100*float64(wal[false]-wal[true])/float64(wal[false]))
	}

	conn, err := st.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	mode := os.Getenv("DATASTORAGE_IDS_PLAN_MODE") // auto (what the server runs), force_custom_plan, force_generic_plan
	if mode == "" {
		mode = "auto"
	}
	_, err = conn.Exec(ctx, `SELECT set_config('plan_cache_mode', $1, false)`, mode)
	require.NoError(t, err)
	t.Logf("plan_cache_mode %s", mode)
	type cost struct {
		plan, exec time.Duration
		buffers    int64
		n          int
	}
	explain := func(c *cost, sql string, args ...any) {
		var out []struct {
			Planning struct {
				Hit  int64 `json:"Shared Hit Blocks"`
				Read int64 `json:"Shared Read Blocks"`
			} `json:"Planning"`
			Plan struct {
				Hit  int64 `json:"Shared Hit Blocks"`
				Read int64 `json:"Shared Read Blocks"`
			} `json:"Plan"`
			PlanningTime  float64 `json:"Planning Time"`
			ExecutionTime float64 `json:"Execution Time"`
		}
		var plan string
		require.NoError(t, conn.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+sql, args...).Scan(&plan))
		require.NoError(t, json.Unmarshal([]byte(plan), &out))
		c.plan += time.Duration(out[0].PlanningTime * float64(time.Millisecond))
		c.exec += time.Duration(out[0].ExecutionTime * float64(time.Millisecond))
		c.buffers += out[0].Plan.Hit + out[0].Plan.Read
		c.n++
	}
	for _, q := range []struct {
		name string
		run  func(c *cost, e *audit.Event)
	}{
		{"GET by id, before (id table, InitPlan)", func(c *cost, e *audit.Event) {
			explain(c, getEventSQL, pgtype.UUID{Bytes: e.ID, Valid: true})
		}},
		{"GET by id, now (on the date the id names)", func(c *cost, e *audit.Event) {
			d, _ := audit.IDDate(e.ID)
			explain(c, getEventOnDateSQL, pgtype.UUID{Bytes: e.ID, Valid: true}, d.Std())
		}},
		{"parent lookup (bounded + probe)", func(c *cost, e *audit.Event) {
			from, to := parentWindowOf(e.Date.Std(), e.Date.Std())
			explain(c, recentParentsSQL, recentParentsArgs([]uuid.UUID{e.ID}, from, to)...)
		}},
		{"duplicate check (stored ids)", func(c *cost, e *audit.Event) {
			explain(c, storedIDsSQL, storedIDsArgs([]uuid.UUID{e.ID})...)
		}},
	} {
		costs := map[bool]*cost{true: {}, false: {}}
		for i := range 300 {
			for _, server := range []bool{true, false} {
				q.run(costs[server], kept[server][(i*7)%len(kept[server])])
			}
		}
		for _, server := range []bool{false, true} {
			c := costs[server]
			kind := map[bool]string{true: "server-made id (no id row: probe)", false: "client-given v7 id (id row, as before)"}[server]
			t.Logf("%s, %s: planning %.1f µs, execution %.1f µs, %.2f shared buffers per lookup (%d lookups)",
				q.name, kind, float64(c.plan.Nanoseconds())/float64(c.n)/1e3, float64(c.exec.Nanoseconds())/float64(c.n)/1e3,
				float64(c.buffers)/float64(c.n), c.n)
		}
	}
}
