//! Semantic checks on the effective configuration, run at start-up and by
//! `secmon config check`. All problems are returned at once.

use std::fs::File;
use std::path::Path;

use super::Problem;
use super::types::{Config, Environment};

const SOURCE: &str = "configuration";

/// The shortest `JWT_SECRET` accepted in production (HS256 key).
const MIN_JWT_SECRET_BYTES: usize = 32;

pub fn validate(cfg: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_port_conflicts(cfg, &mut problems);
    check_sizes(cfg, &mut problems);
    check_api(cfg, &mut problems);
    check_tls(cfg, &mut problems);
    check_client_ca(cfg, &mut problems);
    check_sources(cfg, &mut problems);
    check_channels(cfg, &mut problems);
    check_response(cfg, &mut problems);
    check_database_tls(cfg, &mut problems);
    check_export(cfg, &mut problems);
    check_backup(cfg, &mut problems);
    check_fleet(cfg, &mut problems);
    if cfg.environment == Environment::Production {
        check_production_secrets(cfg, &mut problems);
    }
    problems
}

fn check_port_conflicts(cfg: &Config, problems: &mut Vec<Problem>) {
    let listeners = cfg.ports.enabled();
    for (i, (name, port, protocol)) in listeners.iter().enumerate() {
        if *port == 0 {
            continue;
        }
        if let Some((other, _, _)) = listeners[..i]
            .iter()
            .find(|(_, p, proto)| p == port && proto == protocol)
        {
            problems.push(Problem::new(
                SOURCE,
                format!("ports.{name}"),
                format!("port {port}/{protocol} is also used by {other}: give each listener its own port"),
            ));
        }
    }
}

fn check_sizes(cfg: &Config, problems: &mut Vec<Problem>) {
    let sizes = [
        ("ingest.max_body_bytes", cfg.ingest.max_body_bytes),
        ("ingest.max_message_bytes", cfg.ingest.max_message_bytes),
        ("ingest.queue_capacity", cfg.ingest.queue_capacity),
        ("ingest.queue_max_bytes", cfg.ingest.queue_max_bytes),
        ("ingest.batch_max_events", cfg.ingest.batch_max_events),
        (
            "ingest.connections.max_per_listener",
            cfg.ingest.connections.max_per_listener,
        ),
        (
            "ingest.connections.max_per_source",
            cfg.ingest.connections.max_per_source,
        ),
        (
            "ingest.connections.idle_timeout_seconds",
            usize::try_from(cfg.ingest.connections.idle_timeout_seconds).unwrap_or(usize::MAX),
        ),
        ("index.commit_max_events", cfg.index.commit_max_events),
        (
            "ingest.files.poll_interval_ms",
            usize::try_from(cfg.ingest.files.poll_interval_ms).unwrap_or(usize::MAX),
        ),
        (
            "retention.check_interval_seconds",
            usize::try_from(cfg.retention.check_interval_seconds).unwrap_or(usize::MAX),
        ),
        ("replication.batch_size", cfg.replication.batch_size),
        (
            "replication.outbox_max_entries",
            usize::try_from(cfg.replication.outbox_max_entries).unwrap_or(usize::MAX),
        ),
        (
            "replication.heartbeat_interval_seconds",
            usize::try_from(cfg.replication.heartbeat_interval_seconds).unwrap_or(usize::MAX),
        ),
        (
            "replication.retry_max_seconds",
            usize::try_from(cfg.replication.retry_max_seconds).unwrap_or(usize::MAX),
        ),
        (
            "replication.postgres_pool_size",
            cfg.replication.postgres_pool_size,
        ),
    ];
    let interval = usize::try_from(cfg.index.commit_interval_ms).unwrap_or(usize::MAX);
    for (key, value) in sizes
        .into_iter()
        .chain([("index.commit_interval_ms", interval)])
    {
        if value == 0 {
            problems.push(Problem::new(
                SOURCE,
                key,
                "is 0: set a value greater than 0",
            ));
        }
    }
}

/// The `api` limits: none may be 0 (that would refuse everything), and the
/// search limits stay within what the index parses at all.
fn check_api(cfg: &Config, problems: &mut Vec<Problem>) {
    let a = &cfg.api;
    let wide = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let limits = [
        ("api.max_document_bytes", a.max_document_bytes),
        ("api.max_document_depth", a.max_document_depth),
        ("api.max_query_depth", a.max_query_depth),
        ("api.max_complexity", a.max_complexity),
        ("api.max_items_per_request", a.max_items_per_request),
        (
            "api.request_timeout_seconds",
            wide(a.request_timeout_seconds),
        ),
        ("api.max_search_query_bytes", a.max_search_query_bytes),
        ("api.max_search_query_depth", a.max_search_query_depth),
        (
            "api.max_subscriptions_per_connection",
            a.max_subscriptions_per_connection,
        ),
        (
            "api.ws_messages_per_second",
            wide(a.ws_messages_per_second.into()),
        ),
        ("api.ws_message_burst", wide(a.ws_message_burst.into())),
        ("api.max_ws_message_bytes", a.max_ws_message_bytes),
        ("api.max_ws_connections", a.max_ws_connections),
        (
            "api.max_ws_connections_per_address",
            a.max_ws_connections_per_address,
        ),
    ];
    for (key, value) in limits {
        if value == 0 {
            problems.push(Problem::new(
                SOURCE,
                key,
                "is 0: set a value greater than 0",
            ));
        }
    }
    let ceilings = [
        (
            "api.max_search_query_bytes",
            a.max_search_query_bytes,
            crate::store::index::MAX_QUERY_BYTES,
        ),
        (
            "api.max_search_query_depth",
            a.max_search_query_depth,
            crate::store::index::MAX_QUERY_DEPTH,
        ),
    ];
    for (key, value, most) in ceilings {
        if value > most {
            problems.push(Problem::new(
                SOURCE,
                key,
                format!("is {value}: the index parses at most {most}, set it to {most} or less"),
            ));
        }
    }
}

fn check_tls(cfg: &Config, problems: &mut Vec<Problem>) {
    let production = cfg.environment == Environment::Production;
    if production && !cfg.tls.enabled {
        problems.push(Problem::new(
            SOURCE,
            "tls.enabled",
            "TLS is off: production needs it, set TLS_ENABLED=true or tls.enabled: true (see docs/DEPLOYMENT.md)",
        ));
    }
    if production || cfg.tls.enabled {
        let files = [
            (
                "tls.cert_path",
                "TLS_CERT_PATH",
                "certificate",
                &cfg.tls.cert_path,
            ),
            (
                "tls.key_path",
                "TLS_KEY_PATH",
                "private key",
                &cfg.tls.key_path,
            ),
        ];
        for (key, var, what, path) in files {
            if let Err(reason) = readable(path) {
                problems.push(Problem::new(
                    SOURCE,
                    key,
                    format!(
                        "cannot read the TLS {what} {} ({reason}): set {var} to a readable file (see docs/DEPLOYMENT.md)",
                        path.display()
                    ),
                ));
            }
        }
    }
}

/// The syslog client CA bundle must be readable whenever it is set: mutual
/// TLS that silently does not apply would let anyone send.
fn check_client_ca(cfg: &Config, problems: &mut Vec<Problem>) {
    let Some(path) = &cfg.tls.syslog_client_ca_path else {
        return;
    };
    if let Err(reason) = readable(path) {
        problems.push(Problem::new(
            SOURCE,
            "tls.syslog_client_ca_path",
            format!(
                "cannot read the syslog TLS client CA bundle {} ({reason}): set SYSLOG_TLS_CLIENT_CA_PATH to a readable PEM file, or unset it to accept syslog TLS clients without a certificate",
                path.display()
            ),
        ));
    }
}

fn check_sources(cfg: &Config, problems: &mut Vec<Problem>) {
    let listeners = &cfg.exposure.listeners;
    for (name, listener) in [
        ("syslog_udp", &listeners.syslog_udp),
        ("gelf_udp", &listeners.gelf_udp),
    ] {
        if !listener.proxy_protocol_from.is_empty() {
            problems.push(Problem::new(
                SOURCE,
                format!("exposure.listeners.{name}.proxy_protocol_from"),
                "the PROXY protocol is for TCP listeners (a datagram carries no header): remove it, or put the balancer in front of syslog_tcp, syslog_tls or gelf_tcp",
            ));
        }
    }
    for (i, pattern) in cfg.ingest.files.paths.iter().enumerate() {
        if let Err(e) = glob::Pattern::new(pattern) {
            problems.push(Problem::new(
                SOURCE,
                format!("ingest.files.paths[{i}]"),
                format!("`{pattern}` is not a valid path or glob: {e}"),
            ));
        } else if !Path::new(pattern).is_absolute() {
            problems.push(Problem::new(
                SOURCE,
                format!("ingest.files.paths[{i}]"),
                format!("`{pattern}` is relative: give an absolute path, the daemon's working directory is not yours"),
            ));
        }
    }
}

fn check_channels(cfg: &Config, problems: &mut Vec<Problem>) {
    use super::types::ChannelKind;
    let mut seen = std::collections::HashSet::new();
    for (i, c) in cfg.notifications.channels.iter().enumerate() {
        let key = |field: &str| format!("notifications.channels[{i}].{field}");
        let mut problem = |field: &str, message: String| {
            problems.push(Problem::new(SOURCE, key(field), message));
        };
        if c.name.is_empty() {
            problem("name", "is empty: give each channel a name".into());
        } else if !seen.insert(c.name.as_str()) {
            problem("name", format!("`{}` is used by another channel", c.name));
        }
        let needs_url = c.kind != ChannelKind::Email;
        if needs_url && c.url.as_ref().is_none_or(|u| u.expose().is_empty()) {
            problem("url", "is not set: this kind of channel posts to it".into());
        }
        if let Some(url) = c.url.as_ref().filter(|_| needs_url)
            && !(url.expose().starts_with("https://") || url.expose().starts_with("http://"))
        {
            problem("url", "must start with https:// (or http://)".into());
        }
        // The values are secrets: a problem names the header, never its value.
        for (name, value) in &c.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problem("headers", format!("{name:?} is not an HTTP header name"));
            } else if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                problem(
                    "headers",
                    format!(
                        "the value of {name} is not a valid header value (visible ASCII, no line breaks)"
                    ),
                );
            }
        }
        if c.kind == ChannelKind::Email {
            if c.smtp_url.as_ref().is_none_or(|u| u.expose().is_empty()) {
                problem(
                    "smtp_url",
                    "is not set: smtps://user:pass@host:465 or smtp://user:pass@host:587 (STARTTLS)".into(),
                );
            }
            if c.from.as_deref().is_none_or(str::is_empty) {
                problem("from", "is not set: the sender address".into());
            }
            if c.to.is_empty() {
                problem("to", "is empty: give at least one recipient".into());
            }
        }
        if !["informational", "low", "medium", "high", "critical"]
            .contains(&c.min_severity.as_str())
        {
            problem(
                "min_severity",
                format!(
                    "`{}` is not a level: informational, low, medium, high or critical",
                    c.min_severity
                ),
            );
        }
        if c.max_messages_per_minute == 0 {
            problem(
                "max_messages_per_minute",
                "is 0: set a value greater than 0".into(),
            );
        }
        if c.on.is_empty() {
            problem("on", "is empty: raised, changed or both".into());
        }
        if let Some(ca) = &c.ca_path
            && let Err(e) = readable(ca)
        {
            problem("ca_path", format!("cannot read {}: {e}", ca.display()));
        }
    }
}

fn check_response(cfg: &Config, problems: &mut Vec<Problem>) {
    use super::types::ActionKind;
    let r = &cfg.response;
    if !r.enabled && !r.actions.is_empty() {
        problems.push(Problem::new(
            SOURCE,
            "response.enabled",
            "is false: the response.actions never run; set it to true (or dry_run: true to try them)",
        ));
    }
    if r.enabled && r.nft.is_empty() {
        problems.push(Problem::new(
            SOURCE,
            "response.nft",
            "is empty: give the nft program",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, a) in r.actions.iter().enumerate() {
        let mut problem = |field: &str, message: String| {
            problems.push(Problem::new(
                SOURCE,
                format!("response.actions[{i}].{field}"),
                message,
            ));
        };
        if a.name.is_empty() || !seen.insert(a.name.as_str()) {
            problem("name", format!("`{}` is empty or used twice", a.name));
        }
        if a.kind == ActionKind::Command && a.command.is_empty() {
            problem(
                "command",
                "is empty: give the program and its arguments".into(),
            );
        }
        if a.kind == ActionKind::Webhook && a.url.as_ref().is_none_or(|u| u.expose().is_empty()) {
            problem("url", "is not set".into());
        }
        if !["informational", "low", "medium", "high", "critical"]
            .contains(&a.min_severity.as_str())
        {
            problem(
                "min_severity",
                format!(
                    "`{}` is not a level: informational, low, medium, high or critical",
                    a.min_severity
                ),
            );
        }
    }
}

/// The export sinks and the S3 client (docs/EXPORT.md). The messages never
/// repeat `NATS_URL` (it may hold a password).
fn check_export(cfg: &Config, problems: &mut Vec<Problem>) {
    let (export, s3) = (&cfg.export, &cfg.s3);
    let mut problem = |key: &str, reason: String| {
        problems.push(Problem::new(SOURCE, key, reason));
    };
    if let Some(url) = &export.nats_url {
        match crate::export::nats::check_url(url.expose()) {
            Err(reason) => problem("export.nats_url", format!("NATS_URL {reason}")),
            Ok(false) if cfg.environment == Environment::Production => problem(
                "export.nats_url",
                "NATS_URL sends events in clear text to a server off this host: production needs tls:// (export.nats_ca_path for a private CA)".to_owned(),
            ),
            Ok(_) => {}
        }
    }
    let stream = &export.nats_stream;
    if stream.is_empty() || stream.contains(|c: char| c.is_whitespace() || ".*>/\\".contains(c)) {
        problem(
            "export.nats_stream",
            format!(
                "`{stream}` is not a JetStream stream name: letters, digits, - and _ (e.g. SECMON_EVENTS)"
            ),
        );
    }
    let prefix = &export.nats_subject_prefix;
    if prefix.is_empty()
        || prefix.split('.').any(|token| {
            token.is_empty() || token.contains(|c: char| c.is_whitespace() || "*>".contains(c))
        })
    {
        problem(
            "export.nats_subject_prefix",
            format!(
                "`{prefix}` is not a subject prefix: tokens of letters, digits, - and _ separated by dots (e.g. secmon)"
            ),
        );
    }
    if let Some(url) = &export.archive_url
        && let Err(reason) = crate::objects::check_url(url)
    {
        problem("export.archive_url", format!("ARCHIVE_URL {reason}"));
    }
    let ranges = [
        (
            "export.nats_batch_size",
            export.nats_batch_size as u64,
            100_000,
        ),
        (
            "export.archive_max_rows",
            export.archive_max_rows as u64,
            1_000_000,
        ),
        (
            "export.archive_flush_seconds",
            export.archive_flush_seconds,
            86_400,
        ),
        (
            "export.nats_duplicate_window_seconds",
            export.nats_duplicate_window_seconds,
            7 * 86_400,
        ),
    ];
    for (key, value, most) in ranges {
        if value == 0 || value > most {
            problem(key, format!("is {value}: set 1 to {most}"));
        }
    }
    for (key, path) in [
        ("export.nats_ca_path", &export.nats_ca_path),
        ("s3.ca_path", &s3.ca_path),
    ] {
        if let Some(path) = path
            && let Err(e) = readable(path)
        {
            problem(key, format!("cannot read {}: {e}", path.display()));
        }
    }
    if s3.allow_http && cfg.environment == Environment::Production {
        let loopback = s3.endpoint_url.as_deref().is_some_and(|url| {
            let authority = url.split("://").nth(1).unwrap_or_default();
            let authority = authority.split('/').next().unwrap_or_default();
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => authority.split(':').next().unwrap_or_default(),
            };
            host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if !loopback {
            problem(
                "s3.allow_http",
                "AWS_ALLOW_HTTP sends events and backups in clear text: production allows it only for an endpoint on the loopback interface; use https:// (with s3.ca_path for a private CA)".to_owned(),
            );
        }
    }
}

fn check_backup(cfg: &Config, problems: &mut Vec<Problem>) {
    let backup = &cfg.backup;
    let mut problem = |key: &str, reason: &str| {
        problems.push(Problem::new(SOURCE, key, reason));
    };
    match &backup.target {
        None if backup.schedule.is_some() => problem(
            "backup.target",
            "backup.schedule is set without a target: set backup.target to a directory or s3://bucket/prefix/",
        ),
        Some(target) if !target.starts_with("s3://") && !target.starts_with('/') => problem(
            "backup.target",
            "is neither an absolute directory nor s3://bucket/prefix/",
        ),
        Some(target)
            if target.starts_with("s3://") && crate::objects::check_url(target).is_err() =>
        {
            problem("backup.target", "use s3://bucket/prefix/")
        }
        _ => {}
    }
    if backup.keep == 0 {
        problem("backup.keep", "is 0: keep at least the newest backup");
    }
}

/// The fleet credential and where this node's API is published. The
/// messages never repeat the key.
fn check_fleet(cfg: &Config, problems: &mut Vec<Problem>) {
    let mut problem = |key: &str, reason: String| {
        problems.push(Problem::new(SOURCE, key, reason));
    };
    if let Some(key) = &cfg.auth.fleet_api_key
        && key.expose().len() < MIN_JWT_SECRET_BYTES
    {
        problem(
            "auth.fleet_api_key",
            format!(
                "FLEET_API_KEY is {} bytes: it needs at least {MIN_JWT_SECRET_BYTES} (every node accepts it as a reader), generate one with `openssl rand -base64 48`",
                key.expose().len()
            ),
        );
    }
    if let Some(url) = &cfg.fleet.api_url {
        let https = url.starts_with("https://");
        if !https && !url.starts_with("http://") {
            problem(
                "fleet.api_url",
                "FLEET_API_URL is not an http(s):// URL (https://node-a.example:8000)".to_owned(),
            );
        } else if !https && cfg.environment == Environment::Production {
            problem(
                "fleet.api_url",
                "FLEET_API_URL is http://: production sends the fleet credential over TLS only, use https://".to_owned(),
            );
        }
    }
    if cfg.fleet.search_timeout_ms == 0 || cfg.fleet.search_timeout_ms > 60_000 {
        problem(
            "fleet.search_timeout_ms",
            format!("is {}: set 1 to 60000", cfg.fleet.search_timeout_ms),
        );
    }
    if let Some(path) = &cfg.fleet.ca_path
        && let Err(e) = readable(path)
    {
        problem(
            "fleet.ca_path",
            format!("cannot read {}: {e}", path.display()),
        );
    }
}

fn readable(path: &Path) -> Result<(), std::io::Error> {
    let file = File::open(path)?;
    if file.metadata()?.is_file() {
        Ok(())
    } else {
        Err(std::io::Error::other("not a file"))
    }
}

/// `DATABASE_URL`'s and `DATABASE_READ_URL`'s `sslmode` is one libpq
/// knows, and verifies the server when
/// `replication.postgres_require_verified_tls` says it must. The messages
/// never repeat the URL (it may hold a password).
fn check_database_tls(cfg: &Config, problems: &mut Vec<Problem>) {
    let services = &cfg.services;
    if services.database_read_url.is_some() && services.database_url.is_none() {
        problems.push(Problem::new(
            SOURCE,
            "services.database_read_url",
            "DATABASE_READ_URL is set without DATABASE_URL: the read replica serves the fleet view, which needs the primary too",
        ));
    }
    for (key, var, url) in [
        (
            "services.database_url",
            "DATABASE_URL",
            &services.database_url,
        ),
        (
            "services.database_read_url",
            "DATABASE_READ_URL",
            &services.database_read_url,
        ),
    ] {
        let Some(url) = url else {
            continue;
        };
        match crate::replicate::postgres::tls_request(url.expose()) {
            Err(reason) => problems.push(Problem::new(SOURCE, key, reason)),
            Ok(tls) if cfg.replication.postgres_require_verified_tls && !tls.mode.verifies() => {
                problems.push(Problem::new(
                    SOURCE,
                    key,
                    format!(
                        "sslmode={} does not verify the server's certificate and replication.postgres_require_verified_tls is on: set sslmode=verify-full in {var} (with sslrootcert=<CA file> for a private CA)",
                        tls.mode.as_str()
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
}

fn check_production_secrets(cfg: &Config, problems: &mut Vec<Problem>) {
    match &cfg.auth.jwt_secret {
        None => problems.push(Problem::new(
            SOURCE,
            "auth.jwt_secret",
            "JWT_SECRET is not set: production needs it (see docs/DEPLOYMENT.md)",
        )),
        Some(secret) if secret.expose().len() < MIN_JWT_SECRET_BYTES => {
            problems.push(Problem::new(
                SOURCE,
                "auth.jwt_secret",
                format!(
                    "JWT_SECRET is {} bytes: production needs at least {MIN_JWT_SECRET_BYTES}, generate one with `openssl rand -base64 48`",
                    secret.expose().len()
                ),
            ))
        }
        Some(_) => {}
    }
    if cfg.auth.metrics_token.is_none() {
        problems.push(Problem::new(
            SOURCE,
            "auth.metrics_token",
            "METRICS_TOKEN is not set: production protects /metrics with it (see docs/DEPLOYMENT.md)",
        ));
    }
}

/// The effective configuration as YAML, secrets shown as `***`, for
/// `secmon config check`.
pub fn redacted_yaml(cfg: &Config) -> String {
    serde_saphyr::to_string(cfg)
        .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn export_settings_are_checked_without_repeating_secrets() {
        let mut cfg = Config::default();
        assert!(validate(&cfg).is_empty());
        cfg.export.nats_url = Some(Secret::new("http://u:hunter2@x"));
        cfg.export.nats_stream = "a.b".into();
        cfg.export.nats_subject_prefix = "secmon.*".into();
        cfg.export.archive_url = Some("s3:///nobucket".into());
        cfg.export.archive_max_rows = 0;
        cfg.environment = Environment::Production;
        cfg.s3.allow_http = true;
        cfg.s3.endpoint_url = Some("http://127.0.0.1.example.com:9000".into());
        let problems = validate(&cfg);
        let export: Vec<&str> = keys(&problems)
            .into_iter()
            .filter(|k| k.starts_with("export.") || k.starts_with("s3."))
            .collect();
        assert_eq!(
            export,
            [
                "export.nats_url",
                "export.nats_stream",
                "export.nats_subject_prefix",
                "export.archive_url",
                "export.archive_max_rows",
                "s3.allow_http",
            ]
        );
        assert!(problems.iter().all(|p| !p.reason.contains("hunter2")));
        cfg.s3.endpoint_url = Some("http://[::1]:9000".into());
        assert!(!keys(&validate(&cfg)).contains(&"s3.allow_http"));
    }

    #[test]
    fn backup_settings_are_checked() {
        let mut cfg = Config::default();
        // A schedule of 0 does not parse (see Span).
        assert!(serde_saphyr::from_str::<crate::config::Backup>("schedule: 0s\n").is_err());
        cfg.backup = serde_saphyr::from_str("schedule: 1h\nkeep: 0\n").unwrap();
        assert_eq!(keys(&validate(&cfg)), ["backup.target", "backup.keep"]);
        cfg.backup = serde_saphyr::from_str("schedule: 24h\ntarget: backups\n").unwrap();
        assert_eq!(keys(&validate(&cfg)), ["backup.target"]);
        cfg.backup.target = Some("s3://bucket/site-a/".into());
        assert!(validate(&cfg).is_empty());
    }

    #[test]
    fn channels_need_what_their_kind_sends_with() {
        let mut cfg = Config::default();
        cfg.notifications.channels = serde_saphyr::from_str(
            "- {name: a, kind: webhook, url: 'https://x/hook'}\n\
             - {name: a, kind: slack}\n\
             - {name: m, kind: email, min_severity: urgent, max_messages_per_minute: 0}\n",
        )
        .unwrap();
        let problems = validate(&cfg);
        assert_eq!(
            keys(&problems),
            [
                "notifications.channels[1].name",
                "notifications.channels[1].url",
                "notifications.channels[2].smtp_url",
                "notifications.channels[2].from",
                "notifications.channels[2].to",
                "notifications.channels[2].min_severity",
                "notifications.channels[2].max_messages_per_minute",
            ]
        );
    }

    #[test]
    fn channel_headers_are_checked_without_showing_values() {
        let mut cfg = Config::default();
        cfg.notifications.channels = serde_saphyr::from_str(
            "- {name: a, kind: webhook, url: 'https://x/hook', \
                headers: {'Bad Name': x, Authorization: \"Bearer s3cret\\nX-Evil: 1\"}}\n",
        )
        .unwrap();
        let problems = validate(&cfg);
        let text = format!("{problems:?}");
        assert_eq!(problems.len(), 2, "{text}");
        assert!(text.contains("not an HTTP header name"), "{text}");
        assert!(text.contains("the value of Authorization"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn response_actions_need_what_they_run() {
        let cfg = Config {
            response: serde_saphyr::from_str(
                "actions:\n\
                 - {name: a, kind: command}\n\
                 - {name: a, kind: webhook, min_severity: severe}\n",
            )
            .unwrap(),
            ..Config::default()
        };
        assert_eq!(
            keys(&validate(&cfg)),
            [
                "response.enabled",
                "response.actions[0].command",
                "response.actions[1].name",
                "response.actions[1].url",
                "response.actions[1].min_severity",
            ]
        );
    }

    #[test]
    fn database_tls_is_checked_without_repeating_the_url() {
        let mut cfg = Config::default();
        cfg.services.database_url = Some(Secret::new("postgres://u:pw@db/x?sslmode=sometimes"));
        let problems = validate(&cfg);
        assert_eq!(keys(&problems), ["services.database_url"]);
        assert!(!problems[0].reason.contains("pw"), "{problems:?}");
        cfg.services.database_url = Some(Secret::new("postgres://u:pw@db/x"));
        assert_eq!(validate(&cfg), vec![]);
        cfg.replication.postgres_require_verified_tls = true;
        let problems = validate(&cfg);
        assert_eq!(keys(&problems), ["services.database_url"]);
        assert!(
            problems[0]
                .reason
                .contains("sslmode=prefer does not verify"),
            "{problems:?}"
        );
        cfg.services.database_url = Some(Secret::new("postgres://u:pw@db/x?sslmode=verify-full"));
        assert_eq!(validate(&cfg), vec![]);
        // The read replica's URL is held to the same, and needs the primary's.
        cfg.services.database_read_url = Some(Secret::new("postgres://u:pw@replica/x"));
        let problems = validate(&cfg);
        assert_eq!(keys(&problems), ["services.database_read_url"]);
        assert!(
            problems[0].reason.contains("DATABASE_READ_URL"),
            "{problems:?}"
        );
        cfg.services.database_read_url = Some(Secret::new(
            "postgres://u:pw@r1,r2/x?sslmode=verify-full&target_session_attrs=prefer-standby",
        ));
        assert_eq!(validate(&cfg), vec![]);
        cfg.services.database_url = None;
        let problems = validate(&cfg);
        assert_eq!(keys(&problems), ["services.database_read_url"]);
        assert!(
            problems[0].reason.contains("without DATABASE_URL"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_proxy_protocol_is_for_tcp_listeners() {
        let mut cfg = Config::default();
        let balancer = crate::config::Cidr::try_from("10.0.0.5/32".to_owned()).unwrap();
        cfg.exposure.listeners.syslog_tcp.proxy_protocol_from = vec![balancer];
        cfg.exposure.listeners.syslog_tls.proxy_protocol_from = vec![balancer];
        assert_eq!(validate(&cfg), vec![]);
        cfg.exposure.listeners.syslog_udp.proxy_protocol_from = vec![balancer];
        assert_eq!(
            keys(&validate(&cfg)),
            ["exposure.listeners.syslog_udp.proxy_protocol_from"]
        );
    }

    #[test]
    fn development_defaults_are_valid() {
        assert_eq!(validate(&Config::default()), vec![]);
    }

    #[test]
    fn production_refusal_names_every_missing_item_at_once() {
        let mut cfg = Config {
            environment: Environment::Production,
            ..Config::default()
        };
        cfg.tls.cert_path = "/nonexistent/server.crt".into();
        cfg.tls.key_path = "/nonexistent/server.key".into();
        let problems = validate(&cfg);
        assert_eq!(
            keys(&problems),
            [
                "tls.enabled",
                "tls.cert_path",
                "tls.key_path",
                "auth.jwt_secret",
                "auth.metrics_token"
            ]
        );
        let text: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert!(text[1].contains("TLS_CERT_PATH") && text[1].contains("/nonexistent/server.crt"));
        assert!(text[2].contains("TLS_KEY_PATH"));
        assert_eq!(
            text[3],
            "configuration: auth.jwt_secret: JWT_SECRET is not set: production needs it (see docs/DEPLOYMENT.md)"
        );
        assert!(text[4].contains("METRICS_TOKEN is not set"));
    }

    #[test]
    fn production_with_everything_set_is_valid_and_short_jwt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("server.crt");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, "cert").unwrap();
        std::fs::write(&key, "key").unwrap();
        let mut cfg = Config {
            environment: Environment::Production,
            ..Config::default()
        };
        cfg.tls.enabled = true;
        cfg.tls.cert_path = cert;
        cfg.tls.key_path = key;
        cfg.auth.jwt_secret = Some(Secret::new("x".repeat(32)));
        cfg.auth.metrics_token = Some(Secret::new("token"));
        assert_eq!(validate(&cfg), vec![]);

        cfg.auth.jwt_secret = Some(Secret::new("short"));
        let problems = validate(&cfg);
        assert_eq!(keys(&problems), ["auth.jwt_secret"]);
        assert!(problems[0].reason.contains("5 bytes"), "{}", problems[0]);
        assert!(!problems[0].to_string().contains("short"));
    }

    #[test]
    fn tls_files_are_checked_in_development_when_tls_is_on() {
        let mut cfg = Config::default();
        cfg.tls.enabled = true;
        cfg.tls.cert_path = "/nonexistent/a.crt".into();
        cfg.tls.key_path = "/nonexistent/a.key".into();
        assert_eq!(keys(&validate(&cfg)), ["tls.cert_path", "tls.key_path"]);
    }

    #[test]
    fn a_missing_syslog_client_ca_is_named() {
        let mut cfg = Config::default();
        cfg.tls.syslog_client_ca_path = Some("/nonexistent/clients-ca.crt".into());
        let problems = validate(&cfg);
        assert_eq!(keys(&problems), ["tls.syslog_client_ca_path"]);
        assert_eq!(
            problems[0].to_string(),
            "configuration: tls.syslog_client_ca_path: cannot read the syslog TLS client CA bundle /nonexistent/clients-ca.crt (No such file or directory (os error 2)): set SYSLOG_TLS_CLIENT_CA_PATH to a readable PEM file, or unset it to accept syslog TLS clients without a certificate"
        );

        let dir = tempfile::tempdir().unwrap();
        cfg.tls.syslog_client_ca_path = Some(dir.path().to_owned());
        let problems = validate(&cfg);
        assert!(problems[0].reason.contains("not a file"), "{}", problems[0]);

        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "pem").unwrap();
        cfg.tls.syslog_client_ca_path = Some(ca);
        assert_eq!(validate(&cfg), vec![]);
    }

    #[test]
    fn port_conflicts_and_zero_sizes_are_reported() {
        let mut cfg = Config::default();
        cfg.ports.websocket = 8000; // same as graphql
        cfg.ports.syslog_udp = Some(8000); // udp: no conflict with tcp 8000
        cfg.ports.metrics = 0; // 0 picks a free port: never a conflict
        cfg.ports.health = 0;
        cfg.ingest.max_body_bytes = 0;
        cfg.index.commit_interval_ms = 0;
        let problems = validate(&cfg);
        assert_eq!(
            keys(&problems),
            [
                "ports.websocket",
                "ingest.max_body_bytes",
                "index.commit_interval_ms"
            ]
        );
        assert!(problems[0].reason.contains("graphql"), "{}", problems[0]);
    }

    #[test]
    fn file_patterns_must_be_absolute_globs() {
        let mut cfg = Config::default();
        cfg.ingest.files.paths = vec![
            "/var/log/auth.log".into(),
            "/var/log/[nginx/*.log".into(),
            "logs/*.log".into(),
        ];
        let problems = validate(&cfg);
        assert_eq!(
            keys(&problems),
            ["ingest.files.paths[1]", "ingest.files.paths[2]"]
        );
        assert!(problems[0].reason.contains("not a valid path or glob"));
        assert!(problems[1].reason.contains("relative"));
    }

    #[test]
    fn redacted_yaml_hides_secrets() {
        let mut cfg = Config::default();
        cfg.auth.jwt_secret = Some(Secret::new("super-secret-value"));
        cfg.services.database_url = Some(Secret::new("postgres://u:pw@db/secmon"));
        let yaml = redacted_yaml(&cfg);
        assert!(!yaml.contains("super-secret-value"), "{yaml}");
        assert!(!yaml.contains("pw@db"), "{yaml}");
        assert!(
            yaml.contains("jwt_secret: '***'") || yaml.contains("jwt_secret: \"***\""),
            "{yaml}"
        );
        assert!(yaml.contains("graphql: 8000"), "{yaml}");
    }
}
