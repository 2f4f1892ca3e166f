-- +goose Up

-- Hourly rollups for the aggregations of CONTRACT §7. Every whole-window
-- aggregation over audit_events reads every row of its window: at 10 M
-- events a 7-day window is some 2.3 M rows, seconds of work. The rollups
-- count the same rows per UTC hour, so an aggregation reads one row per hour
-- and key for the whole hours of its window, and audit_events only for the
-- partial hours at its two edges (see internal/store/aggregate.go).
--
-- They are exact, not sampled: the group-commit transaction that inserts
-- events adds them to the rollups in the same commit (store.InsertEvents),
-- and retention subtracts what it deletes in the transaction that deletes
-- it. They are derived data: store.RebuildRollups recomputes any range of
-- hours from audit_events.

-- audit_rollup_hourly counts events per hour by the columns of low
-- cardinality that success-rate, by-severity, trend and counts group or
-- filter by. event_category is a function of event_type in practice but
-- not by contract, so both are keys.
--
-- shard keeps concurrent writers off each other's rows: every writer adds to
-- the rows of its own shard (a number the store picks per concurrent
-- transaction), so two group commits touching the same hour and key never
-- wait for each other's row lock, which would hold one commit behind the
-- other's WAL flush. Readers sum over shards. Retention writes its
-- (negative) counts under shard -1; the backfill and RebuildRollups under 0.
CREATE TABLE audit_rollup_hourly (
    bucket         timestamptz NOT NULL,
    event_type     text        NOT NULL,
    event_category text        NOT NULL,
    event_outcome  text        NOT NULL,
    severity       text        NOT NULL,
    shard          smallint    NOT NULL,
    events         bigint      NOT NULL,
    PRIMARY KEY (bucket, event_type, event_category, event_outcome, severity, shard)
) WITH (fillfactor = 80);

-- audit_rollup_correlations counts events per hour and correlation (with
-- the namespace and cluster they were in; '' when they had none, since a
-- key column cannot be NULL). by-namespace needs the distinct correlations
-- of a window, which per-hour counts cannot add up to; the set of
-- (hour, correlation) pairs can. It is one row per correlation per hour it
-- was active in, some 50 times fewer than events.
--
-- No shard: the writers of one correlation already take turns on its chain
-- lock (InsertEvents), so no two commits update the same row at once.
CREATE TABLE audit_rollup_correlations (
    bucket         timestamptz NOT NULL,
    correlation_id text        NOT NULL,
    namespace      text        NOT NULL,
    cluster_id     text        NOT NULL,
    events         bigint      NOT NULL,
    PRIMARY KEY (bucket, correlation_id, namespace, cluster_id)
) WITH (fillfactor = 80);

-- Readers scan a range of hours through the primary key, so the rows of an
-- hour should share heap pages: live writes append each hour's rows as it
-- goes, and the backfill below inserts in hour order. Counts are updated in
-- place over and over; the free fifth of each page (fillfactor) keeps those
-- updates on their page (HOT: no new index entry).
--
-- The events already stored.
INSERT INTO audit_rollup_hourly (bucket, event_type, event_category, event_outcome, severity, shard, events)
SELECT date_trunc('hour', event_timestamp, 'UTC'), event_type, event_category, event_outcome, severity, 0, count(*)
FROM audit_events
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1;

INSERT INTO audit_rollup_correlations (bucket, correlation_id, namespace, cluster_id, events)
SELECT date_trunc('hour', event_timestamp, 'UTC'), correlation_id, coalesce(namespace, ''), coalesce(cluster_id, ''), count(*)
FROM audit_events
GROUP BY 1, 2, 3, 4
ORDER BY 1;

-- Least privilege (see 00002): the API role adds to the rollups.
--   GRANT SELECT, INSERT, UPDATE ON audit_rollup_hourly, audit_rollup_correlations TO datastorage_app;

-- +goose Down
DROP TABLE audit_rollup_correlations;
DROP TABLE audit_rollup_hourly;
