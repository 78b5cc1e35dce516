//! Metric names (`secmon_<thing>_<unit>`) and their descriptions. Labels have
//! bounded cardinality: a source name, a route, a status code, never an IP.

pub const EVENTS_RECEIVED: &str = "secmon_events_received_total";
pub const EVENTS_REJECTED: &str = "secmon_events_rejected_total";
pub const EVENTS_PARSED: &str = "secmon_events_parsed_total";
pub const PARSE_UNRECOGNISED: &str = "secmon_parse_unrecognised_total";
pub const EVENTS_TRUNCATED: &str = "secmon_events_truncated_total";
pub const EVENTS_DROPPED: &str = "secmon_events_dropped_total";
pub const EVENTS_STORED: &str = "secmon_events_stored_total";
pub const INGEST_THROTTLED: &str = "secmon_ingest_throttled_total";
pub const BATCH_COMMIT_SECONDS: &str = "secmon_batch_commit_seconds";
pub const BATCH_EVENTS: &str = "secmon_batch_events";
pub const COMMIT_ERRORS: &str = "secmon_commit_errors_total";
pub const INDEX_LAG: &str = "secmon_index_lag_events";
pub const INDEX_COMMIT_SECONDS: &str = "secmon_index_commit_seconds";
pub const INDEX_ERRORS: &str = "secmon_index_errors_total";
pub const INDEX_READ_BACK: &str = "secmon_index_read_back_events_total";
pub const RETENTION_DELETED: &str = "secmon_retention_deleted_events_total";
pub const CACHE_REQUESTS: &str = "secmon_cache_requests_total";
pub const ALERTS_RAISED: &str = "secmon_alerts_raised_total";
pub const ALERT_CHANGES: &str = "secmon_alert_changes_total";
pub const RULE_EVAL_SECONDS: &str = "secmon_rule_evaluation_seconds";
pub const CORRELATION_GROUPS: &str = "secmon_correlation_groups";
pub const CORRELATION_GROUPS_DROPPED: &str = "secmon_correlation_groups_dropped_total";
pub const LOGINS: &str = "secmon_logins_total";
pub const RATE_LIMITED: &str = "secmon_rate_limited_total";
pub const LOCKOUT_REFUSALS: &str = "secmon_login_lockout_refusals_total";
pub const PASSWORD_HASH_BUSY: &str = "secmon_password_hash_busy_total";
pub const PASSWORD_CHANGES: &str = "secmon_password_changes_total";
pub const TOKEN_REFRESHES: &str = "secmon_token_refreshes_total";
pub const FORWARDED_IGNORED: &str = "secmon_forwarded_headers_ignored_total";
pub const UNAUTHENTICATED: &str = "secmon_unauthenticated_requests_total";
pub const SUBSCRIPTION_LAGGED: &str = "secmon_subscription_lagged_total";
pub const API_PANICS: &str = "secmon_api_panics_total";
pub const GRAPHQL_REFUSED: &str = "secmon_graphql_refused_total";
pub const CONSOLE_REFUSED: &str = "secmon_console_refused_total";
pub const HTTP_REQUESTS: &str = "secmon_http_requests_total";
pub const HTTP_REQUEST_SECONDS: &str = "secmon_http_request_duration_seconds";
pub const TLS_RELOADS: &str = "secmon_tls_reloads_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "secmon_tls_handshake_failures_total";
pub const REPLICATION_LAG_ENTRIES: &str = "secmon_replication_lag_entries";
pub const REPLICATION_LAG_SECONDS: &str = "secmon_replication_lag_seconds";
pub const REPLICATION_ROWS: &str = "secmon_replication_rows_total";
pub const REPLICATION_ERRORS: &str = "secmon_replication_errors_total";
pub const REPLICATION_BATCH_SECONDS: &str = "secmon_replication_batch_seconds";
pub const REPLICATION_RESENDS: &str = "secmon_replication_resends_total";
pub const EXPORT_LAG_EVENTS: &str = "secmon_export_lag_events";
pub const EXPORT_LAG_SECONDS: &str = "secmon_export_lag_seconds";
pub const EXPORT_EVENTS: &str = "secmon_export_events_total";
pub const EXPORT_ERRORS: &str = "secmon_export_errors_total";
pub const EXPORT_BATCH_SECONDS: &str = "secmon_export_batch_seconds";
pub const EXPORT_DROPPED: &str = "secmon_export_dropped_events_total";
pub const BACKUPS: &str = "secmon_backups_total";
pub const BACKUP_LAST_SUCCESS: &str = "secmon_backup_last_success_timestamp_seconds";
pub const FLEET_READ_LAG_SECONDS: &str = "secmon_fleet_read_replica_lag_seconds";
pub const FLEET_READ_FALLBACKS: &str = "secmon_fleet_read_fallbacks_total";
pub const NOTIFICATIONS_SENT: &str = "secmon_notifications_sent_total";
pub const NOTIFICATION_FAILURES: &str = "secmon_notification_failures_total";
pub const NOTIFICATIONS_PENDING: &str = "secmon_notifications_pending";
pub const RESPONSE_BLOCKS: &str = "secmon_response_blocks_total";
pub const RESPONSE_ERRORS: &str = "secmon_response_errors_total";
pub const RESPONSE_REFUSED: &str = "secmon_response_refused_total";
pub const WRITE_QUEUE: &str = "secmon_write_queue_batches";
pub const WRITE_QUEUE_CAPACITY: &str = "secmon_write_queue_capacity_batches";
pub const WRITE_QUEUE_BYTES: &str = "secmon_write_queue_bytes";
pub const WRITE_QUEUE_CAPACITY_BYTES: &str = "secmon_write_queue_capacity_bytes";
pub const GELF_LIMITED: &str = "secmon_gelf_limited_total";
pub const INGEST_CONNECTIONS: &str = "secmon_ingest_connections";
pub const INGEST_CONNECTIONS_MAX: &str = "secmon_ingest_connections_max";
pub const INGEST_CONNECTIONS_REFUSED: &str = "secmon_ingest_connections_refused_total";
pub const INGEST_CONNECTIONS_CLOSED: &str = "secmon_ingest_connections_closed_total";
pub const INGEST_ACCEPT_ERRORS: &str = "secmon_ingest_accept_errors_total";
pub const STORAGE_BYTES: &str = "secmon_storage_bytes";
pub const DISK_FREE: &str = "secmon_disk_free_bytes";
pub const DISK_TOTAL: &str = "secmon_disk_total_bytes";
pub const BUILD_INFO: &str = "secmon_build_info";

pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
pub const BATCH_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 50_000.0];

pub(super) fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS_RECEIVED, "Events received, by source");
    describe_counter!(EVENTS_REJECTED, "Events rejected as malformed, by source");
    describe_counter!(
        EVENTS_PARSED,
        "Events a program parser recognised, by source"
    );
    describe_counter!(
        PARSE_UNRECOGNISED,
        "Lines from a program with a parser whose message it did not recognise, by program"
    );
    describe_counter!(
        EVENTS_TRUNCATED,
        "Messages cut to ingest.max_message_bytes, by source"
    );
    describe_counter!(
        EVENTS_DROPPED,
        "Events lost before the store (UDP with a full queue), by source"
    );
    describe_counter!(EVENTS_STORED, "Events committed to the store");
    describe_gauge!(
        REPLICATION_LAG_ENTRIES,
        Unit::Count,
        "Outbox entries a sink has not applied yet, by sink"
    );
    describe_gauge!(
        REPLICATION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest outbox entry a sink has not applied, by sink"
    );
    describe_counter!(
        REPLICATION_ROWS,
        "Rows (Postgres) or messages (Redis) a sink wrote, by sink"
    );
    describe_counter!(
        REPLICATION_ERRORS,
        "Failed replication batches (each retried), by sink"
    );
    describe_counter!(
        REPLICATION_RESENDS,
        "Times a receiver was found to have lost writes it had confirmed (a failover to a replica that had not received them) and the node's state was sent again, by sink"
    );
    describe_gauge!(
        EXPORT_LAG_EVENTS,
        Unit::Count,
        "Stored events an export sink has not taken yet, by sink"
    );
    describe_gauge!(
        EXPORT_LAG_SECONDS,
        Unit::Seconds,
        "Age (receive time) of the oldest event an export sink has not taken, by sink"
    );
    describe_counter!(
        EXPORT_EVENTS,
        "Events an export sink's receiver confirmed, by sink"
    );
    describe_counter!(
        EXPORT_ERRORS,
        "Failed export batches (each retried), by sink"
    );
    describe_counter!(
        EXPORT_DROPPED,
        "Events retention deleted before an export sink took them (export.retention_drops_unexported), or too large for the NATS server, by sink"
    );
    describe_counter!(
        BACKUPS,
        "Scheduled backups, by result (ok: made, verified and stored in backup.target; failed)"
    );
    describe_gauge!(
        BACKUP_LAST_SUCCESS,
        Unit::Seconds,
        "When the last scheduled backup was made and verified (Unix time)"
    );
    describe_gauge!(
        FLEET_READ_LAG_SECONDS,
        Unit::Seconds,
        "How far the read replica of DATABASE_READ_URL is behind its primary (0: caught up)"
    );
    describe_counter!(
        FLEET_READ_FALLBACKS,
        "Fleet queries the read replica could not answer, answered by the primary instead"
    );
    describe_counter!(
        NOTIFICATIONS_SENT,
        "Notification messages sent, by channel and kind (alert or digest)"
    );
    describe_counter!(
        NOTIFICATION_FAILURES,
        "Failed notification sends (each retried), by channel"
    );
    describe_counter!(
        RESPONSE_BLOCKS,
        "Source addresses blocked, by origin (alert or manual)"
    );
    describe_counter!(
        RESPONSE_ERRORS,
        "Response actions that failed, by action kind"
    );
    describe_counter!(
        RESPONSE_REFUSED,
        "Response actions not taken (in a dry run: would not be), by reason: untrusted_source, protected_address, rate_limited, max_active, max_active_untrusted"
    );
    describe_gauge!(
        NOTIFICATIONS_PENDING,
        Unit::Count,
        "Notifications waiting to be sent, by channel"
    );
    describe_histogram!(
        REPLICATION_BATCH_SECONDS,
        Unit::Seconds,
        "Time to apply one outbox batch, by sink"
    );
    describe_histogram!(
        EXPORT_BATCH_SECONDS,
        Unit::Seconds,
        "Time to send one batch of events and have it confirmed, by export sink"
    );
    describe_counter!(ALERTS_RAISED, "New alerts (not repeats), by severity");
    describe_counter!(
        ALERT_CHANGES,
        "Analysts' changes applied to alerts, by action (acknowledge, resolve, ...)"
    );
    describe_histogram!(
        RULE_EVAL_SECONDS,
        Unit::Seconds,
        "Rule evaluation time of one write batch"
    );
    describe_gauge!(
        CORRELATION_GROUPS,
        Unit::Count,
        "Groups held in the correlation windows (both sets: all events, trusted events)"
    );
    describe_counter!(
        CORRELATION_GROUPS_DROPPED,
        "Correlation groups dropped while still open because a set of windows held its most groups (the group fed longest ago goes)"
    );
    describe_counter!(
        INGEST_THROTTLED,
        "Ingest requests refused because the write queue was full, by source"
    );
    describe_histogram!(
        BATCH_COMMIT_SECONDS,
        Unit::Seconds,
        "Latency of one group commit"
    );
    describe_histogram!(BATCH_EVENTS, Unit::Count, "Events per group commit");
    describe_counter!(COMMIT_ERRORS, "Failed group commits");
    describe_gauge!(
        WRITE_QUEUE,
        Unit::Count,
        "Batches waiting for the writer after its last commit"
    );
    describe_gauge!(
        WRITE_QUEUE_CAPACITY,
        Unit::Count,
        "Batches the write queue holds (ingest.queue_capacity); past it ingest answers 429 or drops datagrams"
    );
    describe_gauge!(
        WRITE_QUEUE_BYTES,
        Unit::Bytes,
        "Bytes of the events queued for the writer or being committed"
    );
    describe_gauge!(
        WRITE_QUEUE_CAPACITY_BYTES,
        Unit::Bytes,
        "Bytes the write queue holds (ingest.queue_max_bytes); past it ingest answers 429, drops datagrams or stops reading streams"
    );
    describe_counter!(
        GELF_LIMITED,
        "GELF input cut or dropped by a limit, by reason (payload_truncated, field_truncated, too_many_chunks, message_too_large, reassembly_full, chunk_timeout)"
    );
    describe_gauge!(
        INGEST_CONNECTIONS,
        Unit::Count,
        "Open connections of a TCP ingest listener, by source"
    );
    describe_gauge!(
        INGEST_CONNECTIONS_MAX,
        Unit::Count,
        "Connections a TCP ingest listener accepts at most now (the configured cap, lowered to fit the file descriptor limit), by source"
    );
    describe_counter!(
        INGEST_CONNECTIONS_REFUSED,
        "TCP ingest connections closed at once, by source and reason (listener_full, source_full, fd_budget)"
    );
    describe_counter!(
        INGEST_CONNECTIONS_CLOSED,
        "TCP ingest connections closed by the node, by source and reason (idle)"
    );
    describe_counter!(
        INGEST_ACCEPT_ERRORS,
        "Failed accepts of a TCP ingest listener, by source and kind (fd_exhausted, other); the listener backs off"
    );
    describe_gauge!(
        STORAGE_BYTES,
        Unit::Bytes,
        "Size on disk, by part (store: the redb file, index: the tantivy directory)"
    );
    describe_gauge!(
        DISK_FREE,
        Unit::Bytes,
        "Bytes available to secmon on the data directory's filesystem"
    );
    describe_gauge!(
        DISK_TOTAL,
        Unit::Bytes,
        "Size of the data directory's filesystem"
    );
    describe_gauge!(
        INDEX_LAG,
        Unit::Count,
        "Events stored but not yet searchable"
    );
    describe_histogram!(
        INDEX_COMMIT_SECONDS,
        Unit::Seconds,
        "Latency of one index commit"
    );
    describe_counter!(INDEX_ERRORS, "Indexing failures (retried)");
    describe_counter!(
        INDEX_READ_BACK,
        "Events the indexer read back from the store instead of taking them from the writer in memory (the hand-over had no room for them, or at start-up)"
    );
    describe_counter!(
        RETENTION_DELETED,
        "Events deleted by retention, by reason (age, size)"
    );
    describe_counter!(
        CACHE_REQUESTS,
        "Cache look-ups, by cache and result (hit, miss)"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the running secmon's version in the version label"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests, by server, route and status");
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        Unit::Seconds,
        "HTTP request latency, by server and route"
    );
    describe_counter!(
        LOGINS,
        "Password logins, by result (success, failure, locked, busy)"
    );
    describe_counter!(
        LOCKOUT_REFUSALS,
        "Logins, password changes and refreshes refused by a lockout before any hashing, by limit (account, address)"
    );
    describe_counter!(
        PASSWORD_HASH_BUSY,
        "Requests refused because every password-hashing slot stayed busy, by operation"
    );
    describe_counter!(
        PASSWORD_CHANGES,
        "changePassword calls, by result (success, failure, locked, busy)"
    );
    describe_counter!(
        TOKEN_REFRESHES,
        "Refresh-token trades, by result (success, reused, refused, unknown, locked)"
    );
    describe_counter!(
        FORWARDED_IGNORED,
        "Requests whose Forwarded / X-Forwarded-For was ignored, by reason (untrusted_peer, malformed)"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429, by server and limit (ip, principal)"
    );
    describe_counter!(
        UNAUTHENTICATED,
        "Requests refused for a missing or invalid credential, by server"
    );
    describe_counter!(
        SUBSCRIPTION_LAGGED,
        "Messages a slow subscriber lost to its bounded buffer, by feed (alerts, events)"
    );
    describe_counter!(
        TLS_RELOADS,
        "Certificate reloads (SIGHUP or a changed file), by result (ok, error: the old certificate stays)"
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "Syslog TLS connections refused at the handshake, by source and reason (client_certificate_missing, client_certificate_invalid, incompatible, timeout, other)"
    );
}
