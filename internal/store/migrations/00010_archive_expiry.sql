-- +goose Up

-- Retention of archived months (docs/archive.md, "Retention"). An archived
-- month's files are deleted once every event in it has expired and none of
-- its correlations is under an active legal hold. It happens in two
-- recorded steps so that a crash between them is finished by the next run:
--   expiring: the month's events were subtracted from the rollups and its
--             links recorded as tombstones (one transaction, under the hold
--             gate); reads no longer use the files; deleting them is due;
--   expired:  the files and the manifest are gone.
ALTER TABLE audit_archives DROP CONSTRAINT audit_archives_status_check;
ALTER TABLE audit_archives ADD CONSTRAINT audit_archives_status_check
    CHECK (status IN ('verified', 'dropped', 'restored', 'expiring', 'expired'));

-- last_retained is the last day an event of the month must be kept:
-- max(event_date + retention_days), read once from the files by the first
-- retention run that looks at the month (the month goes when it is before
-- today, as one event does in PostgreSQL). It belongs to one manifest: a
-- month archived again (another manifest) is read again.
ALTER TABLE audit_archives ADD COLUMN last_retained date;
ALTER TABLE audit_archives ADD COLUMN expiring_at timestamptz;
ALTER TABLE audit_archives ADD COLUMN expired_at timestamptz;

-- +goose StatementBegin
CREATE FUNCTION audit_archives_forget_expiry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A month retention has begun removing is gone for good: its events
    -- were subtracted from the rollups and tombstoned, so a restore (or an
    -- archive run) of it would make them count again, or half of them.
    IF OLD.status IN ('expiring', 'expired') AND NEW.status NOT IN ('expiring', 'expired') THEN
        RAISE EXCEPTION 'archived month % was removed by retention (status %): it cannot become %',
            to_char(OLD.month, 'YYYY-MM'), OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.manifest_sha256 IS DISTINCT FROM OLD.manifest_sha256 THEN
        NEW.last_retained := NULL;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_archives_forget_expiry BEFORE UPDATE ON audit_archives
    FOR EACH ROW EXECUTE FUNCTION audit_archives_forget_expiry();

-- +goose Down
DROP TRIGGER audit_archives_forget_expiry ON audit_archives;
DROP FUNCTION audit_archives_forget_expiry();
ALTER TABLE audit_archives DROP COLUMN expired_at;
ALTER TABLE audit_archives DROP COLUMN expiring_at;
ALTER TABLE audit_archives DROP COLUMN last_retained;
ALTER TABLE audit_archives DROP CONSTRAINT audit_archives_status_check;
ALTER TABLE audit_archives ADD CONSTRAINT audit_archives_status_check
    CHECK (status IN ('verified', 'dropped', 'restored'));
