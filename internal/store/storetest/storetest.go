// Package storetest gives integration tests a migrated store on a database
// of their own, the setup nearly every test above the store starts with.
// The calling package must run its tests through testenv.Main.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"kubernaut.ai/datastorage/internal/store"
	"kubernaut.ai/datastorage/internal/testenv"
)

// New opens a store with opts on a fresh, migrated database (dropped after
// the test) and creates the partitions of the previous month through ahead
// months after the current one. It returns the store, closed after the
// test, and the database URL.
//
// The database is a copy of a template database that the test process
// migrates once (testenv.NewTemplatedDatabase): copying takes milliseconds,
// migrating takes far longer and made every parallel test wait on the
// catalog. Partitions are created per test, as before, because which months
// exist depends on ahead and on the clock.
func New(t testing.TB, opts store.Options, ahead int) (*store.Store, string) {
	t.Helper()
	ctx := context.Background()
	url := testenv.NewTemplatedDatabase(t, "migrated", migrate)
	st, err := store.Open(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.EnsurePartitions(ctx, time.Now().AddDate(0, -1, 0), ahead+1); err != nil {
		t.Fatal(err)
	}
	return st, url
}

// migrate applies every migration to the empty database at url: the
// template that New copies.
func migrate(ctx context.Context, url string) error {
	st, err := store.Open(ctx, url, store.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer st.Close()
	_, err = st.Migrate(ctx, nil)
	return err
}

// rollupMismatchSQL counts the keys on which a rollup table and a count of
// audit_events itself disagree (rows that add up to 0 count as absent).
const rollupMismatchSQL = `
WITH r AS (
	SELECT %[1]s, sum(events)::bigint AS n FROM %[2]s GROUP BY %[1]s HAVING sum(events) <> 0
), e AS (
	SELECT %[3]s, count(*) AS n FROM audit_events GROUP BY %[1]s
)
SELECT count(*) FROM ((SELECT * FROM r EXCEPT ALL SELECT * FROM e) UNION ALL (SELECT * FROM e EXCEPT ALL SELECT * FROM r)) AS x`

// RequireRollupsMatchEvents fails the test unless both rollups hold exactly
// the counts of the rows in audit_events, hour by hour and key by key (the
// correlation counts with the chain heads' open cells, migration 00012).
func RequireRollupsMatchEvents(t testing.TB, st *store.Store) {
	t.Helper()
	hour := "date_trunc('hour', event_timestamp, 'UTC') AS bucket"
	for _, c := range []struct{ table, keys, exprs string }{
		{"audit_rollup_hourly", "bucket, event_type, event_category, event_outcome, severity",
			hour + ", event_type, event_category, event_outcome, severity"},
		{"audit_rollup_correlations_all", "bucket, correlation_id, namespace, cluster_id",
			hour + ", correlation_id, coalesce(namespace, '') AS namespace, coalesce(cluster_id, '') AS cluster_id"},
	} {
		var n int64
		if err := st.Pool().QueryRow(context.Background(), fmt.Sprintf(rollupMismatchSQL, c.keys, c.table, c.exprs)).Scan(&n); err != nil {
			t.Fatalf("compare %s with audit_events: %v", c.table, err)
		}
		if n != 0 {
			t.Fatalf("%s disagrees with audit_events on %d key(s)", c.table, n)
		}
	}
}
