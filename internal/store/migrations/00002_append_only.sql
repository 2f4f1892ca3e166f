-- +goose Up

-- Integrity (CONTRACT §8, docs/integrity.md): audit rows are append-only,
-- legal holds keep rows forever, and retention leaves a record of every link
-- of a hash chain it removes.
--
-- What the triggers below guarantee, and what they do not:
--   * UPDATE of audit_events may change the four legal-hold columns and
--     nothing else.
--   * DELETE from audit_events is refused unless the transaction has set
--     `SET LOCAL datastorage.retention = 'on'` (only the retention job does),
--     the row is past its retention (event_date + retention_days before
--     today, UTC), and the row is not under legal hold (its own flag or an
--     active hold on its correlation). A held row can never be deleted.
--   * TRUNCATE of audit_events, of the legal-hold history and of the
--     retention tombstones is refused.
--   * A superuser (or the tables' owner) can still disable triggers
--     (ALTER TABLE … DISABLE TRIGGER, session_replication_role = replica),
--     truncate or drop a single partition, or edit rows directly. Triggers
--     stop mistakes and compromised application credentials; the hash chain
--     (verify-chain) and signed exports are what detect an administrator's
--     tampering.
--
-- Least privilege. Run migrations, partition upkeep and retention as the
-- owner role; give the API role only what it needs (CREATE ROLE … LOGIN
-- first; replace datastorage_app by its name):
--
--   GRANT USAGE ON SCHEMA public TO datastorage_app;
--   GRANT SELECT, INSERT ON audit_events, notification_audit TO datastorage_app;
--   GRANT UPDATE (legal_hold, legal_hold_reason, legal_hold_placed_by, legal_hold_placed_at)
--       ON audit_events TO datastorage_app;
--   GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO datastorage_app;
--   GRANT SELECT, INSERT ON legal_holds TO datastorage_app;
--   GRANT UPDATE (released_by, released_at, release_reason, events_released)
--       ON legal_holds TO datastorage_app;
--   GRANT SELECT ON audit_chain_tombstones TO datastorage_app;
--
-- The API role then has no DELETE, no TRUNCATE and no UPDATE of event
-- columns at all, whatever the triggers say.

-- legal_holds is the history of holds: one row per hold, placed and later
-- released. At most one hold per correlation is active (released_at NULL).
-- An active hold protects every event of its correlation, including events
-- written after it was placed (the retention job and the DELETE trigger look
-- here as well as at the row flags).
CREATE TABLE legal_holds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    correlation_id  text        NOT NULL,
    reason          text        NOT NULL,
    placed_by       text        NOT NULL,
    placed_at       timestamptz NOT NULL,
    events_affected bigint      NOT NULL,
    released_by     text,
    released_at     timestamptz,
    release_reason  text,
    events_released bigint,
    CONSTRAINT legal_holds_release_check CHECK (
        (released_at IS NULL) = (released_by IS NULL) AND
        (released_at IS NULL) = (release_reason IS NULL) AND
        (released_at IS NULL) = (events_released IS NULL))
);
CREATE UNIQUE INDEX legal_holds_active_idx ON legal_holds (correlation_id) WHERE released_at IS NULL;
CREATE INDEX legal_holds_correlation_idx ON legal_holds (correlation_id, placed_at);

-- audit_chain_tombstones records the links the retention job removed, as
-- ranges of one correlation's chain: chain_seq from_seq..to_seq are gone, and
-- last_hash is the event_hash of to_seq, so the event after the range still
-- links to something. verify-chain treats a gap covered here as retention,
-- and any other gap as tampering.
CREATE TABLE audit_chain_tombstones (
    correlation_id text        NOT NULL,
    from_seq       bigint      NOT NULL,
    to_seq         bigint      NOT NULL,
    last_hash      text        NOT NULL,
    deleted_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_chain_tombstones_range_check CHECK (from_seq >= 1 AND to_seq >= from_seq)
);
CREATE INDEX audit_chain_tombstones_correlation_idx ON audit_chain_tombstones (correlation_id, from_seq);

-- Indexes retention needs:
--   * parent: every deleted row is checked by the parent foreign key ("is it
--     still referenced?"); without an index on the referencing columns each
--     check reads every partition. It also finds the rows that reference a
--     month before that month is detached. Only rows with a parent have an
--     entry.
--   * held: the rows under hold, to skip them and to list holds; empty
--     unless holds exist, so writes pay nothing for it.
--   * expiry: a BRIN summary of each row's expiry date, so "does this month
--     hold expired rows / rows not yet expired?" reads only the block ranges
--     that can match. BRIN costs next to nothing on insert.
CREATE INDEX audit_events_parent_idx ON audit_events (parent_event_date, parent_event_id)
    WHERE parent_event_id IS NOT NULL;
CREATE INDEX audit_events_held_idx ON audit_events (correlation_id) WHERE legal_hold;
CREATE INDEX audit_events_expiry_idx ON audit_events USING brin ((event_date + retention_days));

-- +goose StatementBegin
CREATE FUNCTION audit_events_guard() RETURNS trigger
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

-- Row triggers on the partitioned table are cloned onto every partition,
-- present and future. TRUNCATE triggers are statement triggers and are not:
-- truncating one partition directly needs the TRUNCATE privilege, which the
-- API role does not have.
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_guard();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_guard();

-- +goose StatementBegin
CREATE FUNCTION integrity_history_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A legal hold may be released once: the release columns go from NULL
    -- to set, nothing else changes.
    -- (Nested IFs: PL/pgSQL does not short-circuit, and OLD has no
    -- released_at on the other tables.)
    IF TG_TABLE_NAME = 'legal_holds' AND TG_OP = 'UPDATE' THEN
        IF OLD.released_at IS NULL AND
           (to_jsonb(NEW) - ARRAY['released_by', 'released_at', 'release_reason', 'events_released'])
           = (to_jsonb(OLD) - ARRAY['released_by', 'released_at', 'release_reason', 'events_released']) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '% is an append-only history: % is refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER legal_holds_history
    BEFORE UPDATE OR DELETE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION integrity_history_guard();
CREATE TRIGGER legal_holds_no_truncate
    BEFORE TRUNCATE ON legal_holds
    FOR EACH STATEMENT EXECUTE FUNCTION integrity_history_guard();
CREATE TRIGGER audit_chain_tombstones_history
    BEFORE UPDATE OR DELETE ON audit_chain_tombstones
    FOR EACH ROW EXECUTE FUNCTION integrity_history_guard();
CREATE TRIGGER audit_chain_tombstones_no_truncate
    BEFORE TRUNCATE ON audit_chain_tombstones
    FOR EACH STATEMENT EXECUTE FUNCTION integrity_history_guard();

-- A chain head only moves forward and is never removed: rewinding it would
-- hide the deletion of a chain's last events. (Writers rewrite an unchanged
-- head when a batch holds only repeats; that stays allowed.) The WHEN clause
-- is evaluated without calling the function, so the writers' upserts pay
-- next to nothing.
CREATE TRIGGER audit_chain_heads_forward
    BEFORE UPDATE ON audit_chain_heads
    FOR EACH ROW WHEN (NEW.last_seq < OLD.last_seq
        OR (NEW.last_seq = OLD.last_seq AND NEW.last_hash <> OLD.last_hash)
        OR NEW.correlation_id <> OLD.correlation_id)
    EXECUTE FUNCTION integrity_history_guard();
CREATE TRIGGER audit_chain_heads_keep
    BEFORE DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION integrity_history_guard();
CREATE TRIGGER audit_chain_heads_no_truncate
    BEFORE TRUNCATE ON audit_chain_heads
    FOR EACH STATEMENT EXECUTE FUNCTION integrity_history_guard();

-- +goose Down
DROP TRIGGER audit_chain_heads_no_truncate ON audit_chain_heads;
DROP TRIGGER audit_chain_heads_keep ON audit_chain_heads;
DROP TRIGGER audit_chain_heads_forward ON audit_chain_heads;
DROP TRIGGER audit_events_no_truncate ON audit_events;
DROP TRIGGER audit_events_append_only ON audit_events;
DROP TABLE audit_chain_tombstones;
DROP TABLE legal_holds;
DROP FUNCTION integrity_history_guard();
DROP FUNCTION audit_events_guard();
DROP INDEX audit_events_expiry_idx;
DROP INDEX audit_events_held_idx;
DROP INDEX audit_events_parent_idx;
