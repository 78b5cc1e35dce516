//! NATS JetStream: events to `<prefix>.events.<node>.<dataset>`, alert
//! updates to `<prefix>.alerts.<node>`, each with a `Nats-Msg-Id`
//! (`<node>/<seq>` for an event, `<node>/alert/<outbox seq>` for an alert
//! update) so the stream's duplicate window drops what a retry sends again.
//!
//! The stream (`NATS_STREAM`) is created on first use when missing: file
//! storage, both subject trees, limits retention with no limits set and
//! `export.nats_duplicate_window_seconds`. An existing stream is used as it
//! is; it must take both subject trees. docs/EXPORT.md has the settings.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Batching, Failed, token};
use crate::config::Export;
use crate::model::Event;
use crate::replicate::{self, Applied, SinkError};
use crate::store::outbox::{Entry, Message};
use crate::telemetry::metric;

/// Most messages one publisher has sent and not yet seen acknowledged
/// (however large its batch): the next waits for the oldest's
/// acknowledgement.
const WINDOW: usize = 2_000;

/// The connection and stream shared by the event and the alert sink.
#[derive(Clone)]
pub struct Nats {
    shared: Arc<Shared>,
}

struct Shared {
    js: jetstream::Context,
    stream: stream::Config,
    /// The stream is known to exist (cleared when a publish finds none, so
    /// the next batch makes it again).
    ready: AtomicBool,
    node: String,
    prefix: String,
    batch_size: usize,
}

/// Parses `NATS_URL` (one URL, or several separated by commas).
fn servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<async_nats::ServerAddr>().map_err(|_| {
                "not a NATS server address: use nats://[user:password@]host:4222 (tls:// for TLS), several separated by commas".to_owned()
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|servers| {
            if servers.is_empty() {
                Err("is empty".to_owned())
            } else {
                Ok(servers)
            }
        })
}

/// Checks `NATS_URL` without connecting (`secmon config check`); `Ok(true)`
/// when every server is reached over TLS or on the loopback interface.
pub fn check_url(url: &str) -> Result<bool, String> {
    Ok(servers(url)?.iter().all(|server| {
        let host = server.host().trim_start_matches('[').trim_end_matches(']');
        server.tls_required()
            || host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }))
}

impl Nats {
    /// Connects in the background (the node starts while NATS is down; the
    /// sinks retry until it is up).
    pub async fn connect(url: &str, cfg: &Export, node: ulid::Ulid) -> Result<Nats, super::Error> {
        let servers = servers(url).map_err(super::Error::NatsUrl)?;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("secmon {node}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5));
        if let Some(ca) = &cfg.nats_ca_path {
            options = options.add_root_certificates(ca.clone());
        }
        let client = options
            .connect(servers)
            .await
            .map_err(|e| super::Error::NatsUrl(e.to_string()))?;
        let prefix = cfg.nats_subject_prefix.clone();
        let node = node.to_string();
        Ok(Nats {
            shared: Arc::new(Shared {
                // Each publisher (the event and the alert sink) holds at
                // most WINDOW unacknowledged messages: both together stay
                // under the context's limit, so neither waits for a permit
                // the other holds.
                js: jetstream::ContextBuilder::new()
                    .max_ack_inflight(2 * WINDOW)
                    .build(client),
                stream: stream::Config {
                    name: cfg.nats_stream.clone(),
                    subjects: vec![format!("{prefix}.events.>"), format!("{prefix}.alerts.>")],
                    storage: stream::StorageType::File,
                    duplicate_window: Duration::from_secs(cfg.nats_duplicate_window_seconds),
                    ..stream::Config::default()
                },
                ready: AtomicBool::new(false),
                node,
                prefix,
                batch_size: cfg.nats_batch_size,
            }),
        })
    }

    /// The event sink.
    pub fn events(&self) -> Events {
        Events(self.clone())
    }

    /// The alert sink (an outbox consumer, like Postgres and Redis).
    pub fn alerts(&self) -> Alerts {
        Alerts(self.clone())
    }

    /// Creates the stream when missing.
    async fn ensure_stream(&self) -> Result<(), String> {
        let shared = &self.shared;
        if shared.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        shared
            .js
            .get_or_create_stream(shared.stream.clone())
            .await
            .map_err(|e| format!("nats: stream {}: {e}", shared.stream.name))?;
        shared.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Publishes `messages` (seq, subject, id, payload) and waits for every
    /// acknowledgement; `Ok`: all stored (or dropped as duplicates).
    async fn publish(
        &self,
        sink: &'static str,
        messages: impl Iterator<Item = (u64, String, String, Vec<u8>)>,
    ) -> Result<(), Failed> {
        self.ensure_stream().await.map_err(Failed::nothing)?;
        let js = &self.shared.js;
        let mut acks = std::collections::VecDeque::with_capacity(WINDOW);
        let mut through = 0;
        let mut failed = None;
        for (seq, subject, id, payload) in messages {
            if acks.len() == WINDOW
                && let Some((seq, ack)) = acks.pop_front()
            {
                // The oldest must be confirmed before another goes out.
                through = self.confirmed(through, seq, ack).await?;
            }
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(id);
            match js.send_publish(subject, publish).await {
                Ok(ack) => acks.push_back((seq, Some(ack))),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    // It never fits: sending it again would stop the sink.
                    tracing::warn!(
                        sink,
                        seq,
                        "nats: a message is larger than the server's max_payload and is not exported; raise max_payload in the NATS server's configuration"
                    );
                    metrics::counter!(metric::EXPORT_DROPPED, "sink" => sink).increment(1);
                    acks.push_back((seq, None));
                }
                Err(e) => {
                    if e.kind() == PublishErrorKind::StreamNotFound {
                        self.shared.ready.store(false, Ordering::Release);
                    }
                    failed = Some(format!("nats: publish: {e}"));
                    break;
                }
            }
        }
        for (seq, ack) in acks {
            through = self.confirmed(through, seq, ack).await?;
        }
        match failed {
            Some(error) => Err(Failed {
                through,
                error: SinkError(error),
            }),
            None => Ok(()),
        }
    }

    /// Waits for the acknowledgement of message `seq` (none: it was
    /// dropped); the seq everything up to is confirmed, or the failure
    /// with what was confirmed before it (`through`).
    async fn confirmed(
        &self,
        through: u64,
        seq: u64,
        ack: Option<jetstream::context::PublishAckFuture>,
    ) -> Result<u64, Failed> {
        if let Some(ack) = ack
            && let Err(e) = ack.await
        {
            if e.kind() == PublishErrorKind::StreamNotFound {
                self.shared.ready.store(false, Ordering::Release);
            }
            return Err(Failed {
                through,
                error: SinkError(format!("nats: not acknowledged: {e}")),
            });
        }
        Ok(seq)
    }
}

/// Events to JetStream.
pub struct Events(Nats);

impl super::Sink for Events {
    const NAME: &'static str = "nats";

    fn batching(&self) -> Batching {
        Batching {
            max_events: self.0.shared.batch_size,
            max_wait: Duration::ZERO,
        }
    }

    async fn send(&mut self, events: &[Event]) -> Result<(), Failed> {
        let shared = &self.0.shared;
        let (prefix, node) = (&shared.prefix, &shared.node);
        let messages = events.iter().map(|e| {
            let subject = format!("{prefix}.events.{node}.{}", token(e.dataset.as_deref()));
            let payload = serde_json::to_vec(&e.to_export_json()).unwrap_or_default();
            (e.seq, subject, format!("{node}/{}", e.seq), payload)
        });
        self.0.publish(Self::NAME, messages).await
    }
}

/// Alert updates to JetStream: the outbox's alert entries (roll-ups and
/// heartbeats are for the fleet databases).
pub struct Alerts(Nats);

impl replicate::Sink for Alerts {
    const NAME: &'static str = "nats";
    /// A new stream gets every alert the node holds.
    const WANTS_STATE: bool = true;

    async fn apply(&mut self, _after: u64, entries: &[Entry]) -> Result<Applied, SinkError> {
        let shared = &self.0.shared;
        let (prefix, node) = (&shared.prefix, &shared.node);
        let messages = entries.iter().filter_map(|entry| match &entry.message {
            Message::Alert(alert) => Some((
                entry.seq,
                format!("{prefix}.alerts.{node}"),
                format!("{node}/alert/{}", entry.seq),
                replicate::redis::alert_json(node, entry.seq, alert).into_bytes(),
            )),
            Message::Rollup(_) | Message::Heartbeat(_) => None,
        });
        let alerts = entries
            .iter()
            .filter(|e| matches!(e.message, Message::Alert(_)))
            .count();
        self.0
            .publish(<Self as replicate::Sink>::NAME, messages)
            .await
            .map(|()| Applied::Rows(alerts as u64))
            .map_err(|failed| failed.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_repeating_them() {
        assert_eq!(check_url("nats://127.0.0.1:4222"), Ok(true));
        assert_eq!(check_url("tls://a:4222, tls://u:p@b:4222"), Ok(true));
        assert_eq!(check_url("tls://a:4222, nats://b:4222"), Ok(false));
        let err = check_url("http://user:hunter2@x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(check_url(" , ").is_err());
    }
}
