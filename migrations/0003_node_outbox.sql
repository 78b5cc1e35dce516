-- What each node's outbox this database holds: the last seq applied, moved
-- in the transaction of every batch. A node that finds it lower than the seq
-- this database had confirmed knows the database lost writes (a failover to
-- a standby that had not received them, a restore from an older backup) and
-- sends its state again.
CREATE TABLE secmon.node_outbox (
    node_id text PRIMARY KEY,
    applied_seq bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
