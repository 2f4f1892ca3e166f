package store_test

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"kubernaut.ai/datastorage/internal/benchdata"
	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

// storageLoad00004SQL is benchdata's events in the stored form of
// migration 00004 (hex hashes, every default stored): a frozen copy of that
// generator from before 00005, for the "before" column.
//
//go:embed testdata/storage_load_00004.sql
var storageLoad00004SQL string

// TestStorageMeasure measures bytes per event (table, indexes, each index)
// on generated events shaped like the read benchmark's, on the schema of
// migration 00004 and on the current one (00005: compact rows). It takes a minute and is skipped unless
// DATASTORAGE_STORAGE_MEASURE=1:
//
//	DATASTORAGE_STORAGE_MEASURE=1 go test ./internal/store/ -run TestStorageMeasure -v -timeout 30m
//
// DATASTORAGE_STORAGE_MEASURE_EVENTS sets the number of events (default
// 300,000). As in the benchmark, the secondary indexes are dropped for the
// load and built afterwards (packed, leaf pages 90 % full); the primary key
// grows during the load.
func TestStorageMeasure(t *testing.T) {
	if os.Getenv("DATASTORAGE_STORAGE_MEASURE") != "1" {
		t.Skip("set DATASTORAGE_STORAGE_MEASURE=1 to measure storage per event")
	}
	events := 300_000
	if v := os.Getenv("DATASTORAGE_STORAGE_MEASURE_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		events = n
	}
	before := measureStorage(t, events, 4, storageLoad00004SQL)
	after := measureStorage(t, events, 0, benchdata.InsertSQL())
	var b strings.Builder
	fmt.Fprintf(&b, "\n| | 00004 | now |\n|---|---:|---:|\n")
	row := func(name string, x, y float64) { fmt.Fprintf(&b, "| %s | %.1f | %.1f |\n", name, x, y) }
	row("events", before.events, after.events)
	row("**table** (heap + TOAST) B/event", before.table, after.table)
	row("**indexes** B/event", before.indexes, after.indexes)
	row("**total** B/event", before.table+before.indexes, after.table+after.indexes)
	row("event_data as text, B", before.dataText, after.dataText)
	row("event_data stored, B", before.dataStored, after.dataStored)
	for _, ix := range before.indexNames {
		row(ix, before.index[ix], after.index[ix])
	}
	t.Log(b.String())
}

type storageSizes struct {
	events, table, indexes float64
	dataText, dataStored   float64
	indexNames             []string
	index                  map[string]float64
}

// measureStorage loads about `events` events into a fresh database migrated
// up to version upTo (0: all migrations) with loadSQL (benchdata.InsertSQL
// or a frozen older form of it) and returns their sizes.
func measureStorage(t *testing.T, events int, upTo int64, loadSQL string) storageSizes {
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	st, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	require.NoError(t, err)
	defer st.Close()
	if upTo > 0 {
		_, err = st.MigrateUpTo(ctx, upTo)
	} else {
		_, err = st.Migrate(ctx, nil)
	}
	require.NoError(t, err)

	// 30 days of events ending an hour ago, as in the read benchmark.
	corrs := max(events/benchdata.EventsPerCorrelation, 1)
	end := time.Now().UTC().Add(-time.Hour)
	start := end.Add(-benchdata.Days * 24 * time.Hour)
	spacing := (float64(benchdata.Days*24*3600) - benchdata.EventsPerCorrelation*benchdata.StepSeconds*2) / float64(corrs)
	_, err = st.EnsurePartitions(ctx, start, 2)
	require.NoError(t, err)

	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT indexname, replace(indexdef, ' ON ONLY ', ' ON ') FROM pg_indexes
		WHERE tablename = 'audit_events' AND indexname <> 'audit_events_pkey' ORDER BY 1`)
	require.NoError(t, err)
	defs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Name, Def string }])
	require.NoError(t, err)
	for _, d := range defs {
		_, err := conn.Exec(ctx, "DROP INDEX "+pgx.Identifier{d.Name}.Sanitize())
		require.NoError(t, err)
	}
	// replica: no parent foreign key checks (the generator names only
	// parents it writes) and no triggers.
	for _, s := range []string{"SET session_replication_role = replica", "SET synchronous_commit = off",
		"SET work_mem = '256MB'", "SET maintenance_work_mem = '1GB'"} {
		_, err := conn.Exec(ctx, s)
		require.NoError(t, err)
	}
	t0 := time.Now()
	const chunk = benchdata.ChunkCorrelations
	for lo := 1; lo <= corrs; lo += chunk {
		_, err := conn.Exec(ctx, loadSQL, lo, min(lo+chunk-1, corrs), start, spacing)
		require.NoError(t, err)
	}
	for _, d := range defs {
		_, err := conn.Exec(ctx, d.Def)
		require.NoError(t, err)
	}
	_, err = conn.Exec(ctx, "VACUUM (ANALYZE) audit_events")
	require.NoError(t, err)
	t.Logf("migrated up to %d: loaded and indexed in %s", upTo, time.Since(t0).Round(time.Second))

	var s storageSizes
	require.NoError(t, conn.QueryRow(ctx, `
		WITH p AS (SELECT inhrelid AS oid FROM pg_inherits WHERE inhparent = 'audit_events'::regclass),
		     n AS (SELECT count(*)::float8 AS n FROM audit_events)
		SELECT n.n, sum(pg_table_size(p.oid)) / n.n, sum(pg_indexes_size(p.oid)) / n.n
		FROM p, n GROUP BY n.n`).Scan(&s.events, &s.table, &s.indexes))
	require.NoError(t, conn.QueryRow(ctx, `
		SELECT avg(octet_length(event_data::text))::float8, avg(pg_column_size(event_data))::float8 FROM audit_events`).
		Scan(&s.dataText, &s.dataStored))
	rows, err = conn.Query(ctx, `
		SELECT pi.inhparent::regclass::text, (sum(pg_relation_size(i.indexrelid)) / $1)::float8
		FROM pg_index i
		JOIN pg_inherits p ON p.inhrelid = i.indrelid AND p.inhparent = 'audit_events'::regclass
		JOIN pg_inherits pi ON pi.inhrelid = i.indexrelid
		GROUP BY 1 ORDER BY 2 DESC`, s.events)
	require.NoError(t, err)
	type sized struct {
		Name  string
		Bytes float64
	}
	ix, err := pgx.CollectRows(rows, pgx.RowToStructByPos[sized])
	require.NoError(t, err)
	s.index = map[string]float64{}
	for _, x := range ix {
		s.indexNames = append(s.indexNames, x.Name)
		s.index[x.Name] = x.Bytes
	}
	return s
}
