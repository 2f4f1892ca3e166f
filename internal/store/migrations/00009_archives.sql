-- +goose Up

-- audit_archives records the months the archive job (internal/archive,
-- docs/archive.md) has written to object storage. A month is recorded only
-- once its files were read back and matched PostgreSQL's count and hash
-- digest (status verified); its partition is dropped in the transaction that
-- sets status dropped. Reads of an archived correlation and restore start
-- here. One row per month: a rerun updates it, never adds a second.
CREATE TABLE audit_archives (
    month           date        PRIMARY KEY CHECK (extract(day FROM month) = 1),
    status          text        NOT NULL CHECK (status IN ('verified', 'dropped', 'restored')),
    target          text        NOT NULL,
    manifest_key    text        NOT NULL,
    manifest_sha256 text        NOT NULL,
    events          bigint      NOT NULL,
    bytes           bigint      NOT NULL,
    events_digest   text        NOT NULL,
    archived_at     timestamptz NOT NULL,
    dropped_at      timestamptz,
    restored_at     timestamptz
);

-- The partition of an archived month cannot simply be detached: its rows
-- that name a parent in the same month reference it, and PostgreSQL refuses
-- to detach a partition that rows of audit_events reference, even its own.
-- The drop transaction therefore deletes those child rows first, which the
-- append-only guard (00002) must allow for exactly that case.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_events_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'audit_events is append-only: TRUNCATE is refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF (to_jsonb(NEW) - ARRAY['legal_hold', 'legal_hold_reason', 'legal_hold_placed_by', 'legal_hold_placed_at'])
           IS DISTINCT FROM
           (to_jsonb(OLD) - ARRAY['legal_hold', 'legal_hold_reason', 'legal_hold_placed_by', 'legal_hold_placed_at']) THEN
            RAISE EXCEPTION 'audit_events is append-only: only the legal hold columns may change (event %)', OLD.event_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    -- DELETE
    -- The archive job (docs/archive.md) deletes rows of a month it has
    -- archived and verified, in the transaction that then drops the
    -- partition: datastorage.archive names that month (YYYY-MM), and
    -- audit_archives must record it as verified. A held row never goes.
    IF coalesce(current_setting('datastorage.archive', true), '') <> '' THEN
        IF OLD.legal_hold OR EXISTS (
            SELECT 1 FROM legal_holds h WHERE h.correlation_id = OLD.correlation_id AND h.released_at IS NULL) THEN
            RAISE EXCEPTION 'event % is under legal hold and cannot be archived', OLD.event_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF to_char(OLD.event_date, 'YYYY-MM') = current_setting('datastorage.archive') AND EXISTS (
            SELECT 1 FROM audit_archives a
            WHERE a.month = date_trunc('month', OLD.event_date)::date AND a.status = 'verified') THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'event % is not in a verified archive of month %', OLD.event_id, current_setting('datastorage.archive')
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF coalesce(current_setting('datastorage.retention', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit_events is append-only: rows are deleted only by the retention job (event %)', OLD.event_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.legal_hold OR EXISTS (
        SELECT 1 FROM legal_holds h WHERE h.correlation_id = OLD.correlation_id AND h.released_at IS NULL) THEN
        RAISE EXCEPTION 'event % is under legal hold and cannot be deleted', OLD.event_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.event_date + OLD.retention_days >= (now() AT TIME ZONE 'UTC')::date THEN
        RAISE EXCEPTION 'event % is within its retention of % days and cannot be deleted', OLD.event_id, OLD.retention_days
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_events_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'audit_events is append-only: TRUNCATE is refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF (to_jsonb(NEW) - ARRAY['legal_hold', 'legal_hold_reason', 'legal_hold_placed_by', 'legal_hold_placed_at'])
           IS DISTINCT FROM
           (to_jsonb(OLD) - ARRAY['legal_hold', 'legal_hold_reason', 'legal_hold_placed_by', 'legal_hold_placed_at']) THEN
            RAISE EXCEPTION 'audit_events is append-only: only the legal hold columns may change (event %)', OLD.event_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    -- DELETE
    IF coalesce(current_setting('datastorage.retention', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit_events is append-only: rows are deleted only by the retention job (event %)', OLD.event_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.legal_hold OR EXISTS (
        SELECT 1 FROM legal_holds h WHERE h.correlation_id = OLD.correlation_id AND h.released_at IS NULL) THEN
        RAISE EXCEPTION 'event % is under legal hold and cannot be deleted', OLD.event_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.event_date + OLD.retention_days >= (now() AT TIME ZONE 'UTC')::date THEN
        RAISE EXCEPTION 'event % is within its retention of % days and cannot be deleted', OLD.event_id, OLD.retention_days
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END
$$;
-- +goose StatementEnd
DROP TABLE audit_archives;
