//! The Postgres sink and the fleet view it feeds.
//!
//! Many nodes write to one database, each row keyed by its node id. A batch
//! is applied in one transaction of bulk upserts (`INSERT .. SELECT FROM
//! unnest(..) ON CONFLICT DO UPDATE .. WHERE version < EXCLUDED.version`),
//! so an update never replaces a newer one and a batch applied twice changes
//! nothing. The schema comes from `migrations/`, applied in order under an
//! advisory lock (two nodes starting together do not race) and recorded in
//! `secmon.schema_migrations`.
//!
//! TLS goes through rustls, with libpq's `sslmode` semantics ([`SslMode`]):
//! `disable` never uses it; `allow` and `prefer` (the default) use it when
//! the server offers it and go on in plain text when it does not;
//! `require` needs it; these three do not verify the server's certificate
//! (a stock Debian Postgres has a self-signed one), though the handshake's
//! signatures are still checked. `verify-ca` verifies the chain against
//! `sslrootcert=<file>` or the system roots, `verify-full` also the host
//! name. As in libpq, `require` with `sslrootcert` is `verify-ca`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::types::ToSql;
use ulid::Ulid;

use super::{Applied, Error, Sink, SinkError, percent_decode};
use crate::store::outbox::{AlertSummary, Entry, Heartbeat, Message, Rollup};

/// The schema, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../../migrations/0001_schema.sql"),
    ),
    (
        2,
        "fleet_views",
        include_str!("../../migrations/0002_fleet_views.sql"),
    ),
    (
        3,
        "node_outbox",
        include_str!("../../migrations/0003_node_outbox.sql"),
    ),
    (
        4,
        "node_api_url",
        include_str!("../../migrations/0004_node_api_url.sql"),
    ),
];

/// `pg_advisory_xact_lock` key held while migrating ("secmon" in ASCII).
const MIGRATION_LOCK: i64 = 0x7365_636d_6f6e;

/// Longest one batch (or one fleet query) may take before its connection
/// is given up.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Postgres {
    pool: Pool,
    node_id: String,
    migrated: bool,
}

impl Postgres {
    /// Parses `url` and sets up the pool; connects on first use.
    pub fn new(url: &str, pool_size: usize, node_id: Ulid) -> Result<Postgres, Error> {
        Ok(Postgres {
            pool: pool(url, pool_size, Session::Primary)?,
            node_id: node_id.to_string(),
            migrated: false,
        })
    }

    /// The fleet view: read from `read_url`'s servers (a replica) when
    /// given, falling back to the primary.
    pub fn fleet(&self, read_url: Option<&str>, pool_size: usize) -> Result<Fleet, Error> {
        let replica = read_url
            .map(|url| {
                Ok::<_, Error>(Replica {
                    pool: pool(url, pool_size, Session::Reader)?,
                    state: Arc::default(),
                })
            })
            .transpose()?;
        Ok(Fleet {
            primary: self.pool.clone(),
            replica,
        })
    }

    async fn apply_batch(
        &mut self,
        client: &mut Object,
        after: u64,
        entries: &[Entry],
    ) -> Result<Applied, DbError> {
        if !self.migrated {
            migrate(client).await?;
            self.migrated = true;
        }
        let batch = Batch::of(entries);
        let tx = client.transaction().await?;
        let holds: Option<i64> = tx
            .query_opt(
                "SELECT applied_seq FROM secmon.node_outbox WHERE node_id = $1 FOR UPDATE",
                &[&self.node_id],
            )
            .await?
            .map(|row| row.get(0));
        let holds = holds.map_or(0, |seq| u64::try_from(seq).unwrap_or(0));
        if holds < after {
            return Ok(Applied::Lost { holds });
        }
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(Applied::Rows(0));
        };
        let mut rows = 0;
        if !batch.alerts.is_empty() {
            rows += upsert_alerts(&tx, &self.node_id, &batch.alerts).await?;
        }
        if !batch.rollups.is_empty() {
            rows += upsert_rollups(&tx, &self.node_id, &batch.rollups).await?;
        }
        if let Some(heartbeat) = batch.heartbeat {
            rows += upsert_node(&tx, &self.node_id, heartbeat).await?;
        }
        tx.execute(
            "INSERT INTO secmon.node_outbox (node_id, applied_seq) VALUES ($1, $2)
             ON CONFLICT (node_id) DO UPDATE SET applied_seq = EXCLUDED.applied_seq,
                 updated_at = now()
             WHERE secmon.node_outbox.applied_seq < EXCLUDED.applied_seq",
            &[&self.node_id, &int(last)],
        )
        .await?;
        tx.commit().await?;
        Ok(Applied::Rows(rows))
    }
}

impl Sink for Postgres {
    const NAME: &'static str = "postgres";
    const WANTS_STATE: bool = true;

    async fn apply(&mut self, after: u64, entries: &[Entry]) -> Result<Applied, SinkError> {
        let mut client = self.pool.get().await.map_err(|e| sink_error(&e))?;
        match tokio::time::timeout(
            STATEMENT_TIMEOUT,
            self.apply_batch(&mut client, after, entries),
        )
        .await
        {
            Ok(Ok(applied)) => Ok(applied),
            failed => {
                // The connection may be mid-transaction or dead: never reuse it.
                let _ = Object::take(client);
                Err(match failed {
                    Ok(Err(e)) if e.on_standby() => {
                        // Every pooled connection may lead there (the server
                        // was demoted): connect again, to the primary.
                        self.pool.retain(|_, _| false);
                        SinkError(format!(
                            "{e} (this server is a standby now: reconnecting to find the primary)"
                        ))
                    }
                    Ok(Err(e)) => SinkError(e.to_string()),
                    _ => SinkError(format!(
                        "postgres did not answer within {}s",
                        STATEMENT_TIMEOUT.as_secs()
                    )),
                })
            }
        }
    }
}

/// Which server of a multi-host URL a pool wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// The sink's: one that takes writes. `target_session_attrs` may say
    /// `read-write` (the default), `primary` or `any`.
    Primary,
    /// The fleet reads': any server (the default), or as
    /// `target_session_attrs` says.
    Reader,
}

impl Session {
    /// The variable its URL comes from.
    fn var(self) -> &'static str {
        match self {
            Session::Primary => "DATABASE_URL",
            Session::Reader => "DATABASE_READ_URL",
        }
    }

    fn error(self, text: String) -> Error {
        match self {
            Session::Primary => Error::DatabaseUrl(text),
            Session::Reader => Error::DatabaseReadUrl(text),
        }
    }
}

/// A pool of connections to `url` (a libpq connection string); connects on
/// first use.
fn pool(url: &str, pool_size: usize, session: Session) -> Result<Pool, Error> {
    let error = |text| session.error(text);
    let (url, tls, attrs) = libpq_compat(url).map_err(error)?;
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| error(describe(&e)))?;
    config.target_session_attrs(target_session(session, attrs).map_err(error)?);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("secmon");
    }
    if !tls.mode.verifies() && tls.mode != SslMode::Disable {
        tracing::warn!(
            sslmode = tls.mode.as_str(),
            variable = session.var(),
            "postgres TLS does not verify the server's certificate, so whoever sits on the path can read and change replication: set sslmode=verify-full in this variable's URL (with sslrootcert=<CA file> for a private CA)"
        );
    }
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_tls(&tls)?);
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(STATEMENT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| error(crate::notify::redact::redact(&e.to_string())))
}

/// libpq's `target_session_attrs` values, as tokio-postgres knows them.
/// libpq's `primary` is `read-write` here, `standby` and `prefer-standby`
/// are `read-only` (the fleet falls back to the primary's pool itself).
const SESSION_ATTRS: [(&str, TargetSessionAttrs); 6] = [
    ("any", TargetSessionAttrs::Any),
    ("read-write", TargetSessionAttrs::ReadWrite),
    ("primary", TargetSessionAttrs::ReadWrite),
    ("read-only", TargetSessionAttrs::ReadOnly),
    ("standby", TargetSessionAttrs::ReadOnly),
    ("prefer-standby", TargetSessionAttrs::ReadOnly),
];

/// The server `session` connects to, given the URL's
/// `target_session_attrs`. With several hosts, each is tried in turn
/// until one has these attributes; the sink must reach the primary.
fn target_session(
    session: Session,
    attrs: Option<TargetSessionAttrs>,
) -> Result<TargetSessionAttrs, String> {
    match (session, attrs) {
        (Session::Primary, Some(TargetSessionAttrs::ReadOnly)) => Err(
            "target_session_attrs asks for a standby, but replication writes: use read-write (the default) in DATABASE_URL, and a standby in DATABASE_READ_URL".to_owned(),
        ),
        (_, Some(attrs)) => Ok(attrs),
        (Session::Primary, None) => Ok(TargetSessionAttrs::ReadWrite),
        (Session::Reader, None) => Ok(TargetSessionAttrs::Any),
    }
}

/// A database error in words an operator can act on.
#[derive(Debug, thiserror::Error)]
enum DbError {
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error(
        "the database schema is at version {found}, newer than this binary knows ({known}); upgrade secmon"
    )]
    TooNew { found: i32, known: i32 },
}

impl DbError {
    /// The server refused a write as read-only: it is a standby (after a
    /// failover, the old primary rejoined as one), not the primary.
    fn on_standby(&self) -> bool {
        matches!(self, DbError::Postgres(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION))
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = crate::notify::redact::redact(&crate::error_chain(e));
    if text.contains("invalid peer certificate") {
        text.push_str(
            " (the server's certificate is not trusted: give its CA as sslrootcert=<file> in DATABASE_URL, or sslmode=require to encrypt without verifying it)",
        );
    }
    if text.contains("database does not allow writes") {
        text.push_str(
            " (no host of DATABASE_URL is a primary now: during a failover this passes once the standby is promoted; otherwise list the primary in DATABASE_URL)",
        );
    }
    text
}

fn sink_error(e: &deadpool_postgres::PoolError) -> SinkError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => SinkError(describe(e)),
        e => SinkError(format!(
            "postgres: {}",
            crate::notify::redact::redact(&e.to_string())
        )),
    }
}

/// libpq's `sslmode`: how a connection to Postgres uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// libpq tries plain text first; here it is `prefer` (TLS when offered,
    /// unverified): never weaker than libpq's.
    Allow,
    /// TLS when the server offers it, plain text when it does not; the
    /// certificate is not verified. The default.
    Prefer,
    /// TLS or no connection; the certificate is not verified.
    Require,
    /// TLS with the certificate chain verified; not the host name.
    VerifyCa,
    /// TLS with the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is verified against a CA.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }

    /// What tokio-postgres, which knows `disable`, `prefer` and `require`
    /// only, is told.
    fn for_tokio_postgres(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow | SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// What a `DATABASE_URL` asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRequest {
    /// The effective mode (`require` with `sslrootcert` is `verify-ca`).
    pub mode: SslMode,
    /// `sslrootcert`: the CA bundle trusted instead of the system roots.
    pub ca: Option<PathBuf>,
}

/// The TLS a `DATABASE_URL` asks for (for `config check` and start-up
/// validation); the error never repeats the URL.
pub fn tls_request(url: &str) -> Result<TlsRequest, String> {
    libpq_compat(url).map(|(_, tls, _)| tls)
}

/// Takes what tokio-postgres does not know out of a libpq connection
/// string (a `postgres://` URL or `key=value` pairs): `sslrootcert`;
/// `sslmode` with its six values, which it gets back as the one of its
/// three that connects the same way (the certificate checks are ours, in
/// [`client_tls`]); `target_session_attrs` with libpq's six values (set on
/// the configuration by [`pool`]).
fn libpq_compat(url: &str) -> Result<(String, TlsRequest, Option<TargetSessionAttrs>), String> {
    let mut mode = None;
    let mut ca = None;
    let mut attrs = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "target_session_attrs" => {
                let value = percent_decode(value);
                attrs = Some(
                    SESSION_ATTRS
                        .iter()
                        .find(|(name, _)| *name == value)
                        .map(|(_, attrs)| *attrs)
                        .ok_or_else(|| {
                            "target_session_attrs is not one of any, read-write, primary, read-only, standby, prefer-standby"
                                .to_owned()
                        })?,
                );
                Ok(true)
            }
            "sslmode" => {
                let value = percent_decode(value);
                mode = Some(
                    SslMode::ALL
                        .into_iter()
                        .find(|m| m.as_str() == value)
                        .ok_or_else(|| {
                            "sslmode is not one of disable, allow, prefer, require, verify-ca, verify-full"
                                .to_owned()
                        })?,
                );
                Ok(true)
            }
            "sslrootcert" => {
                ca = Some(PathBuf::from(percent_decode(value)));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rewritten = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, value)? {
                kept.push(pair.to_owned());
            }
        }
        (base.to_owned(), kept, "&")
    } else {
        // key=value pairs; quoted values with spaces are left to
        // tokio-postgres (sslmode and sslrootcert are written bare).
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key.trim(), value.trim())? {
                kept.push(pair.to_owned());
            }
        }
        (kept.join(" "), Vec::new(), " ")
    };
    let mode = match (mode.unwrap_or(SslMode::Prefer), &ca) {
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (mode, _) => mode,
    };
    let (base, mut kept, separator) = rewritten;
    kept.push(format!("sslmode={}", mode.for_tokio_postgres()));
    let url = if separator == "&" {
        format!("{base}?{}", kept.join("&"))
    } else {
        format!("{base} {}", kept.join(" ")).trim().to_owned()
    };
    Ok((url, TlsRequest { mode, ca }, attrs))
}

/// The rustls configuration of a [`TlsRequest`].
fn client_tls(req: &TlsRequest) -> Result<rustls::ClientConfig, Error> {
    use rustls::client::WebPkiServerVerifier;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = |verifier: Arc<dyn ServerCertVerifier>| {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth()
            })
            .map_err(|e| Error::DatabaseUrl(format!("TLS set-up failed: {e}")))
    };
    match req.mode {
        SslMode::VerifyFull => Ok(crate::tls::client_config(req.ca.as_deref())?),
        SslMode::VerifyCa => {
            let mut roots = rustls::RootCertStore::empty();
            match &req.ca {
                Some(path) => {
                    for cert in crate::tls::load_certs(path)? {
                        roots.add(cert).map_err(|_| crate::tls::Error::Pem {
                            path: path.clone(),
                            reason: "a certificate does not parse",
                        })?;
                    }
                }
                None => {
                    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                }
            }
            let chain =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::DatabaseUrl(format!("sslmode=verify-ca: {e}")))?;
            builder(Arc::new(ChainOnly(chain)))
        }
        SslMode::Disable | SslMode::Allow | SslMode::Prefer | SslMode::Require => {
            builder(Arc::new(AnyCertificate(provider.clone())))
        }
    }
}

/// `prefer`/`require`: any certificate is accepted (libpq's behaviour), but
/// the handshake signatures are checked against it, so the session is still
/// with whoever holds that certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name it is for
/// does not matter (webpki checks the chain before the name, so a name
/// error means the chain held).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Applies the migrations this database has not had yet.
async fn migrate(client: &mut Object) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS secmon;
         CREATE TABLE IF NOT EXISTS secmon.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM secmon.schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if found > known {
        return Err(DbError::TooNew { found, known });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO secmon.schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tracing::info!(version, name, "postgres schema migrated");
    }
    tx.commit().await?;
    Ok(())
}

/// A roll-up's primary key (less the node).
type RollupKey<'a> = (&'a DateTime<Utc>, [&'a str; 5]);

/// A batch reduced to the newest update of each row.
#[derive(Default)]
struct Batch<'a> {
    alerts: Vec<(u64, &'a AlertSummary)>,
    rollups: Vec<(u64, &'a Rollup)>,
    /// Seq, time written, heartbeat.
    heartbeat: Option<(u64, DateTime<Utc>, &'a Heartbeat)>,
}

impl<'a> Batch<'a> {
    fn of(entries: &'a [Entry]) -> Batch<'a> {
        // An upsert may touch a row once per statement: keep the last update.
        let mut alerts: HashMap<u64, (u64, &AlertSummary)> = HashMap::new();
        let mut rollups: HashMap<RollupKey, (u64, &Rollup)> = HashMap::new();
        let mut batch = Batch::default();
        for entry in entries {
            match &entry.message {
                Message::Alert(a) => {
                    alerts.insert(a.alert_id, (entry.seq, a));
                }
                Message::Rollup(r) => {
                    let key = [
                        r.host_name.as_str(),
                        &r.dataset,
                        &r.category,
                        &r.outcome,
                        &r.severity,
                    ];
                    rollups.insert((&r.hour, key), (entry.seq, r));
                }
                Message::Heartbeat(h) => batch.heartbeat = Some((entry.seq, entry.at, h)),
            }
        }
        batch.alerts = alerts.into_values().collect();
        batch.rollups = rollups.into_values().collect();
        batch
    }
}

/// Joins an alert's tags for [`upsert_alerts`] (a tag never holds it).
const TAG_SEPARATOR: &str = "\u{1f}";

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn upsert_alerts(
    tx: &deadpool_postgres::Transaction<'_>,
    node_id: &str,
    alerts: &[(u64, &AlertSummary)],
) -> Result<u64, DbError> {
    let column = |f: fn(&AlertSummary) -> String| -> Vec<String> {
        alerts.iter().map(|(_, a)| f(a)).collect()
    };
    let optional = |f: fn(&AlertSummary) -> Option<String>| -> Vec<Option<String>> {
        alerts.iter().map(|(_, a)| f(a)).collect()
    };
    let time = |f: fn(&AlertSummary) -> DateTime<Utc>| -> Vec<DateTime<Utc>> {
        alerts.iter().map(|(_, a)| f(a)).collect()
    };
    let ids: Vec<i64> = alerts.iter().map(|(_, a)| int(a.alert_id)).collect();
    let counts: Vec<i64> = alerts.iter().map(|(_, a)| int(a.count)).collect();
    let versions: Vec<i64> = alerts.iter().map(|(seq, _)| int(*seq)).collect();
    let correlation: Vec<bool> = alerts.iter().map(|(_, a)| a.correlation).collect();
    // One text per row, split on the server (an array of arrays cannot be
    // unnested row by row).
    let tags: Vec<String> = alerts
        .iter()
        .map(|(_, a)| a.tags.join(TAG_SEPARATOR))
        .collect();
    let params: [&(dyn ToSql + Sync); 18] = [
        &node_id,
        &ids,
        &column(|a| a.rule_id.clone()),
        &column(|a| a.rule_title.clone()),
        &column(|a| a.severity.clone()),
        &column(|a| a.status.clone()),
        &counts,
        &time(|a| a.first_seen),
        &time(|a| a.last_seen),
        &optional(|a| a.source_ip.clone()),
        &optional(|a| a.host_name.clone()),
        &optional(|a| a.user_name.clone()),
        &optional(|a| a.assignee.clone()),
        &correlation,
        &tags,
        &time(|a| a.created_at),
        &time(|a| a.updated_at),
        &versions,
    ];
    let statement = tx
        .prepare_cached(
            "INSERT INTO secmon.alerts (node_id, alert_id, rule_id, rule_title, severity, status,
                 count, first_seen, last_seen, source_ip, host_name, user_name, assignee,
                 correlation, tags, created_at, updated_at, version)
             SELECT $1, a.alert_id, a.rule_id, a.rule_title, a.severity, a.status, a.count,
                 a.first_seen, a.last_seen, a.source_ip, a.host_name, a.user_name, a.assignee,
                 a.correlation, string_to_array(a.tags, E'\\x1f'), a.created_at,
                 a.updated_at, a.version
             FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[],
                 $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::text[],
                 $13::text[], $14::bool[], $15::text[], $16::timestamptz[], $17::timestamptz[],
                 $18::int8[])
                 AS a(alert_id, rule_id, rule_title, severity, status, count, first_seen,
                      last_seen, source_ip, host_name, user_name, assignee, correlation, tags,
                      created_at, updated_at, version)
             ON CONFLICT (node_id, alert_id) DO UPDATE SET
                 rule_id = EXCLUDED.rule_id, rule_title = EXCLUDED.rule_title,
                 severity = EXCLUDED.severity, status = EXCLUDED.status, count = EXCLUDED.count,
                 first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen,
                 source_ip = EXCLUDED.source_ip, host_name = EXCLUDED.host_name,
                 user_name = EXCLUDED.user_name, assignee = EXCLUDED.assignee,
                 correlation = EXCLUDED.correlation, tags = EXCLUDED.tags,
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                 version = EXCLUDED.version
             WHERE secmon.alerts.version < EXCLUDED.version",
        )
        .await?;
    Ok(tx.execute(&statement, &params).await?)
}

async fn upsert_rollups(
    tx: &deadpool_postgres::Transaction<'_>,
    node_id: &str,
    rollups: &[(u64, &Rollup)],
) -> Result<u64, DbError> {
    let column =
        |f: fn(&Rollup) -> &str| -> Vec<&str> { rollups.iter().map(|(_, r)| f(r)).collect() };
    let hours: Vec<DateTime<Utc>> = rollups.iter().map(|(_, r)| r.hour).collect();
    let counts: Vec<i64> = rollups.iter().map(|(_, r)| int(r.count)).collect();
    let versions: Vec<i64> = rollups.iter().map(|(seq, _)| int(*seq)).collect();
    let params: [&(dyn ToSql + Sync); 9] = [
        &node_id,
        &hours,
        &column(|r| &r.host_name),
        &column(|r| &r.dataset),
        &column(|r| &r.category),
        &column(|r| &r.outcome),
        &column(|r| &r.severity),
        &counts,
        &versions,
    ];
    let statement = tx
        .prepare_cached(
            "INSERT INTO secmon.event_rollups (node_id, hour, host_name, dataset, category,
                 outcome, severity, count, version)
             SELECT $1, r.* FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::int8[], $9::int8[])
                 AS r(hour, host_name, dataset, category, outcome, severity, count, version)
             ON CONFLICT (node_id, hour, host_name, dataset, category, outcome, severity)
             DO UPDATE SET count = EXCLUDED.count, version = EXCLUDED.version
             WHERE secmon.event_rollups.version < EXCLUDED.version",
        )
        .await?;
    Ok(tx.execute(&statement, &params).await?)
}

async fn upsert_node(
    tx: &deadpool_postgres::Transaction<'_>,
    node_id: &str,
    (seq, at, h): (u64, DateTime<Utc>, &Heartbeat),
) -> Result<u64, DbError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO secmon.nodes (node_id, hostname, version, started_at, last_seen,
                 uptime_seconds, events_total, events_per_second, storage_bytes, index_lag,
                 outbox_entries, heartbeat_interval_seconds, heartbeat_seq, api_url)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (node_id) DO UPDATE SET
                 hostname = EXCLUDED.hostname, version = EXCLUDED.version,
                 started_at = EXCLUDED.started_at, last_seen = EXCLUDED.last_seen,
                 uptime_seconds = EXCLUDED.uptime_seconds, events_total = EXCLUDED.events_total,
                 events_per_second = EXCLUDED.events_per_second,
                 storage_bytes = EXCLUDED.storage_bytes, index_lag = EXCLUDED.index_lag,
                 outbox_entries = EXCLUDED.outbox_entries,
                 heartbeat_interval_seconds = EXCLUDED.heartbeat_interval_seconds,
                 heartbeat_seq = EXCLUDED.heartbeat_seq, api_url = EXCLUDED.api_url
             WHERE secmon.nodes.heartbeat_seq < EXCLUDED.heartbeat_seq",
        )
        .await?;
    let params: [&(dyn ToSql + Sync); 14] = [
        &node_id,
        &h.hostname,
        &h.version,
        &h.started_at,
        &at,
        &int(h.uptime_seconds),
        &int(h.events_total),
        &h.events_per_second,
        &int(h.storage_bytes),
        &int(h.index_lag),
        &int(h.outbox_entries),
        &int(h.heartbeat_interval_seconds),
        &int(seq),
        &h.api_url,
    ];
    Ok(tx.execute(&statement, &params).await?)
}

/// The fleet as the central database holds it: every node's rows.
#[derive(Clone)]
pub struct Fleet {
    primary: Pool,
    replica: Option<Replica>,
}

/// The read replica of `DATABASE_READ_URL` and what was last seen of it.
#[derive(Clone)]
struct Replica {
    pool: Pool,
    state: Arc<std::sync::Mutex<ReplicaState>>,
}

/// The read replica as last checked. `/ready` shows it (no error text).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplicaState {
    /// The last check reached it.
    pub connected: bool,
    /// How far it is behind its primary (0: it replayed all it received).
    pub lag_seconds: f64,
    pub checked_at: Option<DateTime<Utc>>,
}

/// Where a fleet answer was read, and how old its data may be.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "FleetSource")]
pub struct FleetSource {
    /// `replica` (`DATABASE_READ_URL`) or `primary` (`DATABASE_URL`: no
    /// replica is configured, or it does not answer).
    pub server: String,
    /// How far the data is behind the primary's: the replica's replay lag
    /// (0 on the primary).
    pub lag_seconds: f64,
}

/// How far a standby is behind: 0 on a primary or when it replayed all
/// it received, else the age of the last transaction it replayed.
const REPLICA_LAG: &str = "SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN 0
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
        ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
    END::float8";

/// Longest a fleet read waits for the replica before asking the primary.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(5);

/// A node of the fleet and its last heartbeat.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "FleetNode")]
pub struct FleetNode {
    pub id: String,
    pub hostname: String,
    /// The secmon version it runs.
    pub version: String,
    pub last_seen: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub events_total: i64,
    pub events_per_second: f64,
    pub storage_bytes: i64,
    pub index_lag: i64,
    /// Outbox entries it held at its last heartbeat (its backlog).
    pub outbox_entries: i64,
    /// online (heartbeats arrive), stale (3 missed) or offline (10 missed).
    pub status: String,
    /// Where its API answers the fleet search (`fleet.api_url`).
    pub api_url: Option<String>,
}

/// An alert of some node of the fleet.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "FleetAlert")]
pub struct FleetAlert {
    pub node_id: String,
    pub alert_id: i64,
    pub rule_id: String,
    pub rule_title: String,
    pub severity: String,
    pub status: String,
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub source_ip: Option<String>,
    pub host_name: Option<String>,
    pub user_name: Option<String>,
    pub assignee: Option<String>,
    pub tags: Vec<String>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// Events one node received in one hour with these attributes.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "FleetRollup")]
pub struct FleetRollup {
    pub node_id: String,
    pub hour: DateTime<Utc>,
    pub host_name: String,
    pub dataset: String,
    pub category: String,
    pub outcome: String,
    pub severity: String,
    pub count: i64,
}

/// What `Fleet::alerts` lists: all given conditions hold.
#[derive(Debug, Default, Clone)]
pub struct FleetAlertFilter {
    pub node_id: Option<String>,
    pub status: Option<String>,
    pub severity: Option<String>,
    pub rule_id: Option<String>,
    /// Last seen at or after.
    pub from: Option<DateTime<Utc>>,
    /// Last seen before.
    pub to: Option<DateTime<Utc>>,
}

/// What `Fleet::rollups` lists.
#[derive(Debug, Clone)]
pub struct FleetRollupFilter {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub node_id: Option<String>,
    pub host_name: Option<String>,
    pub dataset: Option<String>,
}

/// Builds `WHERE a AND b ..` with numbered parameters.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Conditions {
    fn add<T: ToSql + Sync + Send + 'static>(&mut self, column: &str, op: &str, value: Option<T>) {
        if let Some(value) = value {
            self.params.push(Box::new(value));
            self.sql
                .push(format!("{column} {op} ${}", self.params.len()));
        }
    }

    fn clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    fn next(&self) -> usize {
        self.params.len() + 1
    }
}

impl Replica {
    /// Asks the replica how far behind it is; records the answer. `None`:
    /// it did not answer.
    async fn check(&self) -> Option<f64> {
        let lag = query_on(&self.pool, REPLICA_TIMEOUT, REPLICA_LAG, &[])
            .await
            .ok()
            .and_then(|rows| rows.first().map(|r| r.get::<_, f64>(0).max(0.0)));
        if let Some(lag) = lag {
            metrics::gauge!(crate::telemetry::metric::FLEET_READ_LAG_SECONDS).set(lag);
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.connected = lag.is_some();
        state.lag_seconds = lag.unwrap_or(state.lag_seconds);
        state.checked_at = Some(Utc::now());
        lag
    }
}

/// Runs one query on a connection of `pool` within `timeout`. A table
/// that does not exist yet reads as empty: the schema is created by the
/// first batch a node replicates, so until then the fleet has no rows
/// (not an unavailable database).
async fn query_on(
    pool: &Pool,
    timeout: Duration,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, SinkError> {
    let client = tokio::time::timeout(timeout, pool.get())
        .await
        .map_err(|_| SinkError("the fleet database did not answer in time".into()))?
        .map_err(|e| sink_error(&e))?;
    match tokio::time::timeout(timeout, client.query(sql, params)).await {
        Ok(Err(e)) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            Ok(Vec::new())
        }
        Ok(rows) => rows.map_err(|e| SinkError(describe(&e))),
        Err(_) => {
            let _ = Object::take(client);
            Err(SinkError(
                "the fleet database did not answer in time".into(),
            ))
        }
    }
}

impl Fleet {
    /// Runs a read on the replica, or on the primary when there is none or
    /// it fails.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, SinkError> {
        if let Some(replica) = &self.replica {
            match query_on(&replica.pool, REPLICA_TIMEOUT, sql, params).await {
                Ok(rows) => return Ok(rows),
                Err(e) => {
                    metrics::counter!(crate::telemetry::metric::FLEET_READ_FALLBACKS).increment(1);
                    tracing::warn!(error = %e, "the fleet's read replica failed; reading from the primary");
                }
            }
        }
        query_on(&self.primary, STATEMENT_TIMEOUT, sql, params).await
    }

    /// Where fleet reads go now and how old their data is: the replica
    /// when it answers, with its lag, else the primary.
    pub async fn source(&self) -> FleetSource {
        let primary = FleetSource {
            server: "primary".into(),
            lag_seconds: 0.0,
        };
        let Some(replica) = &self.replica else {
            return primary;
        };
        match replica.check().await {
            Some(lag_seconds) => FleetSource {
                server: "replica".into(),
                lag_seconds,
            },
            None => primary,
        }
    }

    /// The read replica as last checked (`None`: none is configured).
    pub fn replica_state(&self) -> Option<ReplicaState> {
        self.replica.as_ref().map(|r| {
            r.state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }

    /// Checks the read replica's lag now and every `interval` (for `/ready`
    /// and the metric), until `shutdown`.
    pub async fn watch_replica(
        self,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let Some(replica) = self.replica else {
            return;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            replica.check().await;
        }
    }

    pub async fn nodes(&self) -> Result<Vec<FleetNode>, SinkError> {
        let rows = self
            .query(
                "SELECT node_id, hostname, version, last_seen, started_at, events_total,
                     events_per_second, storage_bytes, index_lag, outbox_entries, status, api_url
                 FROM secmon.fleet_nodes ORDER BY hostname, node_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| FleetNode {
                id: r.get(0),
                hostname: r.get(1),
                version: r.get(2),
                last_seen: r.get(3),
                started_at: r.get(4),
                events_total: r.get(5),
                events_per_second: r.get(6),
                storage_bytes: r.get(7),
                index_lag: r.get(8),
                outbox_entries: r.get(9),
                status: r.get(10),
                api_url: r.get(11),
            })
            .collect())
    }

    /// Alerts matching `filter`, latest first.
    pub async fn alerts(
        &self,
        filter: FleetAlertFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<FleetAlert>, SinkError> {
        let mut c = Conditions::default();
        c.add("node_id", "=", filter.node_id);
        c.add("status", "=", filter.status);
        c.add("severity", "=", filter.severity);
        c.add("rule_id", "=", filter.rule_id);
        c.add("last_seen", ">=", filter.from);
        c.add("last_seen", "<", filter.to);
        let sql = format!(
            "SELECT node_id, alert_id, rule_id, rule_title, severity, status, count, first_seen,
                 last_seen, source_ip, host_name, user_name, assignee, tags, updated_at, version
             FROM secmon.alerts {} ORDER BY last_seen DESC, node_id, alert_id
             LIMIT ${} OFFSET ${}",
            c.clause(),
            c.next(),
            c.next() + 1
        );
        let mut params = c.params();
        params.push(&limit);
        params.push(&offset);
        let rows = self.query(&sql, &params).await?;
        Ok(rows
            .iter()
            .map(|r| FleetAlert {
                node_id: r.get(0),
                alert_id: r.get(1),
                rule_id: r.get(2),
                rule_title: r.get(3),
                severity: r.get(4),
                status: r.get(5),
                count: r.get(6),
                first_seen: r.get(7),
                last_seen: r.get(8),
                source_ip: r.get(9),
                host_name: r.get(10),
                user_name: r.get(11),
                assignee: r.get(12),
                tags: r.get(13),
                updated_at: r.get(14),
                version: r.get(15),
            })
            .collect())
    }

    /// Roll-ups of the hours in `filter.from..filter.to`, oldest first.
    pub async fn rollups(
        &self,
        filter: FleetRollupFilter,
        limit: i64,
    ) -> Result<Vec<FleetRollup>, SinkError> {
        let mut c = Conditions::default();
        c.add("hour", ">=", Some(filter.from));
        c.add("hour", "<", Some(filter.to));
        c.add("node_id", "=", filter.node_id);
        c.add("host_name", "=", filter.host_name);
        c.add("dataset", "=", filter.dataset);
        let sql = format!(
            "SELECT node_id, hour, host_name, dataset, category, outcome, severity, count
             FROM secmon.event_rollups {}
             ORDER BY hour, node_id, host_name, dataset, category, outcome, severity
             LIMIT ${}",
            c.clause(),
            c.next()
        );
        let mut params = c.params();
        params.push(&limit);
        let rows = self.query(&sql, &params).await?;
        Ok(rows
            .iter()
            .map(|r| FleetRollup {
                node_id: r.get(0),
                hour: r.get(1),
                host_name: r.get(2),
                dataset: r.get(3),
                category: r.get(4),
                outcome: r.get(5),
                severity: r.get(6),
                count: r.get(7),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_options_tokio_postgres_lacks_are_translated() {
        let tls = |mode, ca: Option<&str>| TlsRequest {
            mode,
            ca: ca.map(PathBuf::from),
        };
        let cases = [
            (
                "postgres://u@db/fleet?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                "postgres://u@db/fleet?sslmode=require",
                tls(SslMode::VerifyFull, Some("/etc/ca.pem")),
            ),
            (
                "postgres://u@db/fleet",
                "postgres://u@db/fleet?sslmode=prefer",
                tls(SslMode::Prefer, None),
            ),
            (
                "postgres://u@db/fleet?sslrootcert=%2Fca.pem&connect_timeout=3",
                "postgres://u@db/fleet?connect_timeout=3&sslmode=prefer",
                tls(SslMode::Prefer, Some("/ca.pem")),
            ),
            (
                "postgresql://u@db/fleet?sslmode=require&sslrootcert=/ca",
                "postgresql://u@db/fleet?sslmode=require",
                tls(SslMode::VerifyCa, Some("/ca")),
            ),
            (
                "postgres://u@db/fleet?sslmode=require",
                "postgres://u@db/fleet?sslmode=require",
                tls(SslMode::Require, None),
            ),
            (
                "postgres://u@db/fleet?sslmode=verify-ca",
                "postgres://u@db/fleet?sslmode=require",
                tls(SslMode::VerifyCa, None),
            ),
            (
                "postgres://u@db/fleet?sslmode=allow",
                "postgres://u@db/fleet?sslmode=prefer",
                tls(SslMode::Allow, None),
            ),
            (
                "postgres://u@db/fleet?sslmode=disable",
                "postgres://u@db/fleet?sslmode=disable",
                tls(SslMode::Disable, None),
            ),
            (
                "host=db user=u sslmode=verify-full sslrootcert=/ca.pem",
                "host=db user=u sslmode=require",
                tls(SslMode::VerifyFull, Some("/ca.pem")),
            ),
            (
                "host=db user=u",
                "host=db user=u sslmode=prefer",
                tls(SslMode::Prefer, None),
            ),
        ];
        for (given, url, request) in cases {
            assert_eq!(
                libpq_compat(given).unwrap(),
                (url.to_owned(), request, None),
                "{given}"
            );
            // tokio-postgres takes what is left.
            assert!(tokio_postgres::Config::from_str(url).is_ok(), "{url}");
        }
        let err = libpq_compat("postgres://u:hunter2@db/x?sslmode=verify").unwrap_err();
        assert!(err.contains("sslmode is not one of"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn target_session_attrs_take_libpq_values_and_the_sink_wants_the_primary() {
        use TargetSessionAttrs::{Any, ReadOnly, ReadWrite};
        let attrs = |url: &str| libpq_compat(url).map(|(_, _, attrs)| attrs);
        for (given, want) in [
            ("postgresql://u@a:5432,b:5433/fleet", None),
            (
                "postgresql://u@a:5432,b:5433/fleet?target_session_attrs=read-write",
                Some(ReadWrite),
            ),
            (
                "host=a,b port=5432,5433 target_session_attrs=primary",
                Some(ReadWrite),
            ),
            (
                "postgres://u@a,b/f?target_session_attrs=prefer-standby",
                Some(ReadOnly),
            ),
            ("host=a,b target_session_attrs=standby", Some(ReadOnly)),
            ("host=a target_session_attrs=any", Some(Any)),
        ] {
            assert_eq!(attrs(given), Ok(want), "{given}");
        }
        assert!(attrs("host=a target_session_attrs=sometimes").is_err());
        // Both forms with several hosts parse once the attributes are out.
        crate::install_crypto_provider();
        for url in [
            "postgresql://u@a:5432,b:5433/fleet?target_session_attrs=read-write",
            "host=a,b port=5432,5433 user=u target_session_attrs=read-write",
        ] {
            pool(url, 1, Session::Primary).unwrap();
        }
        assert_eq!(target_session(Session::Primary, None), Ok(ReadWrite));
        assert_eq!(target_session(Session::Primary, Some(Any)), Ok(Any));
        assert_eq!(target_session(Session::Reader, None), Ok(Any));
        assert_eq!(
            target_session(Session::Reader, Some(ReadOnly)),
            Ok(ReadOnly)
        );
        let err = pool("host=a,b target_session_attrs=standby", 1, Session::Primary)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("DATABASE_READ_URL"), "{err}");
    }

    #[test]
    fn every_sslmode_makes_a_tls_configuration() {
        crate::install_crypto_provider();
        for mode in SslMode::ALL {
            client_tls(&TlsRequest { mode, ca: None }).unwrap();
        }
        assert!(
            client_tls(&TlsRequest {
                mode: SslMode::VerifyCa,
                ca: Some(PathBuf::from("/nonexistent/ca.pem")),
            })
            .is_err()
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = Postgres::new(
            "postgres://u:hunter2@db/x?sslmode=sometimes",
            1,
            Ulid::nil(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("DATABASE_URL: "), "{err}");
        assert!(err.contains("sslmode"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    /// The machine's Postgres: Debian's, trust auth on 127.0.0.1, TLS with
    /// the self-signed "snakeoil" certificate (CN and SAN `localhost`).
    const LOCAL: &str = "postgres://root@127.0.0.1:5432/postgres";
    const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

    /// Connects with `url`; whether the session is encrypted, or the error
    /// as the sink would report it.
    async fn encrypted(url: &str) -> Result<bool, String> {
        crate::install_crypto_provider();
        let pg = Postgres::new(url, 1, Ulid::nil()).map_err(|e| e.to_string())?;
        let client = pg.pool.get().await.map_err(|e| sink_error(&e).0)?;
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| describe(&e))?;
        Ok(row.get(0))
    }

    #[tokio::test]
    async fn sslmode_against_a_stock_debian_postgres() {
        // No sslmode (prefer), and require: TLS, the self-signed
        // certificate accepted as libpq does.
        assert_eq!(encrypted(LOCAL).await, Ok(true));
        assert_eq!(
            encrypted(&format!("{LOCAL}?sslmode=require")).await,
            Ok(true)
        );
        assert_eq!(encrypted(&format!("{LOCAL}?sslmode=allow")).await, Ok(true));
        // disable: plain text.
        assert_eq!(
            encrypted(&format!("{LOCAL}?sslmode=disable")).await,
            Ok(false)
        );
        // verify-full against the system roots: refused, saying what to do.
        let err = encrypted(&format!("{LOCAL}?sslmode=verify-full"))
            .await
            .unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        assert!(err.contains("sslrootcert=<file>"), "{err}");
        assert!(err.contains("sslmode=require"), "{err}");
        // verify-ca with the certificate as its CA: the chain holds, and the
        // name (127.0.0.1 is not `localhost`) does not matter ...
        assert_eq!(
            encrypted(&format!("{LOCAL}?sslmode=verify-ca&sslrootcert={SNAKEOIL}")).await,
            Ok(true)
        );
        // ... and so does require with a CA, as in libpq.
        assert_eq!(
            encrypted(&format!("{LOCAL}?sslmode=require&sslrootcert={SNAKEOIL}")).await,
            Ok(true)
        );
        // verify-full checks the name too: 127.0.0.1 is refused, localhost
        // is the certificate's name.
        let err = encrypted(&format!(
            "{LOCAL}?sslmode=verify-full&sslrootcert={SNAKEOIL}"
        ))
        .await
        .unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        assert_eq!(
            encrypted(&format!(
                "postgres://root@localhost:5432/postgres?sslmode=verify-full&sslrootcert={SNAKEOIL}"
            ))
            .await,
            Ok(true)
        );
    }
}
