-- Where each node's API answers (`fleet.api_url`), for the fleet search.
ALTER TABLE secmon.nodes ADD COLUMN api_url text;

-- The view lists the nodes' columns as they were when it was made: again,
-- with the new one.
DROP VIEW secmon.fleet_nodes;
CREATE VIEW secmon.fleet_nodes AS
SELECT n.*,
       CASE
           WHEN n.last_seen >= now() - make_interval(secs => 3 * n.heartbeat_interval_seconds) THEN 'online'
           WHEN n.last_seen >= now() - make_interval(secs => 10 * n.heartbeat_interval_seconds) THEN 'stale'
           ELSE 'offline'
       END AS status
FROM secmon.nodes n;
