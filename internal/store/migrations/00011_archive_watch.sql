-- +goose Up

-- The archive job's watch on a month (docs/archive.md, "Which check is
-- where"). Before the job reads a month to write its files, it arms the
-- watch: in one transaction it installs the row trigger below on the
-- month's partition (CREATE TRIGGER takes SHARE ROW EXCLUSIVE, so it waits
-- for every transaction that is writing to the partition and keeps new ones
-- out until it commits), forgets the month's earlier writes and draws a new
-- generation. A write to the partition that commits after that inserts the
-- month into audit_archive_writes, in its own transaction. The drop then
-- knows, without reading the month again, whether the month is still the
-- one the job read: the generation recorded with the archive is the armed
-- one, the trigger is still there and enabled, and no write is noted. If any
-- of that does not hold, the drop compares the whole month with the files as
-- before (store.archiveSession.DropMonth).
--
-- Only the partition of a month being archived has the trigger: writes to
-- every other month pay nothing. It goes with the partition's DROP.

-- audit_archive_watch holds the generation of each month's last arming.
CREATE TABLE audit_archive_watch (
    month      date   PRIMARY KEY CHECK (extract(day FROM month) = 1),
    generation bigint NOT NULL
);

CREATE SEQUENCE audit_archive_watch_generation;

-- audit_archive_writes holds the months written to since their last arming.
-- The trigger inserts (never updates), so that a writer whose snapshot is
-- older than the arming still leaves its mark: an insert does not depend on
-- what the writer's snapshot shows (a REPEATABLE READ writer that meets the
-- row of a concurrent writer fails to serialize, and its write rolls back).
CREATE TABLE audit_archive_writes (
    month date PRIMARY KEY
);

-- The watch is the archive job's proof: the generation an archive was
-- written under (NULL for archives written before this migration, which
-- the drop compares in full).
ALTER TABLE audit_archives ADD COLUMN watch_generation bigint;

-- The function runs as its owner (the migrations' role): a writer with the
-- API role's grants only (00002) must not fail its write to a watched month
-- for want of a grant on audit_archive_writes.
-- +goose StatementBegin
CREATE FUNCTION audit_archive_note_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO audit_archive_writes (month) VALUES (TG_ARGV[0]::date) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE audit_archives DROP COLUMN watch_generation;
DROP FUNCTION audit_archive_note_write() CASCADE;
DROP TABLE audit_archive_writes;
DROP SEQUENCE audit_archive_watch_generation;
DROP TABLE audit_archive_watch;
