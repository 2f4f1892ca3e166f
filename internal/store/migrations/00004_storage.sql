-- +goose Up

-- Storage per event (docs/storage.md; measured with
-- `DATASTORAGE_STORAGE_MEASURE=1 go test ./internal/store/ -run TestStorageMeasure -v`
-- on 300,000 events shaped like the read benchmark's).
--
-- 1. audit_events_category_idx goes: 59 bytes per event, the weakest index
--    (14 values; the rarest category is about 3 % of the events). A page of
--    one category is served by audit_events_time_idx with a filter: newest
--    first it reads about 50 / share rows (some 1,500 for the rarest, ~1 ms);
--    the capped count (LIMIT 10001) reads until it has 10,001 matches, some
--    300,000 rows for the rarest category (~70 ms), whatever the table size.
--    It served the success rate by category, which moves to the rollup
--    tables (migration 00003). audit_events_actor_idx looks as weak in
--    generated data (actor_id defaults to "<category>-service"), but stays:
--    "what did this person or account do" asks for one rare actor, and
--    without the index that reads the whole time window.
DROP INDEX audit_events_category_idx;

-- 2. event_data is compressed with lz4 rather than pglz when PostgreSQL
--    compresses it: lz4 is several times faster both ways, and it keeps a
--    saving pglz would refuse (pglz gives up under 25 %). This is a property
--    of the column; a partitioned parent's ALTER … SET COMPRESSION does not
--    reach the partitions that exist (PostgreSQL 15), so they are set one by
--    one, while partitions created later (store.EnsurePartitions) copy it
--    from the parent. It changes only how new values are written: values
--    already stored keep their form until rewritten, and nothing is
--    rewritten here (metadata only, fast).
--
--    What it does not do: compress a typical event. PostgreSQL runs its
--    compressor only for rows over ~2 KB (TOAST_TUPLE_THRESHOLD, a compile
--    time constant); our rows are ~1 KB, so only events with a large
--    event_data are affected. toast_tuple_target is deliberately left at its
--    default: below 2 KB it does not start compression on INSERT, and once
--    the toaster does run a low target moves values (even the 65-byte
--    hashes) out of line into the TOAST table, one TOAST row and index entry
--    each. Besides, a ~565-byte jsonb compresses by 0-5 % with lz4 and not
--    at all with pglz (measured): what repeats is the keys, across rows, and
--    per-value compression cannot see that.
--
--    Skipped, with a notice, on a server built without lz4.
-- +goose StatementBegin
DO $$
DECLARE
    part regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_settings
                   WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        RAISE NOTICE 'this PostgreSQL is built without lz4: event_data keeps pglz';
        RETURN;
    END IF;
    ALTER TABLE audit_events ALTER COLUMN event_data SET COMPRESSION lz4;
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit_events'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN event_data SET COMPRESSION lz4', part);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    part regclass;
BEGIN
    ALTER TABLE audit_events ALTER COLUMN event_data SET COMPRESSION default;
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit_events'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN event_data SET COMPRESSION default', part);
    END LOOP;
END
$$;
-- +goose StatementEnd
CREATE INDEX audit_events_category_idx ON audit_events (event_category, event_timestamp DESC, event_id DESC);
