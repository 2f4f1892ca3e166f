-- +goose Up

-- The open cell of each correlation (issue 15). A commit used to update two
-- rows per correlation it touched: the chain head (audit_chain_heads) and
-- the correlation's count for the hour (audit_rollup_correlations). Now the
-- head row also carries the correlation's open cell: the (hour, namespace,
-- cluster) its latest commit counted in, and how many events that cell has
-- not yet handed to audit_rollup_correlations. A commit whose events fall
-- in the open cell (the common case: same hour, same namespace) adds to it
-- in the same UPDATE that moves the head: one row per correlation and
-- commit. Only when a commit's events fall in another cell does the old
-- cell's count go to audit_rollup_correlations (and the commit's other
-- cells with it), and the new cell open (internal/store/cells.go).
--
-- Columns on the head rather than a table of their own: the point is one
-- row to update, and the head row is already updated by every chained
-- commit, under the correlation's chain lock, which also keeps two commits
-- from closing the same cell twice.
--
-- What a correlation counted, per key, is therefore the sum of its rows in
-- audit_rollup_correlations and of its open cell when the key matches:
-- every reader reads audit_rollup_correlations_all below. Writers that add
-- to audit_rollup_correlations directly (the catalog, retention's and the
-- archive expiry's negative counts, RebuildRollups) stay exact: both sides
-- are additive.
--
-- Nothing moves: existing counts stay where they are and every cell starts
-- empty (cell_bucket NULL, cell_events 0). A constant default adds the
-- columns without rewriting the table.
ALTER TABLE audit_chain_heads
    ADD COLUMN cell_bucket    timestamptz,
    ADD COLUMN cell_namespace text   NOT NULL DEFAULT '',
    ADD COLUMN cell_cluster   text   NOT NULL DEFAULT '',
    ADD COLUMN cell_events    bigint NOT NULL DEFAULT 0;

-- Heads are now updated at every commit of their correlation and grow from
-- an empty to a filled cell: a free fifth of each page (as the rollups
-- have) keeps those updates on their page (HOT). It applies to pages
-- written from now on.
ALTER TABLE audit_chain_heads SET (fillfactor = 80);

-- Aggregations read the open cells of a range of hours. Only the bucket is
-- indexed: an UPDATE is HOT only if no indexed column changes, and the
-- count changes at every commit, the bucket once an hour.
CREATE INDEX audit_chain_heads_cell_idx ON audit_chain_heads (cell_bucket);

-- audit_rollup_correlations_all is what the correlations counted: the
-- rollup rows and the open cells, several rows per key at times (a key's
-- rows in audit_rollup_correlations and its open cell). Readers sum by key.
CREATE VIEW audit_rollup_correlations_all AS
    SELECT bucket, correlation_id, namespace, cluster_id, events
    FROM audit_rollup_correlations
    UNION ALL
    SELECT cell_bucket, correlation_id, cell_namespace, cell_cluster, cell_events
    FROM audit_chain_heads
    WHERE cell_bucket IS NOT NULL AND cell_events <> 0;

-- Least privilege (see 00002): the API role reads the view.
--   GRANT SELECT ON audit_rollup_correlations_all TO datastorage_app;

-- +goose Down
-- The open cells' counts go back to audit_rollup_correlations before the
-- columns go, so that no count is lost.
INSERT INTO audit_rollup_correlations AS r (bucket, correlation_id, namespace, cluster_id, events)
SELECT cell_bucket, correlation_id, cell_namespace, cell_cluster, cell_events
FROM audit_chain_heads WHERE cell_bucket IS NOT NULL AND cell_events <> 0
ORDER BY 1, 2, 3, 4
ON CONFLICT (bucket, correlation_id, namespace, cluster_id)
DO UPDATE SET events = r.events + EXCLUDED.events;
DROP VIEW audit_rollup_correlations_all;
DROP INDEX audit_chain_heads_cell_idx;
ALTER TABLE audit_chain_heads RESET (fillfactor);
ALTER TABLE audit_chain_heads
    DROP COLUMN cell_events,
    DROP COLUMN cell_cluster,
    DROP COLUMN cell_namespace,
    DROP COLUMN cell_bucket;
