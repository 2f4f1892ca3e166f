-- +goose Up

-- audit_event_ids makes an event_id unique across the whole of audit_events
-- (issue 18 item 7). The primary key of audit_events is (event_id,
-- event_date), because a partitioned table's unique keys must hold its
-- partition key; on its own it let the same id be stored once per date, and
-- the second row (a forger's) shadowed the first in GET /events/{id} and in
-- parent links.
--
-- Every stored event has one row here, written in the group-commit
-- transaction that stores the event. It is the authority for "which row is
-- event X": the write path's duplicate check, parent lookups and
-- GET /events/{id} read it (one primary-key probe on an unpartitioned table,
-- cheaper than probing audit_events' partitions). A concurrent writer of the
-- same id waits on the primary key and then fails, so two rows with one id
-- can never both commit.
--
-- What it costs: one narrow heap tuple and one B-tree entry per event
-- (bench/results, measured in the commit that added it).
CREATE TABLE audit_event_ids (
    event_id   uuid PRIMARY KEY,
    event_date date NOT NULL
);

-- The events already stored. Where an id was stored under several dates
-- before this table existed, the first stored row (created_at, then date)
-- is the original; the others stay in audit_events but nothing resolves to
-- them any more.
INSERT INTO audit_event_ids (event_id, event_date)
SELECT DISTINCT ON (event_id) event_id, event_date
FROM audit_events
ORDER BY event_id, created_at, event_date;

-- Retention deletes rows one by one (the id is freed with its row) or drops
-- a whole month (store.retentionRun.dropDetached deletes that month's ids in
-- the same transaction). The trigger runs as the table owner, like
-- retention itself.
-- +goose StatementBegin
CREATE FUNCTION audit_event_ids_release() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM audit_event_ids WHERE event_id = OLD.event_id AND event_date = OLD.event_date;
    RETURN OLD;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_events_release_id
    AFTER DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_event_ids_release();

-- audit_chain_checkpoints holds the sealed head of the verified prefix of
-- each correlation's chain (issue 18 item 8, docs/integrity.md): chain_seq,
-- event_id and event_hash of the last link a verification found intact,
-- with every link before it. The next verification starts after it instead
-- of at chain_seq 1. Only a verification writes it (integrity.Service), and
-- only forward: the trigger below refuses to move a checkpoint back, to
-- change the hash recorded for a position, to delete or to truncate. seal
-- is the service's Ed25519 signature over the row (the export signing key):
-- a checkpoint written by anyone else does not verify and is ignored. A
-- full verification (verify-chain with "full": true) ignores it and
-- re-checks every link.
CREATE TABLE audit_chain_checkpoints (
    correlation_id text        PRIMARY KEY,
    chain_seq      bigint      NOT NULL CHECK (chain_seq >= 1),
    event_id       uuid        NOT NULL,
    event_hash     text        NOT NULL,
    verified_at    timestamptz NOT NULL,
    -- events is how many stored links the verified prefix holds (rows, not
    -- chain positions: retention may have removed some).
    events         bigint      NOT NULL,
    seal           text        NOT NULL
);

CREATE TRIGGER audit_chain_checkpoints_forward
    BEFORE UPDATE ON audit_chain_checkpoints
    FOR EACH ROW WHEN (NEW.chain_seq < OLD.chain_seq
        OR (NEW.chain_seq = OLD.chain_seq AND NEW.event_hash <> OLD.event_hash)
        OR NEW.correlation_id <> OLD.correlation_id)
    EXECUTE FUNCTION integrity_history_guard();
CREATE TRIGGER audit_chain_checkpoints_keep
    BEFORE DELETE ON audit_chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION integrity_history_guard();
CREATE TRIGGER audit_chain_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_chain_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION integrity_history_guard();

-- Least privilege (see 00002):
--   GRANT SELECT, INSERT ON audit_event_ids TO datastorage_app;
--   GRANT SELECT, INSERT, UPDATE ON audit_chain_checkpoints TO datastorage_app;

-- +goose Down
DROP TABLE audit_chain_checkpoints;
DROP TRIGGER audit_events_release_id ON audit_events;
DROP FUNCTION audit_event_ids_release();
DROP TABLE audit_event_ids;
