-- Views for Grafana and the fleet queries.

-- Each node with its status: online while heartbeats arrive, stale after
-- three missed ones, offline after ten.
CREATE VIEW secmon.fleet_nodes AS
SELECT n.*,
       CASE
           WHEN n.last_seen >= now() - make_interval(secs => 3 * n.heartbeat_interval_seconds) THEN 'online'
           WHEN n.last_seen >= now() - make_interval(secs => 10 * n.heartbeat_interval_seconds) THEN 'stale'
           ELSE 'offline'
       END AS status
FROM secmon.nodes n;

-- Alerts still to be handled, across the fleet.
CREATE VIEW secmon.fleet_open_alerts AS
SELECT a.*, n.hostname AS node_hostname
FROM secmon.alerts a
LEFT JOIN secmon.nodes n USING (node_id)
WHERE a.status IN ('open', 'acknowledged');

-- Alerts per node, severity and status.
CREATE VIEW secmon.fleet_alert_counts AS
SELECT node_id, severity, status, count(*) AS alerts, sum(count) AS firings,
       max(last_seen) AS last_seen
FROM secmon.alerts
GROUP BY node_id, severity, status;

-- Events per node and hour.
CREATE VIEW secmon.fleet_events_hourly AS
SELECT node_id, hour, sum(count) AS events,
       sum(count) FILTER (WHERE outcome = 'failure') AS failures
FROM secmon.event_rollups
GROUP BY node_id, hour;
