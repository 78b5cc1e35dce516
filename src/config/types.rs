//! The typed configuration. Every struct rejects unknown keys, and the
//! `Default` impls are the development defaults (what `secmon serve` runs with
//! when there is no config at all).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which `config/<environment>.yaml` overlay applies and how strict
/// validation is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }

    /// Listeners bind to loopback in development and to all interfaces in
    /// production, unless `bind_address` is set.
    pub fn default_bind_address(self) -> IpAddr {
        match self {
            Environment::Development => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Environment::Production => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(Environment::Development),
            "production" => Ok(Environment::Production),
            other => Err(format!(
                "unknown environment `{other}`: use development or production"
            )),
        }
    }
}

/// A secret value (password, token, URL with credentials). `Debug` and
/// `Serialize` print `***`; there is no `Display`, so the only way to the
/// value is [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        // Numbers and booleans are accepted because `${VAR}` substitution
        // turns a value such as `12345` into a number; only canonical forms
        // are converted, so the text is unchanged.
        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
        }

        deserializer.deserialize_any(SecretVisitor)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Set by the loader from `--environment` / `ENVIRONMENT`; a file may only
    /// repeat the selected value.
    pub environment: Environment,
    /// Name of this node in the fleet; `None` means the hostname.
    pub node_name: Option<String>,
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub ports: Ports,
    pub tls: Tls,
    pub auth: Auth,
    pub services: Services,
    pub ingest: Ingest,
    pub index: IndexConfig,
    pub retention: Retention,
    pub detection: Detection,
    pub replication: Replication,
    pub export: Export,
    pub s3: S3,
    pub backup: Backup,
    pub fleet: FleetSearch,
    pub notifications: Notifications,
    pub response: Response,
    pub log: Log,
    pub exposure: Exposure,
    pub api: Api,
}

/// The data directory when none is configured. Packages build with
/// `SECMON_DEFAULT_DATA_DIR=/var/lib/secmon` so the installed CLI finds the
/// daemon's data without flags.
pub const DEFAULT_DATA_DIR: &str = match option_env!("SECMON_DEFAULT_DATA_DIR") {
    Some(dir) => dir,
    None => "./data",
};

/// The config directory used when present and none is given (packages:
/// `SECMON_DEFAULT_CONFIG_DIR=/etc/secmon`).
pub const DEFAULT_CONFIG_DIR: &str = match option_env!("SECMON_DEFAULT_CONFIG_DIR") {
    Some(dir) => dir,
    None => "./config",
};

impl Default for Config {
    fn default() -> Self {
        Config {
            environment: Environment::Development,
            node_name: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            bind_address: Environment::Development.default_bind_address(),
            ports: Ports::default(),
            tls: Tls::default(),
            auth: Auth::default(),
            services: Services::default(),
            ingest: Ingest::default(),
            index: IndexConfig::default(),
            retention: Retention::default(),
            detection: Detection::default(),
            replication: Replication::default(),
            export: Export::default(),
            s3: S3::default(),
            backup: Backup::default(),
            fleet: FleetSearch::default(),
            notifications: Notifications::default(),
            response: Response::default(),
            log: Log::default(),
            exposure: Exposure::default(),
            api: Api::default(),
        }
    }
}

/// Listener ports. `0` picks a free port at start; `None` (empty variable or
/// `null`) disables a syslog listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ports {
    pub graphql: u16,
    pub websocket: u16,
    pub metrics: u16,
    pub health: u16,
    pub syslog_udp: Option<u16>,
    pub syslog_tcp: Option<u16>,
    pub syslog_tls: Option<u16>,
    /// GELF (Graylog) over UDP, chunked and compressed; off unless set.
    pub gelf_udp: Option<u16>,
    /// GELF over TCP, null-byte framed; off unless set.
    pub gelf_tcp: Option<u16>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            graphql: 8000,
            websocket: 8001,
            metrics: 9090,
            health: 8080,
            syslog_udp: Some(5514),
            syslog_tcp: Some(5601),
            syslog_tls: Some(6514),
            gelf_udp: None,
            gelf_tcp: None,
        }
    }
}

impl Ports {
    /// The enabled listeners as (name, port, protocol), in a fixed order.
    pub fn enabled(&self) -> Vec<(&'static str, u16, Protocol)> {
        let all = [
            ("graphql", Some(self.graphql), Protocol::Tcp),
            ("websocket", Some(self.websocket), Protocol::Tcp),
            ("metrics", Some(self.metrics), Protocol::Tcp),
            ("health", Some(self.health), Protocol::Tcp),
            ("syslog_udp", self.syslog_udp, Protocol::Udp),
            ("syslog_tcp", self.syslog_tcp, Protocol::Tcp),
            ("syslog_tls", self.syslog_tls, Protocol::Tcp),
            ("gelf_udp", self.gelf_udp, Protocol::Udp),
            ("gelf_tcp", self.gelf_tcp, Protocol::Tcp),
        ];
        all.into_iter()
            .filter_map(|(name, port, protocol)| port.map(|port| (name, port, protocol)))
            .collect()
    }
}

/// The server certificate of the HTTPS ports and syslog TLS (see `crate::tls`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub enabled: bool,
    /// PEM certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// How often the certificate, key and client CA files are checked for
    /// changes (they reload, as on SIGHUP); 0: only on SIGHUP.
    pub reload_interval_seconds: u64,
    /// PEM bundle of the CAs whose client certificates syslog TLS accepts;
    /// when set, a syslog TLS client without such a certificate is refused.
    pub syslog_client_ca_path: Option<PathBuf>,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            enabled: false,
            cert_path: PathBuf::from("/etc/ssl/certs/server.crt"),
            key_path: PathBuf::from("/etc/ssl/private/server.key"),
            reload_interval_seconds: 5,
            syslog_client_ca_path: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub jwt_secret: Option<Secret>,
    /// Creates user `admin` at the first start when no user exists.
    pub admin_password: Option<Secret>,
    pub metrics_token: Option<Secret>,
    /// `FLEET_API_KEY`: the fleet credential, the same on every node (32
    /// bytes or more): a reader here, which the fleet search sends to the
    /// other nodes. Unset: not accepted, no fleet search.
    pub fleet_api_key: Option<Secret>,
    /// Lifetime of an access token.
    pub access_token_ttl_seconds: u64,
    /// Lifetime of a refresh token (each use replaces it).
    pub refresh_token_ttl_seconds: u64,
    pub rate_limit: RateLimits,
    pub login: LoginLimits,
    /// Password hashes (argon2id, 19 MiB each) computed at once; unset: the
    /// number of CPU cores.
    pub max_concurrent_hashes: Option<usize>,
    /// How long a login or password change waits for a hashing slot before
    /// it is refused with `RATE_LIMITED`.
    pub hash_queue_wait_ms: u64,
    /// Reverse proxies whose `forwarded_header` names the client; from any
    /// other peer the header is ignored.
    pub trusted_proxies: Vec<Cidr>,
    /// The header the trusted proxies write (append to): only that one is
    /// read, so a client cannot slip in the other through a proxy that
    /// passes it on unchanged.
    pub forwarded_header: ForwardedHeader,
}

/// Which header carries the client address through `auth.trusted_proxies`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, the Kubernetes
    /// ingress, HAProxy, Traefik, cloud load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            jwt_secret: None,
            admin_password: None,
            metrics_token: None,
            fleet_api_key: None,
            access_token_ttl_seconds: 15 * 60,
            refresh_token_ttl_seconds: 30 * 24 * 3600,
            rate_limit: RateLimits::default(),
            login: LoginLimits::default(),
            max_concurrent_hashes: None,
            hash_queue_wait_ms: 1000,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
        }
    }
}

/// Requests per second on the GraphQL, WebSocket and metrics ports, per
/// source address and per principal; `burst` requests may come at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub per_ip_per_second: u32,
    pub per_principal_per_second: u32,
    pub burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_ip_per_second: 100,
            per_principal_per_second: 100,
            burst: 200,
        }
    }
}

/// Failed logins allowed before a lockout, which doubles with each further
/// failure up to `max_lockout_seconds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginLimits {
    pub max_failures_per_account: u32,
    pub max_failures_per_ip: u32,
    pub max_lockout_seconds: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            max_failures_per_account: 5,
            max_failures_per_ip: 20,
            max_lockout_seconds: 900,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Services {
    pub database_url: Option<Secret>,
    /// Where the fleet view reads (a streaming replica of `database_url`'s
    /// primary); the primary answers when it does not.
    pub database_read_url: Option<Secret>,
    pub redis_url: Option<Secret>,
    pub vault_addr: Option<String>,
    pub vault_token: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Largest HTTP ingest request body.
    pub max_body_bytes: usize,
    /// Longest single message (syslog line, JSON event); longer ones are truncated.
    pub max_message_bytes: usize,
    /// Batches waiting for the store before ingest applies back-pressure.
    pub queue_capacity: usize,
    /// Bytes of events waiting for the store (and being committed) before
    /// ingest applies back-pressure: HTTP answers 429, datagrams are dropped
    /// (counted), streams wait.
    pub queue_max_bytes: usize,
    pub batch_max_events: usize,
    /// Whether events submitted over the authenticated API (HTTP NDJSON,
    /// `_bulk`, GraphQL `ingestEvents`: always with a credential) come from
    /// a trusted source.
    pub api_trusted: bool,
    /// Limits of the TCP ingest listeners (syslog TCP and TLS, GELF TCP).
    pub connections: Connections,
    pub files: Files,
    pub journald: Journald,
}

/// Limits of each TCP ingest listener (syslog TCP and TLS, GELF TCP).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Connections {
    /// Open connections per listener at most; lowered at start to fit the
    /// process's file descriptor limit (RLIMIT_NOFILE), keeping headroom for
    /// the API.
    pub max_per_listener: usize,
    /// Open connections per source address per listener at most.
    pub max_per_source: usize,
    /// A connection that completes no frame for this long is closed.
    pub idle_timeout_seconds: u64,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max_per_listener: 1024,
            max_per_source: 64,
            idle_timeout_seconds: 300,
        }
    }
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            max_body_bytes: 16 * 1024 * 1024,
            max_message_bytes: 64 * 1024,
            queue_capacity: 64,
            queue_max_bytes: 256 * 1024 * 1024,
            batch_max_events: 8192,
            api_trusted: true,
            connections: Connections::default(),
            files: Files::default(),
            journald: Journald::default(),
        }
    }
}

/// Where a source with no checkpoint yet starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Everything already there, then what comes.
    #[default]
    Beginning,
    /// Only what is written from now on.
    End,
}

/// Log files to tail: paths and globs, followed across rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Files {
    /// Paths or globs (`/var/log/nginx/*.log`); empty: no file source.
    pub paths: Vec<String>,
    pub start_at: StartAt,
    /// How often files are checked for new lines, rotation and new matches.
    pub poll_interval_ms: u64,
    /// Whether its events come from a trusted source (local files: yes).
    pub trusted: bool,
}

impl Default for Files {
    fn default() -> Self {
        Files {
            paths: Vec::new(),
            start_at: StartAt::Beginning,
            poll_interval_ms: 250,
            trusted: true,
        }
    }
}

/// The systemd journal, read through `journalctl -o json --follow`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Journald {
    pub enabled: bool,
    /// The journalctl program.
    pub journalctl: PathBuf,
    /// More journalctl arguments (`--directory=...`, `--unit=sshd.service`).
    pub args: Vec<String>,
    pub start_at: StartAt,
    /// Whether its events come from a trusted source (the local journal: yes).
    pub trusted: bool,
}

impl Default for Journald {
    fn default() -> Self {
        Journald {
            enabled: false,
            journalctl: PathBuf::from("journalctl"),
            args: Vec::new(),
            start_at: StartAt::Beginning,
            trusted: true,
        }
    }
}

/// Limits of the GraphQL API (HTTP and WebSocket): what one request or
/// one connection may ask of the node (docs/CONFIGURATION.md, `api`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Longest GraphQL document (the `query` text), checked before parsing.
    pub max_document_bytes: usize,
    /// Deepest nesting of `{`, `[` and `(` in a document, and of arrays and
    /// objects in its variables, checked before parsing.
    pub max_document_depth: usize,
    /// Deepest selection set (fields within fields).
    pub max_query_depth: usize,
    /// Highest query cost: each field counts 1, a list or connection counts
    /// its page size (`first`, `limit`, `top`) times its selection.
    pub max_complexity: usize,
    /// Most events, alerts, rules and notifications one request may return,
    /// over all its fields and aliases.
    pub max_items_per_request: usize,
    /// A request still running after this long answers `TIMEOUT`.
    pub request_timeout_seconds: u64,
    /// Longest search query (`events`, `eventStats`, `eventHistogram`).
    pub max_search_query_bytes: usize,
    /// Deepest nesting of parentheses and quotes in a search query.
    pub max_search_query_depth: usize,
    /// Subscriptions one WebSocket connection may hold at once.
    pub max_subscriptions_per_connection: usize,
    /// Messages per second a WebSocket connection may send; `ws_message_burst`
    /// may come at once. A connection over it is closed.
    pub ws_messages_per_second: u32,
    pub ws_message_burst: u32,
    /// Largest WebSocket message (and frame) accepted.
    pub max_ws_message_bytes: usize,
    /// WebSocket connections open at once, and from one address (an IPv6
    /// /64); past either, an upgrade answers 429 `TOO_MANY_CONNECTIONS`.
    pub max_ws_connections: usize,
    pub max_ws_connections_per_address: usize,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            max_document_bytes: 128 * 1024,
            max_document_depth: 32,
            max_query_depth: 12,
            max_complexity: 100_000,
            max_items_per_request: 10_000,
            request_timeout_seconds: 10,
            max_search_query_bytes: 4096,
            max_search_query_depth: 32,
            max_subscriptions_per_connection: 32,
            ws_messages_per_second: 20,
            ws_message_burst: 100,
            max_ws_message_bytes: 512 * 1024,
            max_ws_connections: 1024,
            max_ws_connections_per_address: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    pub commit_interval_ms: u64,
    pub commit_max_events: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            commit_interval_ms: 1000,
            commit_max_events: 100_000,
        }
    }
}

/// Replication of alerts, hourly roll-ups and heartbeats to the Postgres
/// and Redis of `services` (only those set): the outbox and its sinks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replication {
    /// Outbox entries kept for a sink that is behind before alert updates
    /// are merged too (one pending update per alert, the newest); roll-ups
    /// and heartbeats are always merged, alerts never dropped.
    pub outbox_max_entries: u64,
    /// Outbox entries one sink applies in one transaction.
    pub batch_size: usize,
    pub heartbeat_interval_seconds: u64,
    /// Retries of an unreachable sink back off from `retry_initial_ms`,
    /// doubling (with jitter) up to `retry_max_seconds`.
    pub retry_initial_ms: u64,
    pub retry_max_seconds: u64,
    /// `/ready` fails when a sink is further behind than this; 0: the lag is
    /// reported, never making the node unready.
    pub max_ready_lag_seconds: u64,
    /// Connections to Postgres (the sink and the fleet queries).
    pub postgres_pool_size: usize,
    /// Refuse to start unless `DATABASE_URL` verifies the server's
    /// certificate (`sslmode=verify-ca` or `verify-full`); off, other modes
    /// only log a warning at start.
    pub postgres_require_verified_tls: bool,
    /// CA bundle (PEM) trusted for `rediss://` instead of the system roots.
    pub redis_ca_path: Option<PathBuf>,
    /// Approximate length the `<prefix>:alerts` stream is capped at.
    pub redis_stream_max_len: u64,
    /// Replicas of the Redis master that must confirm a batch (`WAIT`)
    /// before it counts as applied; 0: the master's word suffices (a
    /// failover may then lose the last batches, which the sink notices
    /// and sends the node's state again).
    pub redis_min_replicas: u32,
    /// Prefix of every Redis key and channel.
    pub redis_key_prefix: String,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            outbox_max_entries: 1_000_000,
            batch_size: 5_000,
            heartbeat_interval_seconds: 30,
            retry_initial_ms: 500,
            retry_max_seconds: 10,
            max_ready_lag_seconds: 0,
            postgres_pool_size: 4,
            postgres_require_verified_tls: false,
            redis_ca_path: None,
            redis_stream_max_len: 100_000,
            redis_min_replicas: 0,
            redis_key_prefix: "secmon".to_owned(),
        }
    }
}

/// Event export to the engines large sites run (docs/EXPORT.md): every
/// stored event, from each sink's own cursor, to JetStream and to a Parquet
/// archive (only those set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    /// `NATS_URL`: `nats://[user:password@]host:4222[,host2:4222]`, or
    /// `tls://…` for TLS; unset: no JetStream export.
    pub nats_url: Option<Secret>,
    /// `NATS_STREAM`: the JetStream stream, created if missing.
    pub nats_stream: String,
    /// Subjects: `<prefix>.events.<node>.<dataset>` and `<prefix>.alerts.<node>`.
    pub nats_subject_prefix: String,
    /// Duplicate window of the stream secmon creates: a batch sent again
    /// within it (after a crash or a lost acknowledgement) is dropped by
    /// its `Nats-Msg-Id`.
    pub nats_duplicate_window_seconds: u64,
    /// CA bundle (PEM) trusted for `tls://` instead of the system roots.
    pub nats_ca_path: Option<PathBuf>,
    /// Events published before their acknowledgements are awaited.
    pub nats_batch_size: usize,
    /// `ARCHIVE_URL`: `s3://bucket/prefix` (with the usual `AWS_*`
    /// variables) or `file:///path`; unset: no archive.
    pub archive_url: Option<String>,
    /// `ARCHIVE_FLUSH_SECONDS`: the longest an event waits before the file
    /// holding it is written.
    pub archive_flush_seconds: u64,
    /// Rows per Parquet file at most (a file is written when this many
    /// events wait, or after `archive_flush_seconds`).
    pub archive_max_rows: usize,
    /// Retention deletes events a sink has not taken yet (each counted in
    /// `secmon_export_dropped_events_total` and logged) instead of keeping
    /// them until it has.
    pub retention_drops_unexported: bool,
}

impl Default for Export {
    fn default() -> Self {
        Export {
            nats_url: None,
            nats_stream: "SECMON_EVENTS".to_owned(),
            nats_subject_prefix: "secmon".to_owned(),
            nats_duplicate_window_seconds: 3600,
            nats_ca_path: None,
            nats_batch_size: 5000,
            archive_url: None,
            archive_flush_seconds: 300,
            archive_max_rows: 50_000,
            retention_drops_unexported: false,
        }
    }
}

/// The S3 client of the archive and of `s3://` backups: the usual `AWS_*`
/// variables (the secrets also as `NAME_FILE` or `vault:` references).
/// Unset keys fall back to the AWS SDKs' other sources (session token,
/// container credentials) where object_store reads them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3 {
    /// `AWS_ENDPOINT_URL`: an S3-compatible server (MinIO, Ceph, Garage);
    /// unset: AWS.
    pub endpoint_url: Option<String>,
    /// `AWS_REGION`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<Secret>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    /// `AWS_ALLOW_HTTP`: a plain-HTTP endpoint (production allows it only
    /// on the loopback interface).
    pub allow_http: bool,
    /// CA bundle (PEM) trusted for the endpoint instead of the system roots.
    pub ca_path: Option<PathBuf>,
}

/// Scheduled backups (docs/OPERATIONS.md): made by the daemon, verified,
/// checksummed, the oldest beyond `keep` deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backup {
    /// How often (`24h`), counted from the newest backup in `target`;
    /// unset: no scheduled backups.
    pub schedule: Option<Span>,
    /// An absolute directory, or `s3://bucket/prefix/` (the `s3` client).
    pub target: Option<String>,
    /// The newest backups of this node kept in `target`.
    pub keep: usize,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            schedule: None,
            target: None,
            keep: 7,
        }
    }
}

/// Search across the fleet (docs/REPLICATION.md): each node publishes where
/// its API is; a node with `DATABASE_URL` and `auth.fleet_api_key` asks
/// them all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetSearch {
    /// `FLEET_API_URL`: this node's API as the other nodes reach it
    /// (`https://node-a.example:8000`), published in `secmon.nodes`.
    pub api_url: Option<String>,
    /// How long each node may take to answer a fleet search.
    pub search_timeout_ms: u64,
    /// CA bundle (PEM) the other nodes' API certificates are verified
    /// against instead of the system roots.
    pub ca_path: Option<PathBuf>,
}

impl Default for FleetSearch {
    fn default() -> Self {
        FleetSearch {
            api_url: None,
            search_timeout_ms: 5000,
            ca_path: None,
        }
    }
}

/// Active response (docs/RESPONSE.md): what alerts do to their source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Response {
    /// Sets up the nftables table and takes decisions (from the actions
    /// and from analysts over the API).
    pub enabled: bool,
    /// Log and audit what would be done; do nothing.
    pub dry_run: bool,
    pub actions: Vec<ResponseAction>,
    /// Networks never blocked (the admins' own, the monitoring hosts).
    pub allow: Vec<Cidr>,
    /// Blocks active at once at most; past it, new ones are refused (logged).
    pub max_active_blocks: usize,
    /// Act only on alerts whose latest firing's events all came from
    /// trusted sources; false: forged log lines can trigger the actions
    /// (the operator's risk, docs/RESPONSE.md).
    pub require_trusted_sources: bool,
    /// New blocks alerts may add per minute: a bucket of this many, refilled
    /// evenly; past it a block is refused until the next alert firing.
    /// Analysts' blocks are not counted.
    pub max_new_blocks_per_minute: u32,
    /// The same for alerts with an event from an untrusted source (only
    /// with `require_trusted_sources: false`), from a bucket of their own.
    pub max_new_untrusted_blocks_per_minute: u32,
    /// Of `max_active_blocks`, at most this many asked for by alerts with
    /// an event from an untrusted source.
    pub max_active_untrusted_blocks: usize,
    /// A repeat offender's block doubles each time, up to this.
    pub max_block_duration: Span,
    /// The nft program, and what comes before its arguments (e.g.
    /// `[ip, netns, exec, edge, nft]`).
    pub nft: Vec<String>,
    /// The `inet` table secmon owns: sets `blocklist` and `blocklist6`, and
    /// an input chain dropping their sources.
    pub nft_table: String,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            enabled: false,
            dry_run: false,
            actions: Vec::new(),
            allow: Vec::new(),
            max_active_blocks: 10_000,
            require_trusted_sources: true,
            max_new_blocks_per_minute: 60,
            max_new_untrusted_blocks_per_minute: 10,
            max_active_untrusted_blocks: 1_000,
            max_block_duration: Span(std::time::Duration::from_secs(7 * 86_400)),
            nft: vec!["nft".to_owned()],
            nft_table: "secmon".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Add the alert's source IP to the nftables block set, with an expiry.
    Block,
    /// Run `command`, the alert as JSON on its stdin.
    Command,
    /// POST the alert as JSON to `url`.
    Webhook,
}

/// What an alert (new, or firing again) does when it matches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseAction {
    pub name: String,
    pub kind: ActionKind,
    /// These rule ids; when empty, every alert of `min_severity` or above.
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default = "default_response_severity")]
    pub min_severity: String,
    /// Block: the first block's length; repeat offences double it.
    #[serde(default = "default_block_duration")]
    pub duration: Span,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub url: Option<Secret>,
}

fn default_response_severity() -> String {
    "high".to_owned()
}

fn default_block_duration() -> Span {
    Span(std::time::Duration::from_secs(3600))
}

/// Where alerts are announced (docs/NOTIFICATIONS.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub channels: Vec<Channel>,
    /// Sent deliveries are kept this long for the `notifications` query.
    pub keep_days: u64,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            channels: Vec::new(),
            keep_days: 7,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// JSON POST, signed with HMAC-SHA256 when `secret` is set.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams incoming webhook (Workflows: an Adaptive Card).
    Teams,
    /// Email over SMTP (`smtp_url`), TLS required.
    Email,
    /// Prometheus Alertmanager (`url` is its base URL).
    Alertmanager,
}

/// What an alert update must be to be announced on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A new alert.
    Raised,
    /// An analyst changed it (acknowledged, resolved, ...).
    Changed,
}

/// One notification channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Unique; names the channel in metrics, `/ready` and the API.
    pub name: String,
    pub kind: ChannelKind,
    /// Webhook, Slack, Teams: the URL posted to (a secret: it often
    /// carries the token); Alertmanager: its base URL.
    #[serde(default)]
    pub url: Option<Secret>,
    /// Webhook: the HMAC-SHA256 key of the `X-Secmon-Signature` header.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Webhook: more headers sent with each request. Their values are
    /// secrets (an `Authorization` header): `***` in the audit log and
    /// `config check`.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Email: `smtps://user:pass@host:465` (TLS) or
    /// `smtp://user:pass@host:587` (STARTTLS, required).
    #[serde(default)]
    pub smtp_url: Option<Secret>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// CA bundle (PEM) trusted instead of the system roots (HTTPS, SMTP).
    #[serde(default)]
    pub ca_path: Option<PathBuf>,
    /// Lowest alert severity announced: informational, low, medium, high
    /// or critical.
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Only these rule ids (empty: all).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Only alerts with one of these tags (empty: all).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only alerts about these hosts (empty: all).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Which updates are announced.
    #[serde(default = "default_triggers")]
    pub on: Vec<Trigger>,
    /// Messages sent at most per minute; what is pending beyond that goes
    /// out as one digest.
    #[serde(default = "default_messages_per_minute")]
    pub max_messages_per_minute: u32,
}

fn default_min_severity() -> String {
    "medium".to_owned()
}

fn default_triggers() -> Vec<Trigger> {
    vec![Trigger::Raised]
}

fn default_messages_per_minute() -> u32 {
    10
}

/// Sigma rules run on every event before it is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detection {
    pub enabled: bool,
    /// Load the built-in Linux pack (docs/RULES.md).
    pub builtin: bool,
    /// Folders (or files) of Sigma rules, e.g. SigmaHQ's `rules/linux`; a
    /// rule with the id of a built-in one replaces it.
    pub rules: Vec<PathBuf>,
    /// A firing within this time of an active alert's last one counts on it.
    pub dedup_window: Span,
    /// Values of `%name%` placeholders (the `expand` modifier).
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Sigma field -> secmon fields, over the shipped table
    /// (`rules/field-mapping.yml`).
    pub field_mapping: BTreeMap<String, Vec<String>>,
    /// How often the rule files are checked for changes (they reload, as on
    /// SIGHUP); 0: only on SIGHUP.
    pub watch_interval_seconds: u64,
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            enabled: true,
            builtin: true,
            rules: Vec::new(),
            dedup_window: Span(std::time::Duration::from_secs(3600)),
            placeholders: BTreeMap::new(),
            field_mapping: BTreeMap::new(),
            watch_interval_seconds: 5,
        }
    }
}

/// How long and how much to keep. Unset limits keep everything.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Events received longer ago than this are deleted (`30d`, `12h`).
    pub events_max_age: Option<Span>,
    /// Events are deleted oldest first while the store and index use more.
    pub max_disk_bytes: Option<u64>,
    /// Alerts last seen longer ago than this are deleted; they outlive
    /// their events; unset: kept.
    pub alerts_max_age: Option<Span>,
    /// How often retention runs and the storage and disk gauges are updated.
    pub check_interval_seconds: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events_max_age: None,
            max_disk_bytes: None,
            alerts_max_age: None,
            check_interval_seconds: 60,
        }
    }
}

/// A span of time written as a whole number and a unit: `90s`, `15m`,
/// `12h`, `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub std::time::Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("`{s}` is not a span of time: use a whole number and s, m, h or d (`30d`)");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = s.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        let seconds = number
            .checked_mul(unit)
            .filter(|&s| s > 0)
            .ok_or_else(bad)?;
        Ok(Span(std::time::Duration::from_secs(seconds)))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (n, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
            .into_iter()
            .find(|(u, _)| secs.is_multiple_of(*u))
            .map_or((secs, "s"), |(u, unit)| (secs / u, unit));
        write!(f, "{n}{unit}")
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `tracing_subscriber::EnvFilter` syntax (`RUST_LOG`).
    pub filter: String,
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            filter: "info".to_string(),
            format: LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

// ---------------------------------------------------------------------------
// Exposure: the port plan checked by `secmon validate-ports` (see
// config/ports.yaml for the documented schema).

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Reachable only from the host or internal networks.
    #[default]
    Internal,
    /// Reachable from outside: opened in the firewall / ingress.
    External,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Api,
    Websocket,
    Metrics,
    Health,
    Syslog,
    Database,
    Cache,
    Debug,
    Profiler,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Required,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exposure {
    pub listeners: Listeners,
    /// Other services in the deployment (Postgres, Redis, debug ports), by name.
    pub dependencies: BTreeMap<String, Dependency>,
    /// Ports opened in the firewall / ingress, per environment.
    pub firewall: BTreeMap<Environment, Vec<PortSpec>>,
}

/// The plan of config/ports.yaml: postgres and redis internal; graphql,
/// websocket and syslog_tls external and open in the firewall.
impl Default for Exposure {
    fn default() -> Self {
        let dependency = |port, kind| Dependency {
            port,
            kind,
            protocol: Protocol::Tcp,
            scope: Scope::Internal,
        };
        let open: Vec<PortSpec> = [8000, 8001, 6514]
            .into_iter()
            .map(|port| PortSpec {
                port,
                protocol: Protocol::Tcp,
            })
            .collect();
        Exposure {
            listeners: Listeners::default(),
            dependencies: BTreeMap::from([
                ("postgres".to_string(), dependency(5432, Kind::Database)),
                ("redis".to_string(), dependency(6379, Kind::Cache)),
            ]),
            firewall: BTreeMap::from([
                (Environment::Development, open.clone()),
                (Environment::Production, open),
            ]),
        }
    }
}

/// How secmon's own listeners are exposed. Their ports come from `ports:` and
/// their kind is fixed by the name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    pub graphql: ApiListener,
    pub websocket: ApiListener,
    pub metrics: PlainListener,
    pub health: PlainListener,
    pub syslog_udp: SyslogListener,
    pub syslog_tcp: SyslogListener,
    pub syslog_tls: SyslogListener,
    pub gelf_udp: SyslogListener,
    pub gelf_tcp: SyslogListener,
}

impl Default for Listeners {
    fn default() -> Self {
        let external_api = ApiListener {
            scope: Scope::External,
            auth: AuthMode::Required,
        };
        Listeners {
            graphql: external_api.clone(),
            websocket: external_api,
            metrics: PlainListener::default(),
            health: PlainListener::default(),
            syslog_udp: SyslogListener::default(),
            syslog_tcp: SyslogListener::default(),
            syslog_tls: SyslogListener {
                scope: Scope::External,
                ..SyslogListener::default()
            },
            gelf_udp: SyslogListener::default(),
            gelf_tcp: SyslogListener::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiListener {
    pub scope: Scope,
    pub auth: AuthMode,
}

/// metrics (its auth is `auth.metrics_token`) and health (never authenticated).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlainListener {
    pub scope: Scope,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogListener {
    pub scope: Scope,
    /// Networks allowed to send; empty means any.
    pub allow_sources: Vec<Cidr>,
    /// Whether its events come from a trusted source. Unset: for the TCP
    /// and TLS listeners, trusted when TLS requires client certificates
    /// (`tls.syslog_client_ca_path`) or `allow_sources` lists only private,
    /// loopback or link-local networks, otherwise (open to any address)
    /// untrusted; for the UDP listeners (`syslog_udp`, `gelf_udp`) always
    /// untrusted, since a datagram's source address can be spoofed: set
    /// `true` only where the network itself rules out forged senders.
    pub trusted: Option<bool>,
    /// TCP listeners: load balancers (HAProxy `send-proxy`/`send-proxy-v2`,
    /// or any PROXY protocol v1/v2 sender) in front of this listener. Their
    /// connections must start with the header, and the sender it names is
    /// the one `allow_sources`, the per-source cap and `host.ip` see.
    pub proxy_protocol_from: Vec<Cidr>,
}

/// A service that is not secmon itself. `port` and `kind` are required (no
/// struct default: a declaration without them means nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub port: u16,
    pub kind: Kind,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub scope: Scope,
}

/// A port and protocol: written `8000` (tcp) or `"514/udp"`, `"6514/tcp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, protocol) = match s.split_once('/') {
            Some((port, "tcp")) => (port, Protocol::Tcp),
            Some((port, "udp")) => (port, Protocol::Udp),
            None => (s, Protocol::Tcp),
            Some(_) => {
                return Err(format!(
                    "`{s}` is not a port: write 8000, 8000/tcp or 514/udp"
                ));
            }
        };
        let port = port
            .parse()
            .map_err(|_| format!("`{s}` is not a port: write 8000, 8000/tcp or 514/udp"))?;
        Ok(PortSpec { port, protocol })
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortSpecVisitor;

        impl Visitor<'_> for PortSpecVisitor {
            type Value = PortSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port such as 8000, \"8000/tcp\" or \"514/udp\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortSpec, E> {
                let port = u16::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is not a port (1-65535)")))?;
                Ok(PortSpec {
                    port,
                    protocol: Protocol::Tcp,
                })
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortSpec, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} is not a port (1-65535)")))?;
                self.visit_u64(v)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortSpec, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(PortSpecVisitor)
    }
}

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// True when `ip` is inside this network (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad = || format!("`{s}` is not a network: write it like 10.0.0.0/8 or 2001:db8::/32");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        format!("{}/{}", c.addr, c.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug_and_serialize() {
        let auth = Auth {
            jwt_secret: Some(Secret::new("hunter2-hunter2")),
            ..Auth::default()
        };
        let debug = format!("{auth:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("***"));
        let json = serde_json::to_string(&auth).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains(r#""jwt_secret":"***""#), "{json}");
        assert_eq!(
            auth.jwt_secret.as_ref().map(Secret::expose),
            Some("hunter2-hunter2")
        );
    }

    #[test]
    fn secret_deserializes_from_string_and_canonical_scalars() {
        for (input, expected) in [(r#""abc""#, "abc"), ("12345", "12345"), ("true", "true")] {
            let s: Secret = serde_json::from_str(input).unwrap();
            assert_eq!(s.expose(), expected);
        }
        assert!(serde_json::from_str::<Secret>("[1]").is_err());
    }

    #[test]
    fn port_spec_parses_numbers_and_protocols() {
        let cases: [(&str, Option<PortSpec>); 6] = [
            (
                "8000",
                Some(PortSpec {
                    port: 8000,
                    protocol: Protocol::Tcp,
                }),
            ),
            (
                r#""6514/tcp""#,
                Some(PortSpec {
                    port: 6514,
                    protocol: Protocol::Tcp,
                }),
            ),
            (
                r#""514/udp""#,
                Some(PortSpec {
                    port: 514,
                    protocol: Protocol::Udp,
                }),
            ),
            (r#""514/sctp""#, None),
            ("70000", None),
            (r#""http""#, None),
        ];
        for (input, expected) in cases {
            let got = serde_json::from_str::<PortSpec>(input).ok();
            assert_eq!(got, expected, "{input}");
        }
    }

    #[test]
    fn cidr_parses_v4_and_v6_and_rejects_bad_prefixes() {
        for ok in ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"] {
            let c = Cidr::try_from(ok.to_string()).unwrap();
            assert_eq!(String::from(c), ok);
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "2001:db8::/129", "ten/8"] {
            assert!(Cidr::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
