//! Notifications: alert updates announced where people already are.
//!
//! The outbox (written with the alerts) is read by one more consumer, the
//! [`Dispatcher`]: it matches each alert update against every channel's
//! filter and queues a delivery per match in redb (`store::deliveries`,
//! keyed by update and channel, so a replayed batch queues nothing twice).
//! One sender task per channel sends what is pending, oldest first, at most
//! `max_messages_per_minute` messages: when more is pending than that
//! allows, it all goes out as ONE digest. A failed send stays pending and is
//! retried with backoff; nothing here ever waits on the pipeline, and the
//! pipeline never waits on a channel.

pub mod channels;
pub mod redact;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Actor;
use crate::config::{Channel, Config, Trigger};
use crate::replicate::{self, Applied, Backoff, Sink, SinkError, SinkStatus};
use crate::store::deliveries::{Delivery, Outcome};
use crate::store::outbox::{AlertEvent, AlertSummary, Entry, Message};
use crate::store::{self, Store};
use crate::telemetry::metric;

use channels::Sender;

/// Most pending deliveries one send takes (one digest at most).
const TAKE: usize = 1_000;
/// How long an idle sender waits before looking again.
const IDLE: Duration = Duration::from_secs(5);

/// The channels (from the config, and created over the API), as the
/// dispatcher, the API and `/ready` see them.
pub struct Notifier {
    channels: RwLock<Vec<Arc<ChannelTask>>>,
    node_id: String,
    node_name: String,
    /// The dispatcher's progress through the outbox.
    dispatcher: Mutex<Option<Arc<SinkStatus>>>,
    /// What a channel added later needs to run.
    store: Store,
    retry: crate::config::Replication,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

struct ChannelTask {
    sender: Sender,
    wake: Notify,
    state: Mutex<ChannelState>,
    /// Created over the API (else from the config files).
    stored: bool,
    /// Stops its sender (a child of the shutdown token).
    stop: CancellationToken,
}

/// One channel's state, for `/ready` and the API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelState {
    /// Deliveries waiting (up to the most one send takes).
    pub pending: u64,
    pub messages_sent: u64,
    pub digests_sent: u64,
    pub failures: u64,
    pub last_sent: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("notifications.channels[{name}]: {reason}")]
    Channel { name: String, reason: String },
    #[error(transparent)]
    Replicate(#[from] replicate::Error),
}

impl Notifier {
    fn current(&self) -> Vec<Arc<ChannelTask>> {
        self.channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn channel(&self, name: &str) -> Option<Arc<ChannelTask>> {
        self.current()
            .into_iter()
            .find(|c| c.sender.config.name == name)
    }

    /// Each channel, its state, and whether it was created over the API.
    pub fn channels(&self) -> Vec<(Channel, ChannelState, bool)> {
        self.current()
            .iter()
            .map(|c| {
                (
                    c.sender.config.clone(),
                    c.state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                    c.stored,
                )
            })
            .collect()
    }

    /// Starts a sender for `channel`, replacing (and stopping) the one of
    /// the same name.
    fn run(self: &Arc<Self>, channel: Channel, stored: bool) -> Result<(), String> {
        let task = Arc::new(ChannelTask {
            sender: Sender::new(channel)?,
            wake: Notify::new(),
            state: Mutex::default(),
            stored,
            stop: self.shutdown.child_token(),
        });
        self.tasks.spawn(send_loop(
            self.store.clone(),
            self.clone(),
            task.clone(),
            self.retry.clone(),
        ));
        let mut channels = self
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = channels
            .iter_mut()
            .find(|c| c.sender.config.name == task.sender.config.name)
        {
            old.stop.cancel();
            *old = task;
        } else {
            channels.push(task);
        }
        Ok(())
    }

    /// Creates or replaces a channel over the API (stored, audited). The
    /// channels of the config files cannot be changed here.
    pub async fn set(self: &Arc<Self>, actor: &Actor, channel: Channel) -> Result<(), String> {
        if self.channel(&channel.name).is_some_and(|c| !c.stored) {
            return Err(format!(
                "channel {} comes from the config files: change it there",
                channel.name
            ));
        }
        // Build it first: a channel that cannot run is not stored.
        Sender::new(channel.clone())?;
        let stored = stored_form(&channel);
        let shown = serde_json::to_value(&channel).unwrap_or_default();
        let (store, actor_owned, name) = (self.store.clone(), actor.clone(), channel.name.clone());
        blocking(move || store.put_channel(&actor_owned, &name, &stored, shown)).await?;
        self.run(channel, true)
    }

    /// Deletes a channel created over the API; false when there is none.
    pub async fn delete(&self, actor: &Actor, name: &str) -> Result<bool, String> {
        if self.channel(name).is_some_and(|c| !c.stored) {
            return Err(format!(
                "channel {name} comes from the config files: change it there"
            ));
        }
        let (store, actor, owned) = (self.store.clone(), actor.clone(), name.to_owned());
        let existed = blocking(move || store.delete_channel(&actor, &owned)).await?;
        let mut channels = self
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        channels.retain(|c| {
            let keep = c.sender.config.name != name;
            if !keep {
                c.stop.cancel();
            }
            keep
        });
        Ok(existed)
    }

    /// The dispatcher's lag through the outbox.
    pub fn dispatcher(&self) -> Option<replicate::SinkState> {
        self.dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|s| s.state())
    }

    /// Sends a sample alert on `name` now; the channel's error if it fails.
    pub async fn test(&self, name: &str) -> Result<(), String> {
        let channel = self
            .channel(name)
            .ok_or_else(|| format!("no channel {name}"))?;
        let now = Utc::now();
        let sample = AlertSummary {
            event: AlertEvent::Raised,
            alert_id: 0,
            rule_id: "secmon-test".into(),
            rule_title: "secmon test notification".into(),
            severity: "informational".into(),
            status: "open".into(),
            count: 1,
            first_seen: now,
            last_seen: now,
            source_ip: None,
            host_name: Some(self.node_name.clone()),
            user_name: None,
            assignee: None,
            correlation: false,
            tags: Vec::new(),
            created_at: now,
            updated_at: now,
            trusted: false,
        };
        let alerts = [(0, &sample)];
        let message = channels::Message {
            node_id: &self.node_id,
            node_name: &self.node_name,
            alerts: &alerts,
            digest: false,
        };
        channel
            .sender
            .send(&message)
            .await
            .map_err(|e| redact::redact(&e.0))
    }
}

/// Whether `channel` announces this alert update.
pub fn matches(channel: &Channel, alert: &AlertSummary) -> bool {
    let trigger = match alert.event {
        AlertEvent::Raised => Trigger::Raised,
        AlertEvent::Changed => Trigger::Changed,
        AlertEvent::Repeated | AlertEvent::Resent => return false,
    };
    channel.on.contains(&trigger)
        && severity_rank(&alert.severity) >= severity_rank(&channel.min_severity)
        && (channel.rules.is_empty() || channel.rules.contains(&alert.rule_id))
        && (channel.tags.is_empty() || alert.tags.iter().any(|t| channel.tags.contains(t)))
        && (channel.hosts.is_empty()
            || alert
                .host_name
                .as_ref()
                .is_some_and(|h| channel.hosts.contains(h)))
}

/// Sigma levels in increasing order; unknown ones count as medium.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "informational" => 0,
        "low" => 1,
        "high" => 3,
        "critical" => 4,
        _ => 2,
    }
}

/// The outbox consumer that turns alert updates into deliveries.
pub struct Dispatcher {
    store: Store,
    notifier: Arc<Notifier>,
}

impl Sink for Dispatcher {
    const NAME: &'static str = "notify";

    async fn apply(&mut self, _after: u64, entries: &[Entry]) -> Result<Applied, SinkError> {
        let channels = self.notifier.current();
        let mut queued: Vec<(u64, String, AlertSummary)> = Vec::new();
        for entry in entries {
            let Message::Alert(alert) = &entry.message else {
                continue;
            };
            for channel in &channels {
                if matches(&channel.sender.config, alert) {
                    queued.push((entry.seq, channel.sender.config.name.clone(), alert.clone()));
                }
            }
        }
        if queued.is_empty() {
            return Ok(Applied::Rows(0));
        }
        let store = self.store.clone();
        let added = tokio::task::spawn_blocking(move || {
            let refs: Vec<(u64, &str, &AlertSummary)> = queued
                .iter()
                .map(|(seq, name, alert)| (*seq, name.as_str(), alert))
                .collect();
            store.queue_deliveries(&refs)
        })
        .await
        .map_err(|e| SinkError(e.to_string()))?
        .map_err(|e| SinkError(e.to_string()))?;
        for channel in &channels {
            channel.wake.notify_one();
        }
        Ok(Applied::Rows(added))
    }
}

/// The JSON a channel is stored as: its secrets (URLs, the signing key,
/// header values) in clear. What the audit log and the API show of it is
/// its `Serialize` form, where each of them is `***`.
fn stored_form(channel: &Channel) -> Vec<u8> {
    let mut v = serde_json::to_value(channel).unwrap_or_default();
    for (key, secret) in [
        ("url", &channel.url),
        ("secret", &channel.secret),
        ("smtp_url", &channel.smtp_url),
    ] {
        if let Some(secret) = secret {
            v[key] = serde_json::Value::String(secret.expose().to_owned());
        }
    }
    for (name, value) in &channel.headers {
        v["headers"][name] = serde_json::Value::String(value.expose().to_owned());
    }
    v.to_string().into_bytes()
}

/// Starts the dispatcher on the outbox (from `head`) and one sender per
/// channel: those of the config files and those created over the API.
pub async fn start(
    config: &Config,
    store: &Store,
    head: &watch::Receiver<u64>,
    status: &replicate::Status,
    (tasks, shutdown): (&TaskTracker, &CancellationToken),
) -> Result<Arc<Notifier>, Error> {
    let stored = {
        let store = store.clone();
        blocking(move || store.stored_channels())
            .await
            .map_err(|reason| Error::Channel {
                name: "(stored)".into(),
                reason,
            })?
    };
    let notifier = Arc::new(Notifier {
        channels: RwLock::default(),
        node_id: store.node_id().to_string(),
        node_name: crate::app::node_name(config),
        dispatcher: Mutex::new(None),
        store: store.clone(),
        retry: config.replication.clone(),
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
    });
    for c in &config.notifications.channels {
        notifier
            .run(c.clone(), false)
            .map_err(|reason| Error::Channel {
                name: c.name.clone(),
                reason,
            })?;
    }
    for (name, json) in stored {
        // One that no longer loads is logged and left out, like a bad rule.
        let loaded = serde_json::from_slice::<Channel>(&json)
            .map_err(|e| crate::store::channels::corrupt(&name, &e).to_string())
            .and_then(|c| notifier.run(c, true));
        if let Err(reason) = loaded {
            tracing::error!(channel = %name, error = %reason, "a stored notification channel does not load");
        }
    }
    let dispatcher = Dispatcher {
        store: store.clone(),
        notifier: notifier.clone(),
    };
    let state =
        replicate::spawn(config, store, dispatcher, status, head, (tasks, shutdown)).await?;
    *notifier
        .dispatcher
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(state);
    tasks.spawn(purge_loop(
        store.clone(),
        config.notifications.keep_days,
        shutdown.clone(),
    ));
    Ok(notifier)
}

/// A token bucket of messages per minute.
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32) -> Bucket {
        let capacity = f64::from(per_minute.max(1));
        Bucket {
            tokens: capacity,
            capacity,
            per_second: capacity / 60.0,
            at: Instant::now(),
        }
    }

    fn refill(&mut self) -> f64 {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_second)
            .min(self.capacity);
        self.at = now;
        self.tokens
    }

    /// How long until one token is there.
    fn wait(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.per_second).max(0.0))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> store::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends what is pending on one channel, forever.
async fn send_loop(
    store: Store,
    notifier: Arc<Notifier>,
    channel: Arc<ChannelTask>,
    cfg: crate::config::Replication,
) {
    let shutdown = channel.stop.clone();
    let name = channel.sender.config.name.clone();
    // From zero, so the first failure shows as an increase.
    metrics::counter!(metric::NOTIFICATION_FAILURES, "channel" => name.clone()).increment(0);
    let mut bucket = Bucket::new(channel.sender.config.max_messages_per_minute);
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.retry_initial_ms),
        Duration::from_secs(cfg.retry_max_seconds),
    );
    let mut failing = false;
    while !shutdown.is_cancelled() {
        let pending = {
            let (store, name) = (store.clone(), name.clone());
            blocking(move || store.pending_deliveries(&name, TAKE)).await
        };
        let pending = match pending {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(channel = %name, error = %e, "cannot read pending notifications");
                pause(&shutdown, IDLE).await;
                continue;
            }
        };
        set_pending(&channel, &name, pending.len());
        if pending.is_empty() {
            tokio::select! {
                () = channel.wake.notified() => {}
                () = tokio::time::sleep(IDLE) => {}
                () = shutdown.cancelled() => {}
            }
            continue;
        }
        if bucket.refill() < 1.0 {
            let wait = bucket.wait();
            pause(&shutdown, wait).await;
            continue;
        }
        // Each on its own while the budget allows; else one digest.
        let digest = (pending.len() as f64) > bucket.tokens.floor();
        let result = if digest {
            bucket.tokens -= 1.0;
            send(&store, &notifier, &channel, &pending, true).await
        } else {
            let mut result = Ok(());
            for delivery in pending.chunks(1) {
                bucket.tokens -= 1.0;
                result = send(&store, &notifier, &channel, delivery, false).await;
                if result.is_err() {
                    break;
                }
            }
            result
        };
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!(channel = %name, "notifications delivered again");
                }
                failing = false;
                backoff.reset();
            }
            Err(e) => {
                let delay = backoff.next();
                if !failing {
                    tracing::warn!(channel = %name, error = %e, retry_in_ms = delay.as_millis() as u64, "notification failed; it stays pending and is retried");
                }
                failing = true;
                pause(&shutdown, delay).await;
            }
        }
    }
}

fn set_pending(channel: &ChannelTask, name: &str, pending: usize) {
    metrics::gauge!(metric::NOTIFICATIONS_PENDING, "channel" => name.to_owned())
        .set(pending as f64);
    channel
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pending = pending as u64;
}

/// Sends `deliveries` as one message (a digest when `digest`) and records
/// the outcome on each.
async fn send(
    store: &Store,
    notifier: &Notifier,
    channel: &ChannelTask,
    deliveries: &[Delivery],
    digest: bool,
) -> Result<(), String> {
    let name = channel.sender.config.name.clone();
    let alerts: Vec<(u64, &AlertSummary)> = deliveries.iter().map(|d| (d.seq, &d.alert)).collect();
    let message = channels::Message {
        node_id: &notifier.node_id,
        node_name: &notifier.node_name,
        alerts: &alerts,
        digest,
    };
    // Redacted at the source too; this is the net under every channel kind.
    let sent = channel
        .sender
        .send(&message)
        .await
        .map_err(|e| channels::SendError(redact::redact(&e.0)));
    let outcome = match &sent {
        Ok(()) => Outcome::Sent { digest },
        Err(e) => Outcome::Failed { error: e.0.clone() },
    };
    let now = Utc::now();
    {
        let mut state = channel.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &sent {
            Ok(()) if digest => state.digests_sent += 1,
            Ok(()) => state.messages_sent += 1,
            Err(e) => {
                state.failures += 1;
                state.last_error = Some(e.0.clone());
            }
        }
        if sent.is_ok() {
            state.last_sent = Some(now);
            state.last_error = None;
        }
    }
    let kind = if digest { "digest" } else { "alert" };
    match &sent {
        Ok(()) => {
            metrics::counter!(metric::NOTIFICATIONS_SENT, "channel" => name.clone(), "kind" => kind)
                .increment(1)
        }
        Err(_) => {
            metrics::counter!(metric::NOTIFICATION_FAILURES, "channel" => name.clone()).increment(1)
        }
    }
    let seqs: Vec<u64> = deliveries.iter().map(|d| d.seq).collect();
    let recorded = {
        let store = store.clone();
        let name = name.clone();
        blocking(move || store.record_deliveries(&name, &seqs, &outcome)).await
    };
    if let Err(e) = recorded {
        // Sent but not recorded: sent again later (at least once).
        tracing::error!(channel = %name, error = %e, "cannot record a notification");
    }
    sent.map_err(|e| e.0)
}

async fn pause(shutdown: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Deletes sent deliveries older than `keep_days`, hourly.
async fn purge_loop(store: Store, keep_days: u64, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let cutoff = Utc::now()
            - chrono::Duration::days(i64::try_from(keep_days).unwrap_or(i64::MAX / 86_400_000));
        let store = store.clone();
        if let Err(e) = blocking(move || store.purge_deliveries(cutoff, 10_000)).await {
            tracing::warn!(error = %e, "cannot purge old notifications");
        }
    }
}

/// Per channel, for the unauthenticated `/ready`: states and counts, never
/// error text (`failing` says whether the last attempt failed; the error
/// itself is for admins, in GraphQL `notificationChannels`).
pub fn report(notifier: &Notifier) -> serde_json::Value {
    let channels: BTreeMap<String, serde_json::Value> = notifier
        .channels()
        .into_iter()
        .map(|(c, s, _)| {
            let state = serde_json::json!({
                "pending": s.pending,
                "messages_sent": s.messages_sent,
                "digests_sent": s.digests_sent,
                "failures": s.failures,
                "last_sent": s.last_sent,
                "failing": s.last_error.is_some(),
            });
            (c.name, state)
        })
        .collect();
    let dispatcher = notifier.dispatcher().map(|s| s.ready_view());
    serde_json::json!({ "channels": channels, "dispatcher": dispatcher })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChannelKind;

    fn channel() -> Channel {
        serde_saphyr::from_str(
            "name: soc\nkind: webhook\nurl: http://127.0.0.1:1/\nmin_severity: high\nhosts: [web-1]\n",
        )
        .unwrap()
    }

    fn alert(severity: &str, host: &str, event: AlertEvent) -> AlertSummary {
        let now = Utc::now();
        AlertSummary {
            event,
            alert_id: 1,
            rule_id: "r".into(),
            rule_title: "t".into(),
            severity: severity.into(),
            status: "open".into(),
            count: 1,
            first_seen: now,
            last_seen: now,
            source_ip: None,
            host_name: Some(host.into()),
            user_name: None,
            assignee: None,
            correlation: false,
            tags: vec![],
            created_at: now,
            updated_at: now,
            trusted: false,
        }
    }

    #[test]
    fn filters_by_trigger_severity_and_host() {
        let c = channel();
        assert_eq!(c.kind, ChannelKind::Webhook);
        assert!(matches(&c, &alert("high", "web-1", AlertEvent::Raised)));
        assert!(matches(&c, &alert("critical", "web-1", AlertEvent::Raised)));
        assert!(!matches(&c, &alert("medium", "web-1", AlertEvent::Raised)));
        assert!(!matches(&c, &alert("high", "db-1", AlertEvent::Raised)));
        assert!(!matches(&c, &alert("high", "web-1", AlertEvent::Repeated)));
        assert!(
            !matches(&c, &alert("high", "web-1", AlertEvent::Changed)),
            "status changes only when `on` says so"
        );
    }

    #[test]
    fn the_bucket_allows_its_rate_then_waits() {
        let mut b = Bucket::new(60);
        assert_eq!(b.refill().floor(), 60.0);
        b.tokens = 0.0;
        assert!(b.wait() <= Duration::from_secs(1));
    }
}
