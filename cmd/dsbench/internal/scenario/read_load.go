package scenario

// The read benchmark's load (`dsbench -read`): the events of
// internal/benchdata, generated inside PostgreSQL in chunks of correlations,
// two sessions in parallel.
//
// To load in minutes rather than hours, the secondary indexes of
// audit_events are dropped before the load and re-created (same
// definitions, read back from pg_indexes) afterwards, and the parent foreign
// key is not checked during the load (session_replication_role = replica;
// the generator only names parents it also writes). Indexes built in one go
// are more compact than indexes grown by random inserts (see the report).

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/cmd/dsbench/internal/harness"
	"kubernaut.ai/datastorage/internal/benchdata"
	"kubernaut.ai/datastorage/internal/store"
)

type loadStats struct {
	events      int64
	corrs       int
	start, end  time.Time
	insert      time.Duration
	index       time.Duration
	vacuum      time.Duration
	rollups     time.Duration
	indexDefs   []string
	avgDataText float64
	avgDataCol  float64
}

// loadReadData fills audit_events with about `events` events over the last 30 days.
func loadReadData(ctx context.Context, e *harness.Env, events int64) (loadStats, error) {
	st := loadStats{corrs: int(max(events/benchdata.EventsPerCorrelation, 1))}
	st.end = time.Now().UTC().Add(-time.Hour)
	st.start = st.end.Add(-benchdata.Days * 24 * time.Hour)
	spacing := (float64(benchdata.Days*24*3600) - float64(benchdata.EventsPerCorrelation*benchdata.StepSeconds*2)) / float64(st.corrs)

	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		return st, err
	}
	defer conn.Close(context.Background())
	// Partitions for every month the data touches (the server makes last
	// month's and the coming ones; this is belt and braces).
	for m := time.Date(st.start.Year(), st.start.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(st.end); m = m.AddDate(0, 1, 0) {
		name := fmt.Sprintf("audit_events_y%04dm%02d", m.Year(), int(m.Month()))
		if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF audit_events FOR VALUES FROM ('%s') TO ('%s')`,
			name, m.Format(time.DateOnly), m.AddDate(0, 1, 0).Format(time.DateOnly))); err != nil {
			return st, fmt.Errorf("partition %s: %w", name, err)
		}
	}
	// Secondary indexes of the partitioned table (the primary key stays).
	rows, err := conn.Query(ctx, `SELECT i.indexname, i.indexdef FROM pg_indexes i
		WHERE i.tablename = 'audit_events' AND i.indexname <> 'audit_events_pkey' ORDER BY 1`)
	if err != nil {
		return st, err
	}
	var names []string
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			return st, err
		}
		// pg_indexes shows a partitioned table's index as "ON ONLY", which
		// would build nothing on the partitions.
		d = strings.Replace(d, " ON ONLY ", " ON ", 1)
		names, st.indexDefs = append(names, n), append(st.indexDefs, d)
	}
	if err := rows.Err(); err != nil {
		return st, err
	}
	for _, n := range names {
		if _, err := conn.Exec(ctx, "DROP INDEX "+pgx.Identifier{n}.Sanitize()); err != nil {
			return st, fmt.Errorf("drop %s: %w", n, err)
		}
	}

	harness.Logf("loading %d correlations (~%d events) over %s … %s, 2 sessions", st.corrs, int64(st.corrs)*benchdata.EventsPerCorrelation,
		st.start.Format(time.DateTime), st.end.Format(time.DateTime))
	t0 := time.Now()
	sqlText := benchdata.InsertSQL()
	var next atomic.Int64
	next.Store(1)
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, e.DBURL)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for _, s := range []string{"SET session_replication_role = replica", "SET synchronous_commit = off", "SET work_mem = '256MB'"} {
				if _, err := c.Exec(ctx, s); err != nil {
					errs <- err
					return
				}
			}
			for ctx.Err() == nil {
				lo := next.Add(benchdata.ChunkCorrelations) - benchdata.ChunkCorrelations
				if lo > int64(st.corrs) {
					return
				}
				hi := min(lo+benchdata.ChunkCorrelations-1, int64(st.corrs))
				tag, err := c.Exec(ctx, sqlText, lo, hi, st.start, spacing)
				if err != nil {
					errs <- fmt.Errorf("insert correlations %d..%d: %w", lo, hi, err)
					return
				}
				if _, err := c.Exec(ctx, benchdata.ChainHeadsSQL, lo, hi); err != nil {
					errs <- fmt.Errorf("chain heads %d..%d: %w", lo, hi, err)
					return
				}
				n := done.Add(tag.RowsAffected())
				if hi%(benchdata.ChunkCorrelations*10) == 0 || hi == int64(st.corrs) {
					harness.Logf("  %d correlations, %d events so far (%.0f events/s)", hi, n, float64(n)/time.Since(t0).Seconds())
				}
			}
			errs <- ctx.Err()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return st, err
		}
	}
	st.events = done.Load()
	st.insert = time.Since(t0)
	harness.Logf("inserted %d events in %s (%.0f events/s)", st.events, st.insert.Round(time.Second), float64(st.events)/st.insert.Seconds())

	// Re-create the indexes, two at a time.
	t1 := time.Now()
	defs := make(chan string, len(st.indexDefs))
	for _, d := range st.indexDefs {
		defs <- d
	}
	close(defs)
	errs = make(chan error, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, e.DBURL)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(ctx, "SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 0"); err != nil {
				errs <- err
				return
			}
			for d := range defs {
				t := time.Now()
				if _, err := c.Exec(ctx, d); err != nil {
					errs <- fmt.Errorf("%s: %w", d, err)
					return
				}
				harness.Logf("  %s (%s)", strings.SplitN(d, " ON ", 2)[0], time.Since(t).Round(100*time.Millisecond))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return st, err
		}
	}
	st.index = time.Since(t1)
	t2 := time.Now()
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) audit_events"); err != nil {
		return st, fmt.Errorf("vacuum: %w", err)
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) audit_chain_heads"); err != nil {
		return st, fmt.Errorf("vacuum: %w", err)
	}
	st.vacuum = time.Since(t2)
	harness.Logf("indexes in %s, VACUUM ANALYZE in %s", st.index.Round(time.Second), st.vacuum.Round(time.Second))

	// The rows went around the write path, so the rollups are counted from
	// them with the store's own rebuild, as after a restore.
	t3 := time.Now()
	ds, err := store.Open(ctx, e.DBURL, store.Options{})
	if err != nil {
		return st, err
	}
	defer ds.Close()
	if _, err := ds.RebuildRollups(ctx, st.start.Add(-time.Hour), st.end.Add(2*time.Hour)); err != nil {
		return st, err
	}
	if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) audit_rollup_hourly, audit_rollup_correlations"); err != nil {
		return st, fmt.Errorf("vacuum: %w", err)
	}
	st.rollups = time.Since(t3)
	harness.Logf("rollups rebuilt in %s", st.rollups.Round(time.Second))
	_ = conn.QueryRow(ctx, `SELECT avg(octet_length(event_data::text)), avg(pg_column_size(event_data))
		FROM audit_events TABLESAMPLE SYSTEM (1)`).Scan(&st.avgDataText, &st.avgDataCol)
	return st, nil
}
