//! The Redis sink: the live side of the fleet.
//!
//! Keys (prefix `replication.redis_key_prefix`, `secmon` by default):
//! - `<prefix>:alerts`: a stream capped near `redis_stream_max_len`, one
//!   message per alert update (field `alert`: JSON with `node_id`,
//!   `alert_id`, `version` and the alert), also `PUBLISH`ed on the channel
//!   of the same name;
//! - `<prefix>:node:<node_id>`: the last heartbeat (JSON), expiring after
//!   three missed ones; `<prefix>:nodes`: the set of node ids;
//! - `<prefix>:counters:<node_id>`: a hash of the heartbeat's counters;
//! - `<prefix>:rollup:<node_id>:<YYYYMMDDHH>`: a hash of the hour's event
//!   counts by `host|dataset|category|outcome|severity`, kept two days;
//! - `<prefix>:applied:<node_id>`: the last outbox seq applied.
//!
//! A batch is one `MULTI`/`EXEC` that also moves the applied seq, and only
//! entries above it are sent: a batch applied twice adds no stream message.
//! With `replication.redis_min_replicas`, a batch counts as applied only
//! once that many replicas confirmed it (`WAIT`), so a failover to one of
//! them loses nothing. An applied seq below the one the master had
//! confirmed means the data was lost anyway (a failover to a replica that
//! had not received it, a restart without persistence): the node's state
//! is sent again ([`Applied::Lost`]).
//!
//! `REDIS_URL` names one server (`redis://`, `rediss://`) or the Sentinels
//! of a monitored master (`redis+sentinel://[user:password@]host1:26379,
//! host2:26379/<master name>[/<db>]`, `rediss+sentinel://` for TLS to the
//! Sentinels and the servers; `?sentinel_username=..&sentinel_password=..`
//! when the Sentinels ask for credentials of their own). With Sentinels,
//! each connection asks them for the current master, so after a failover
//! the sink reconnects to the new one.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, TlsCertificates, TlsMode};
use ulid::Ulid;

use super::{Applied, Error, Sink, SinkError, percent_decode};
use crate::config::Replication;
use crate::notify::redact::redact;
use crate::store::outbox::{Entry, Message};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a batch waits for `redis_min_replicas` to confirm it.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
const SENTINEL_PORT: u16 = 26379;
/// How long an hour's roll-up hash is kept.
const ROLLUP_TTL_SECONDS: u64 = 2 * 24 * 3600;

pub struct Redis {
    server: Server,
    conn: Option<MultiplexedConnection>,
    node_id: String,
    prefix: String,
    stream_max_len: u64,
    heartbeat_ttl_seconds: u64,
    min_replicas: u32,
}

/// Where the sink connects.
enum Server {
    /// One server.
    Direct(redis::Client),
    /// The master the Sentinels name at each connection.
    Sentinel(SentinelClient),
}

impl Redis {
    pub fn new(url: &str, cfg: &Replication, node_id: Ulid) -> Result<Redis, Error> {
        let certificates = cfg
            .redis_ca_path
            .as_ref()
            .map(|path| {
                std::fs::read(path)
                    .map(|root_cert| TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    })
                    .map_err(|e| {
                        Error::RedisUrl(format!("cannot read the CA {}: {e}", path.display()))
                    })
            })
            .transpose()?;
        let server = match SentinelUrl::parse(url).map_err(Error::RedisUrl)? {
            Some(sentinels) => Server::Sentinel(
                sentinels
                    .client(certificates)
                    .map_err(|e| Error::RedisUrl(redact(&e.to_string())))?,
            ),
            None => Server::Direct(
                match certificates {
                    Some(certificates) => redis::Client::build_with_tls(url, certificates),
                    None => redis::Client::open(url),
                }
                .map_err(|e| Error::RedisUrl(redact(&e.to_string())))?,
            ),
        };
        Ok(Redis {
            server,
            conn: None,
            node_id: node_id.to_string(),
            prefix: cfg.redis_key_prefix.clone(),
            stream_max_len: cfg.redis_stream_max_len,
            heartbeat_ttl_seconds: 3 * cfg.heartbeat_interval_seconds.max(1),
            min_replicas: cfg.redis_min_replicas,
        })
    }

    async fn connection(&mut self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let conn = match &mut self.server {
            Server::Direct(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?
            }
            Server::Sentinel(sentinels) => {
                sentinels.get_async_connection_with_config(&config).await?
            }
        };
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    async fn apply_batch(&mut self, after: u64, entries: &[Entry]) -> Result<Applied, String> {
        let text = |e: redis::RedisError| e.to_string();
        let mut conn = self.connection().await.map_err(text)?;
        let applied_key = self.key(&format!("applied:{}", self.node_id));
        let applied: Option<u64> = redis::cmd("GET")
            .arg(&applied_key)
            .query_async(&mut conn)
            .await
            .map_err(text)?;
        let applied = applied.unwrap_or(0);
        if applied < after {
            return Ok(Applied::Lost { holds: applied });
        }
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(Applied::Rows(0));
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut sent = 0;
        let alerts = self.key("alerts");
        for entry in entries.iter().filter(|e| e.seq > applied) {
            sent += 1;
            match &entry.message {
                Message::Alert(alert) => {
                    let json = alert_json(&self.node_id, entry.seq, alert);
                    pipe.cmd("XADD")
                        .arg(&alerts)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.stream_max_len)
                        .arg("*")
                        .arg("alert")
                        .arg(&json)
                        .ignore();
                    pipe.cmd("PUBLISH").arg(&alerts).arg(&json).ignore();
                }
                Message::Rollup(r) => {
                    let key = self.key(&format!(
                        "rollup:{}:{}",
                        self.node_id,
                        r.hour.format("%Y%m%d%H")
                    ));
                    let field = [
                        &r.host_name,
                        &r.dataset,
                        &r.category,
                        &r.outcome,
                        &r.severity,
                    ]
                    .map(String::as_str)
                    .join("|");
                    pipe.cmd("HSET").arg(&key).arg(field).arg(r.count).ignore();
                    pipe.cmd("EXPIRE")
                        .arg(&key)
                        .arg(ROLLUP_TTL_SECONDS)
                        .ignore();
                }
                Message::Heartbeat(h) => {
                    let mut json = serde_json::to_value(h).unwrap_or_default();
                    if let Some(object) = json.as_object_mut() {
                        object.insert("node_id".into(), self.node_id.clone().into());
                        object.insert("at".into(), entry.at.to_rfc3339().into());
                    }
                    pipe.cmd("SET")
                        .arg(self.key(&format!("node:{}", self.node_id)))
                        .arg(json.to_string())
                        .arg("EX")
                        .arg(self.heartbeat_ttl_seconds)
                        .ignore();
                    pipe.cmd("SADD")
                        .arg(self.key("nodes"))
                        .arg(&self.node_id)
                        .ignore();
                    pipe.cmd("HSET")
                        .arg(self.key(&format!("counters:{}", self.node_id)))
                        .arg("events_total")
                        .arg(h.events_total)
                        .arg("events_per_second")
                        .arg(h.events_per_second)
                        .arg("index_lag")
                        .arg(h.index_lag)
                        .arg("outbox_entries")
                        .arg(h.outbox_entries)
                        .arg("storage_bytes")
                        .arg(h.storage_bytes)
                        .ignore();
                }
            }
        }
        // Written even when nothing else is (a batch applied again), so
        // that WAIT below covers everything before it.
        pipe.cmd("SET")
            .arg(&applied_key)
            .arg(last.max(applied))
            .ignore();
        pipe.query_async::<()>(&mut conn).await.map_err(text)?;
        if self.min_replicas > 0 {
            let confirmed: u32 = redis::cmd("WAIT")
                .arg(self.min_replicas)
                .arg(WAIT_TIMEOUT.as_millis() as u64)
                .query_async(&mut conn)
                .await
                .map_err(text)?;
            if confirmed < self.min_replicas {
                return Err(format!(
                    "{confirmed} of the {} replicas replication.redis_min_replicas asks for confirmed the batch within {}s; it is sent again",
                    self.min_replicas,
                    WAIT_TIMEOUT.as_secs()
                ));
            }
        }
        Ok(Applied::Rows(sent))
    }
}

/// The Sentinels of a `redis+sentinel://` URL and what to ask them for.
#[derive(Debug, PartialEq, Eq)]
struct SentinelUrl {
    tls: bool,
    sentinels: Vec<(String, u16)>,
    master: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
}

impl SentinelUrl {
    /// `None`: not a Sentinel URL. Errors never repeat the URL.
    fn parse(url: &str) -> Result<Option<SentinelUrl>, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Ok(None);
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let some = |s: &str| (!s.is_empty()).then(|| percent_decode(s));
                (some(user), some(password))
            }
        };
        let sentinels = hosts
            .split(',')
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()?;
        let mut path = path.split('/').filter(|p| !p.is_empty());
        let master = path.next().map(percent_decode).ok_or(
            "a Sentinel URL names its master: redis+sentinel://host1:26379,host2:26379/<master name>",
        )?;
        let db = match path.next() {
            Some(db) => db
                .parse()
                .map_err(|_| "the database after the master name is a number".to_owned())?,
            None => 0,
        };
        let (mut sentinel_username, mut sentinel_password) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("sentinel_username", v) => sentinel_username = Some(percent_decode(v)),
                ("sentinel_password", v) => sentinel_password = Some(percent_decode(v)),
                (key, _) => {
                    return Err(format!(
                        "a Sentinel URL takes sentinel_username and sentinel_password, not `{}`",
                        key.chars().take(40).collect::<String>()
                    ));
                }
            }
        }
        Ok(Some(SentinelUrl {
            tls,
            sentinels,
            master,
            db,
            username,
            password,
            sentinel_username,
            sentinel_password,
        }))
    }

    fn client(self, certificates: Option<TlsCertificates>) -> redis::RedisResult<SentinelClient> {
        let addrs = self.sentinels.into_iter().map(|(host, port)| {
            if self.tls {
                ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host, port)
            }
        });
        let mut builder =
            SentinelClientBuilder::new(addrs, self.master, SentinelServerType::Master)?
                .set_client_to_redis_db(self.db);
        if self.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates);
            }
        }
        if let Some(username) = self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(username) = self.sentinel_username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = self.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        builder.build()
    }
}

/// `host`, `host:port` or `[v6]:port`; the port defaults to Sentinel's.
fn host_port(text: &str) -> Result<(String, u16), String> {
    let bad = || "a Sentinel is host or host:port, separated by commas".to_owned();
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
            (host, rest.strip_prefix(':'))
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = port.map_or(Ok(SENTINEL_PORT), |p| p.parse().map_err(|_| bad()))?;
    Ok((host.to_owned(), port))
}

/// The stream and channel message of one alert update.
pub(crate) fn alert_json(
    node_id: &str,
    version: u64,
    alert: &crate::store::outbox::AlertSummary,
) -> String {
    let mut json = serde_json::to_value(alert).unwrap_or_default();
    if let Some(object) = json.as_object_mut() {
        object.insert("node_id".into(), node_id.into());
        object.insert("version".into(), version.into());
    }
    json.to_string()
}

impl Sink for Redis {
    const NAME: &'static str = "redis";
    const WANTS_STATE: bool = true;

    async fn apply(&mut self, after: u64, entries: &[Entry]) -> Result<Applied, SinkError> {
        self.apply_batch(after, entries).await.map_err(|e| {
            // Reconnect on the next attempt (with Sentinels: to the master
            // they name then).
            self.conn = None;
            SinkError(format!("redis: {}", redact(&e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_credentials() {
        assert_eq!(SentinelUrl::parse("redis://127.0.0.1:6379"), Ok(None));
        assert_eq!(SentinelUrl::parse("rediss://cache:6380/2"), Ok(None));
        let url = SentinelUrl::parse(
            "rediss+sentinel://secmon:p%40ss@s1:26380,s2,[::1]:26381/mymaster/3?sentinel_password=sp",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            url,
            SentinelUrl {
                tls: true,
                sentinels: vec![
                    ("s1".into(), 26380),
                    ("s2".into(), 26379),
                    ("::1".into(), 26381)
                ],
                master: "mymaster".into(),
                db: 3,
                username: Some("secmon".into()),
                password: Some("p@ss".into()),
                sentinel_username: None,
                sentinel_password: Some("sp".into()),
            }
        );
        let plain = SentinelUrl::parse("redis+sentinel://:pw@h1:26379,h2:26379/mymaster")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                plain.tls,
                plain.username.as_deref(),
                plain.password.as_deref()
            ),
            (false, None, Some("pw"))
        );
        assert!(plain.client(None).is_ok());
        for bad in [
            "redis+sentinel://h1:26379",
            "redis+sentinel://h1:port/m",
            "redis+sentinel://:hunter2@h1,/m",
            "redis+sentinel://:hunter2@h1/m/x",
            "redis+sentinel://:hunter2@h1/m?password=x",
        ] {
            let err = SentinelUrl::parse(bad).unwrap_err();
            assert!(!err.contains("hunter2"), "{bad}: {err}");
        }
    }
}
