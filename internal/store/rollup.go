package store

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"kubernaut.ai/datastorage/internal/audit"
)

// The rollups (migration 00003) count the events of audit_events per UTC
// hour. InsertEvents adds each commit's events to them in the same
// transaction; retention subtracts what it deletes (retention.go); the
// aggregations read them for the whole hours of a window (aggregate.go).

// Statements that add a commit's counts to the rollups. The rows arrive
// sorted by key, so two transactions that do meet on a row lock it in the
// same order and queue instead of deadlocking.
const (
	addHourlySQL = `
INSERT INTO audit_rollup_hourly AS r (bucket, event_type, event_category, event_outcome, severity, shard, events)
SELECT b, t, c, o, s, $6, n FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $7::int8[]) AS u(b, t, c, o, s, n)
ON CONFLICT (bucket, event_type, event_category, event_outcome, severity, shard)
DO UPDATE SET events = r.events + EXCLUDED.events`

	addCorrelationsSQL = `
INSERT INTO audit_rollup_correlations AS r (bucket, correlation_id, namespace, cluster_id, events)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::int8[])
ON CONFLICT (bucket, correlation_id, namespace, cluster_id)
DO UPDATE SET events = r.events + EXCLUDED.events`
)

// hourlyKey is a row of audit_rollup_hourly, less its shard.
type hourlyKey struct {
	bucket                           time.Time
	typ, category, outcome, severity string
}

// hourlyKeyOf is the hourly rollup row e counts in, less its shard; b is
// its hour (rollupBucket).
func hourlyKeyOf(e *audit.Event, b time.Time) hourlyKey {
	return hourlyKey{b, e.Type, e.Category, e.Outcome, e.Severity}
}

// correlationKey is a row of audit_rollup_correlations.
type correlationKey struct {
	bucket                   time.Time
	correlation, ns, cluster string
}

// rollupBucket is the UTC hour an event is counted in. Truncate works on
// absolute time, so the hour is the same in every zone that is a whole
// number of hours from UTC, and exactly UTC's.
func rollupBucket(e *audit.Event) time.Time { return e.Timestamp.Std().Truncate(time.Hour).UTC() }

// rollupDelta is what one commit adds to the rollups.
type rollupDelta struct {
	hourly       map[hourlyKey]int64
	correlations map[correlationKey]int64
	// latest is, per correlation, the cell of its latest event (the
	// last of the commit's among equal timestamps): the one a chained
	// commit leaves open on the correlation's head (cells.go).
	latest map[string]latestCell
}

// latestCell is the cell of a correlation's latest event in a commit.
type latestCell struct {
	key correlationKey
	at  time.Time
}

func newRollupDelta(events []*audit.Event) rollupDelta {
	d := rollupDelta{
		hourly:       make(map[hourlyKey]int64, len(events)),
		correlations: make(map[correlationKey]int64, len(events)),
		latest:       make(map[string]latestCell, len(events)),
	}
	for _, e := range events {
		b := rollupBucket(e)
		d.hourly[hourlyKeyOf(e, b)]++
		k := correlationKey{b, e.CorrelationID, e.Namespace, e.ClusterID}
		d.correlations[k]++
		at := e.Timestamp.Std()
		if l, ok := d.latest[e.CorrelationID]; !ok || !at.Before(l.at) {
			d.latest[e.CorrelationID] = latestCell{k, at}
		}
	}
	return d
}

// queue adds the delta's two upserts to b, the hourly counts under shard.
func (d rollupDelta) queue(b *pgx.Batch, shard int16) {
	hourly, correlations := d.columns()
	b.Queue(addHourlySQL, hourly[0], hourly[1], hourly[2], hourly[3], hourly[4], shard, hourly[5])
	b.Queue(addCorrelationsSQL, correlations...)
}

// columns returns the delta as array parameters, rows sorted by key (so two
// transactions that meet on a row lock it in the same order): the hourly
// counts as bucket, type, category, outcome, severity, count; the
// correlation counts as bucket, correlation, namespace, cluster, count.
func (d rollupDelta) columns() (hourly, correlations []any) {
	return d.hourlyColumns(), correlationCountColumns(d.correlations)
}

// hourlyColumns returns the hourly counts as columns() does.
func (d rollupDelta) hourlyColumns() []any {
	hk := slices.SortedFunc(maps.Keys(d.hourly), func(a, b hourlyKey) int {
		return cmp.Or(a.bucket.Compare(b.bucket), cmp.Compare(a.typ, b.typ), cmp.Compare(a.category, b.category),
			cmp.Compare(a.outcome, b.outcome), cmp.Compare(a.severity, b.severity))
	})
	n := len(hk)
	buckets, counts := make([]time.Time, n), make([]int64, n)
	types, cats, outcomes, sevs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, k := range hk {
		buckets[i], types[i], cats[i], outcomes[i], sevs[i], counts[i] = k.bucket, k.typ, k.category, k.outcome, k.severity, d.hourly[k]
	}
	return []any{buckets, types, cats, outcomes, sevs, counts}
}

// correlationCountColumns returns correlation counts as columns() does.
func correlationCountColumns(counts map[correlationKey]int64) []any {
	ck := slices.SortedFunc(maps.Keys(counts), func(a, b correlationKey) int {
		return cmp.Or(a.bucket.Compare(b.bucket), cmp.Compare(a.correlation, b.correlation),
			cmp.Compare(a.ns, b.ns), cmp.Compare(a.cluster, b.cluster))
	})
	n := len(ck)
	buckets, ns := make([]time.Time, n), make([]int64, n)
	ids, nss, clusters := make([]string, n), make([]string, n), make([]string, n)
	for i, k := range ck {
		buckets[i], ids[i], nss[i], clusters[i], ns[i] = k.bucket, k.correlation, k.ns, k.cluster, counts[k]
	}
	return []any{buckets, ids, nss, clusters, ns}
}

// shardSet hands each concurrent InsertEvents transaction a distinct
// rollup shard. It gives out the lowest free number, so a store with two
// busy writers uses two shards, not one per pooled connection (every shard
// is a row more per hour and key for the readers to add up). Numbers start
// at a random base per process, so replicas writing at the same moment
// rarely share one; if they do, one commit waits for the other's row lock,
// which costs time, not correctness.
type shardSet struct {
	base int16
	mu   sync.Mutex
	busy [shardsPerProcess]bool
}

// shardsPerProcess bounds the shards one process uses; more concurrent
// commits than that (the pool allows far fewer) share the last one.
// shardBases is how many distinct bases a process can draw, so that shards
// stay below 32,767.
const (
	shardsPerProcess = 1024
	shardBases       = 31
)

func newShardSet() *shardSet {
	return &shardSet{base: int16(1 + rand.IntN(shardBases)*shardsPerProcess)}
}

func (s *shardSet) acquire() (shard int16, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.busy[:], false)
	if i < 0 {
		return s.base + shardsPerProcess - 1, func() {}
	}
	s.busy[i] = true
	return s.base + int16(i), func() {
		s.mu.Lock()
		s.busy[i] = false
		s.mu.Unlock()
	}
}

// rebuildRollupsSQL counts the events of the hours [$1, $2) into the
// rollups under shard 0 (retention writes under -1, writers from 1 up), in
// hour order: readers scan ranges of hours (see migration 00003). The
// hours' old rows are deleted first.
const rebuildRollupsSQL = `
WITH events AS (
	SELECT date_trunc('hour', event_timestamp, 'UTC') AS bucket, event_type, event_category, event_outcome,
	       severity, correlation_id, coalesce(namespace, '') AS namespace, coalesce(cluster_id, '') AS cluster_id
	FROM audit_events
	WHERE event_timestamp >= $1 AND event_timestamp < $2 AND event_date >= $3::date AND event_date <= $4::date
), hourly AS (
	INSERT INTO audit_rollup_hourly (bucket, event_type, event_category, event_outcome, severity, shard, events)
	SELECT bucket, event_type, event_category, event_outcome, severity, 0, count(*)
	FROM events GROUP BY 1, 2, 3, 4, 5 ORDER BY 1
	RETURNING events
), correlations AS (
	INSERT INTO audit_rollup_correlations (bucket, correlation_id, namespace, cluster_id, events)
	SELECT bucket, correlation_id, namespace, cluster_id, count(*)
	FROM events GROUP BY 1, 2, 3, 4 ORDER BY 1
)
SELECT coalesce(sum(events), 0) FROM hourly`

// RebuildRollups recomputes the rollups of every hour that overlaps
// [from, to) from audit_events, and returns the number of events counted.
// The rollups are kept exact by the writes themselves; this is for data
// that reached audit_events another way (a bulk load, a restore, writes by
// a version before the rollups existed).
//
// The open cells of the range (migration 00012, cells.go) are emptied:
// their events are in the recount. A cell keeps its key, so the next
// commit in it adds to 0.
//
// It locks the chain heads (which hold the open cells) and both rollup
// tables against writers for its duration, so that no commit adds to an
// hour between the recount and its end: a commit waiting on the lock adds
// its events after the recount, which did not see them. The tables are
// locked in the order in which the writers' statements name them (heads
// first), so that a writer holding one and waiting for the next cannot
// deadlock with it. It is one transaction: a crash leaves the old counts
// or the new ones, never a mix. Rebuild a month at a time on a busy
// system.
func (s *Store) RebuildRollups(ctx context.Context, from, to time.Time) (_ int64, err error) {
	defer classifyErr(&err)
	from = from.UTC().Truncate(time.Hour)
	if t := to.UTC().Truncate(time.Hour); t.Before(to) {
		to = t.Add(time.Hour)
	}
	var n int64
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE audit_chain_heads, audit_rollup_hourly, audit_rollup_correlations IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_chain_heads SET cell_events = 0
			WHERE cell_bucket >= $1 AND cell_bucket < $2 AND cell_events <> 0`, from, to); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_rollup_hourly WHERE bucket >= $1 AND bucket < $2`, from, to); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_rollup_correlations WHERE bucket >= $1 AND bucket < $2`, from, to); err != nil {
			return err
		}
		return tx.QueryRow(ctx, rebuildRollupsSQL, from, to,
			audit.DateOf(from).Std(), audit.DateOf(to).Std()).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("store: rebuild rollups %s – %s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	return n, nil
}
