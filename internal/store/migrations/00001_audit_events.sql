-- +goose Up

-- audit_events holds every accepted audit event. It is range-partitioned by
-- month on event_date (the UTC date of event_timestamp) so that time-bounded
-- queries prune partitions and retention drops whole months. Partitions are
-- created by the service (store.EnsurePartitions), not here, because they roll
-- forward with the calendar.
CREATE TABLE audit_events (
    event_id          uuid        NOT NULL,
    event_date        date        NOT NULL,
    event_timestamp   timestamptz NOT NULL,
    version           text        NOT NULL,
    event_type        text        NOT NULL,
    event_category    text        NOT NULL,
    event_action      text        NOT NULL,
    event_outcome     text        NOT NULL,
    correlation_id    text        NOT NULL,
    event_data        jsonb       NOT NULL,
    actor_type        text        NOT NULL,
    actor_id          text        NOT NULL,
    actor_ip          text,
    resource_type     text        NOT NULL,
    resource_id       text        NOT NULL,
    parent_event_id   uuid,
    parent_event_date date,
    namespace         text,
    cluster_id        text,
    severity          text        NOT NULL,
    duration_ms       integer,
    error_code        text,
    error_message     text,
    retention_days    integer     NOT NULL,
    is_sensitive      boolean     NOT NULL DEFAULT false,
    -- Integrity: the event's place in its correlation's hash chain (CONTRACT §8).
    chain_seq           bigint NOT NULL,
    event_hash          text   NOT NULL,
    previous_event_hash text   NOT NULL,
    hash_algorithm      text   NOT NULL,
    legal_hold           boolean NOT NULL DEFAULT false,
    legal_hold_reason    text,
    legal_hold_placed_by text,
    legal_hold_placed_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, event_date),
    CONSTRAINT audit_events_parent_fk FOREIGN KEY (parent_event_id, parent_event_date)
        REFERENCES audit_events (event_id, event_date),
    CONSTRAINT audit_events_outcome_check CHECK (event_outcome IN ('success', 'failure', 'pending')),
    CONSTRAINT audit_events_parent_date_check CHECK ((parent_event_id IS NULL) = (parent_event_date IS NULL))
) PARTITION BY RANGE (event_date);

-- Every list is ordered by (event_timestamp, event_id); each filter index ends
-- with those columns so a filtered page is an ordered index range scan, and a
-- keyset cursor continues where the previous page stopped.
--
-- What they cost (bench/results/experiments.md, `dsbench -experiments`): each
-- B-tree below adds some 3-5 µs of PostgreSQL CPU and 100-150 bytes of WAL to
-- every inserted row; together they are most of an insert's cost (the table
-- with its primary key alone takes a row for about a quarter of it). Each serves
-- a filter of CONTRACT §5 or an aggregation of §7; audit_events_category_idx
-- is the weakest (14 values; the time index serves pages of the common
-- categories), the first to drop if writes ever matter more than those reads.
--
-- There is deliberately no index on event_data. A GIN index adds 25 % (with
-- jsonb_path_ops) to 65 % (jsonb_ops) to the WAL of every insert, and up to
-- three quarters to its CPU, and it serves only containment (@>), not the
-- detail_key/detail_value filter, which compares event_data ->> key as text
-- and is bounded by time like every list. One key is hot: the success rate
-- per workflow (CONTRACT §7), which the AI agent asks when it chooses a
-- workflow; without an index it reads event_data of every row in the window
-- (0.3 s over 7 days at 2 M events). audit_events_workflow_idx serves it; it is
-- partial, so events without a workflow_id pay nothing for it.
CREATE INDEX audit_events_time_idx        ON audit_events (event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_correlation_idx ON audit_events (correlation_id, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_type_idx        ON audit_events (event_type, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_category_idx    ON audit_events (event_category, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_namespace_idx   ON audit_events (namespace, event_timestamp DESC, event_id DESC)
    WHERE namespace IS NOT NULL;
CREATE INDEX audit_events_resource_idx    ON audit_events (resource_id, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_actor_idx       ON audit_events (actor_id, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_workflow_idx    ON audit_events ((event_data ->> 'workflow_id'), event_timestamp DESC)
    WHERE (event_data ->> 'workflow_id') IS NOT NULL;

-- audit_chain_heads holds the last link of every correlation's hash chain, so
-- a write finds its predecessor with one primary-key lookup instead of
-- searching audit_events across partitions. Writers hold a transaction-scoped
-- advisory lock per correlation (taken in sorted order) while they extend it.
CREATE TABLE audit_chain_heads (
    correlation_id text   PRIMARY KEY,
    last_seq       bigint NOT NULL,
    last_hash      text   NOT NULL
);

-- notification_audit is the legacy typed notification record (CONTRACT §9).
CREATE TABLE notification_audit (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    remediation_id   text        NOT NULL,
    notification_id  text        NOT NULL,
    recipient        text        NOT NULL,
    channel          text        NOT NULL,
    message_summary  text        NOT NULL,
    status           text        NOT NULL,
    sent_at          timestamptz NOT NULL,
    delivery_status  text,
    error_message    text,
    escalation_level integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_audit_notification_id_key UNIQUE (notification_id)
);
CREATE INDEX notification_audit_remediation_idx ON notification_audit (remediation_id, sent_at DESC);

-- +goose Down
DROP TABLE notification_audit;
DROP TABLE audit_chain_heads;
DROP TABLE audit_events;
