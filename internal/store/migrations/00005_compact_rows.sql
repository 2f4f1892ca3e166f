-- +goose Up

-- Storage per event, continued (docs/storage.md): 1,627 bytes per event
-- (1,133 table + 493 indexes) measured after 00004, against a target of
-- 1,229. Measured with
-- `DATASTORAGE_STORAGE_MEASURE=1 go test ./internal/store/ -run TestStorageMeasure -v`.
--
-- 1. event_hash and previous_event_hash are stored as bytea, the 32 bytes of
--    the digest (33 with the length byte) instead of 64 hex characters (65).
--    previous_event_hash of the first link of a chain is the empty bytea
--    (''::bytea, one byte), never NULL. The API still reads and writes
--    lowercase hex (internal/store/stored.go): the values, and so every
--    hash of every chain, are unchanged. audit_chain_heads.last_hash and
--    audit_chain_tombstones.last_hash stay hex text: one row per
--    correlation or per retention range, not per event.
--
-- 2. Four columns that usually hold their contractual default store NULL
--    for it, and the store fills the default back in when it reads a row
--    (CONTRACT §2.1; the API output and the canonical form the hash covers
--    are unchanged):
--      actor_type     NULL = 'service'
--      actor_id       NULL = event_category || '-service'
--                     (only for the categories of CONTRACT §2.1, so that a
--                     filter on a value that no category derives never has
--                     to look at the NULL rows)
--      resource_type  NULL = event_category
--      resource_id    NULL = correlation_id
--    An explicit value equal to the default is the same value, and is stored
--    as NULL too. The filters on actor_id, resource_type and resource_id
--    match either form (internal/store/read.go).
--
-- 3. The filter indexes lose event_id, the last column of their keys, and
--    the resource and actor indexes become partial (only the rows whose
--    value is not the default, now NULL, have an entry). A page of one
--    value is still an ordered index scan: PostgreSQL orders the rare ties
--    of event_timestamp by event_id with an incremental sort. The time
--    index and the primary key keep event_id. A page of
--    resource_id = X reads the resource index (explicit values) and the
--    correlation index (defaulted rows of correlation X) and merges them; a
--    page of actor_id = '<category>-service' reads the actor index and the
--    time index (defaulted rows of that category), like a page of one
--    category (00004).
--
-- This REWRITES audit_events: ALTER COLUMN … TYPE with USING rewrites every
-- partition and rebuilds its indexes, under an ACCESS EXCLUSIVE lock, in
-- the migration's transaction (writes and reads wait: 1.7 s for 200,000
-- events on the development VM, so some 10 s per million, plus building
-- the five indexes). It is one ALTER TABLE, so one rewrite. A rewrite
-- fires no row triggers: the append-only guard of 00002 (which refuses
-- UPDATE of event columns) neither sees nor blocks it, and it stays in
-- place and unchanged for every later statement. Partitions an operator
-- has detached are not converted; attach them back before migrating.
--
-- The five indexes go first, so the rewrite does not rebuild them only to
-- drop them.
DROP INDEX audit_events_correlation_idx;
DROP INDEX audit_events_type_idx;
DROP INDEX audit_events_namespace_idx;
DROP INDEX audit_events_resource_idx;
DROP INDEX audit_events_actor_idx;

ALTER TABLE audit_events
    ALTER COLUMN event_hash TYPE bytea USING decode(event_hash, 'hex'),
    ALTER COLUMN previous_event_hash TYPE bytea USING decode(previous_event_hash, 'hex'),
    ALTER COLUMN actor_type DROP NOT NULL,
    ALTER COLUMN actor_type TYPE text USING nullif(actor_type, 'service'),
    ALTER COLUMN actor_id DROP NOT NULL,
    ALTER COLUMN actor_id TYPE text USING CASE
        WHEN actor_id = event_category || '-service' AND event_category IN ('gateway', 'notification',
            'analysis', 'aiagent', 'signalprocessing', 'workflow', 'workflowexecution', 'orchestration',
            'approval', 'effectiveness', 'actiontype', 'apifrontend', 'security', 'agentsession')
        THEN NULL ELSE actor_id END,
    ALTER COLUMN resource_type DROP NOT NULL,
    ALTER COLUMN resource_type TYPE text USING nullif(resource_type, event_category),
    ALTER COLUMN resource_id DROP NOT NULL,
    ALTER COLUMN resource_id TYPE text USING nullif(resource_id, correlation_id);

CREATE INDEX audit_events_correlation_idx ON audit_events (correlation_id, event_timestamp DESC);
CREATE INDEX audit_events_type_idx        ON audit_events (event_type, event_timestamp DESC);
CREATE INDEX audit_events_namespace_idx   ON audit_events (namespace, event_timestamp DESC)
    WHERE namespace IS NOT NULL;
CREATE INDEX audit_events_resource_idx    ON audit_events (resource_id, event_timestamp DESC)
    WHERE resource_id IS NOT NULL;
CREATE INDEX audit_events_actor_idx       ON audit_events (actor_id, event_timestamp DESC)
    WHERE actor_id IS NOT NULL;

-- +goose Down
-- The shape of 00004: hex text hashes, every default stored, the indexes
-- with event_id. Also a rewrite of audit_events.
DROP INDEX audit_events_correlation_idx;
DROP INDEX audit_events_type_idx;
DROP INDEX audit_events_namespace_idx;
DROP INDEX audit_events_resource_idx;
DROP INDEX audit_events_actor_idx;

ALTER TABLE audit_events
    ALTER COLUMN event_hash TYPE text USING encode(event_hash, 'hex'),
    ALTER COLUMN previous_event_hash TYPE text USING encode(previous_event_hash, 'hex'),
    ALTER COLUMN actor_type TYPE text USING coalesce(actor_type, 'service'),
    ALTER COLUMN actor_type SET NOT NULL,
    ALTER COLUMN actor_id TYPE text USING coalesce(actor_id, event_category || '-service'),
    ALTER COLUMN actor_id SET NOT NULL,
    ALTER COLUMN resource_type TYPE text USING coalesce(resource_type, event_category),
    ALTER COLUMN resource_type SET NOT NULL,
    ALTER COLUMN resource_id TYPE text USING coalesce(resource_id, correlation_id),
    ALTER COLUMN resource_id SET NOT NULL;

CREATE INDEX audit_events_correlation_idx ON audit_events (correlation_id, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_type_idx        ON audit_events (event_type, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_namespace_idx   ON audit_events (namespace, event_timestamp DESC, event_id DESC)
    WHERE namespace IS NOT NULL;
CREATE INDEX audit_events_resource_idx    ON audit_events (resource_id, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_actor_idx       ON audit_events (actor_id, event_timestamp DESC, event_id DESC);
