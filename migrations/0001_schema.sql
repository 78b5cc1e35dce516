-- secmon fleet schema: what every node replicates (DESIGN.md, "Replication").
-- Each row carries the node's id; `version` (for nodes: heartbeat_seq) is the
-- node's outbox seq of the update, and an upsert only replaces an older one.

CREATE TABLE secmon.nodes (
    node_id                    text PRIMARY KEY,
    hostname                   text NOT NULL,
    version                    text NOT NULL,
    started_at                 timestamptz NOT NULL,
    last_seen                  timestamptz NOT NULL,
    uptime_seconds             bigint NOT NULL,
    events_total               bigint NOT NULL,
    events_per_second          double precision NOT NULL,
    storage_bytes              bigint NOT NULL,
    index_lag                  bigint NOT NULL,
    outbox_entries             bigint NOT NULL,
    heartbeat_interval_seconds bigint NOT NULL,
    heartbeat_seq              bigint NOT NULL
);

CREATE TABLE secmon.alerts (
    node_id     text NOT NULL,
    alert_id    bigint NOT NULL,
    rule_id     text NOT NULL,
    rule_title  text NOT NULL,
    severity    text NOT NULL,
    status      text NOT NULL,
    count       bigint NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    source_ip   text,
    host_name   text,
    user_name   text,
    assignee    text,
    correlation boolean NOT NULL,
    tags        text[] NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (node_id, alert_id)
) WITH (fillfactor = 80);  -- room for HOT updates: most updates change no indexed column
CREATE INDEX alerts_last_seen ON secmon.alerts (last_seen DESC);

-- Events each node received per hour, by host, dataset, category, outcome
-- and syslog severity; absent attributes are ''. `count` is the total.
CREATE TABLE secmon.event_rollups (
    node_id   text NOT NULL,
    hour      timestamptz NOT NULL,
    host_name text NOT NULL,
    dataset   text NOT NULL,
    category  text NOT NULL,
    outcome   text NOT NULL,
    severity  text NOT NULL,
    count     bigint NOT NULL,
    version   bigint NOT NULL,
    PRIMARY KEY (node_id, hour, host_name, dataset, category, outcome, severity)
) WITH (fillfactor = 80);
CREATE INDEX event_rollups_hour ON secmon.event_rollups (hour);
