-- +goose Up

-- The remediation read models of CONTRACT §16 (internal/remediation).
--
-- The history context asks for the `remediation.workflow_created` events of
-- one target (event_data.target_resource, "ns/kind/name") in the last
-- tier2Window (90 days by default). Without this index the only way in is the
-- type index, which reads every remediation of every target in the window
-- (100,000 remediations in the read benchmark), or the time index, which
-- reads every event. Partial, so only the remediation events (a few per
-- remediation of tens of events) carry an entry; every other insert pays just
-- the evaluation of the predicate. Measured in bench/results/read.md.
--
-- Deliberately not here (measured there too):
--   - an index on (correlation_id, event_timestamp) for the effectiveness
--     category: audit_events_correlation_idx already finds a correlation's
--     events, tens of rows, and the category is a filter on them;
--   - an index on event_data->>'post_remediation_spec_hash' of effectiveness
--     events: a post-hash match is checked per candidate remediation of the
--     target (already few, through the index below) with the correlation
--     index, never searched across all assessments.
CREATE INDEX audit_events_remediation_target_idx
    ON audit_events ((event_data ->> 'target_resource'), event_timestamp DESC)
    WHERE event_type = 'remediation.workflow_created';

-- +goose Down
DROP INDEX audit_events_remediation_target_idx;
