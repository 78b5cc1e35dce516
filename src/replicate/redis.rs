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

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use ulid::Ulid;

use super::{Error, Sink, SinkError};
use crate::config::Replication;
use crate::notify::redact::redact;
use crate::store::outbox::{Entry, Message};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long an hour's roll-up hash is kept.
const ROLLUP_TTL_SECONDS: u64 = 2 * 24 * 3600;

pub struct Redis {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    node_id: String,
    prefix: String,
    stream_max_len: u64,
    heartbeat_ttl_seconds: u64,
}

impl Redis {
    pub fn new(url: &str, cfg: &Replication, node_id: Ulid) -> Result<Redis, Error> {
        let client = match &cfg.redis_ca_path {
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| {
                    Error::RedisUrl(format!("cannot read the CA {}: {e}", path.display()))
                })?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => redis::Client::open(url),
        }
        .map_err(|e| Error::RedisUrl(redact(&e.to_string())))?;
        Ok(Redis {
            client,
            conn: None,
            node_id: node_id.to_string(),
            prefix: cfg.redis_key_prefix.clone(),
            stream_max_len: cfg.redis_stream_max_len,
            heartbeat_ttl_seconds: 3 * cfg.heartbeat_interval_seconds.max(1),
        })
    }

    async fn connection(&mut self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    async fn apply_batch(&mut self, entries: &[Entry]) -> redis::RedisResult<u64> {
        let mut conn = self.connection().await?;
        let applied_key = self.key(&format!("applied:{}", self.node_id));
        let applied: Option<u64> = redis::cmd("GET")
            .arg(&applied_key)
            .query_async(&mut conn)
            .await?;
        let applied = applied.unwrap_or(0);
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
        if sent == 0 {
            return Ok(0);
        }
        let last = entries.last().map_or(applied, |e| e.seq);
        pipe.cmd("SET").arg(&applied_key).arg(last).ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(sent)
    }
}

/// The stream and channel message of one alert update.
fn alert_json(node_id: &str, version: u64, alert: &crate::store::outbox::AlertSummary) -> String {
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

    async fn apply(&mut self, entries: &[Entry]) -> Result<u64, SinkError> {
        self.apply_batch(entries).await.map_err(|e| {
            // Reconnect on the next attempt.
            self.conn = None;
            SinkError(format!("redis: {}", redact(&e.to_string())))
        })
    }
}
