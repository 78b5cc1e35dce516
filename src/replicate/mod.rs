//! Replication: the outbox, applied to the fleet's Postgres and Redis.
//!
//! The writer (and every alert change) puts summaries in the outbox in the
//! transaction that stores what they summarise (`store::outbox`). Here, one
//! task per sink reads the outbox after its cursor, applies a batch in one
//! transaction of the sink, and only then moves its cursor: a crash in
//! between applies the batch again, which the sinks make harmless (versions
//! in Postgres, an applied-seq key in Redis). An unreachable sink is retried
//! with exponential backoff and jitter while the node goes on; its lag is a
//! metric and part of `/ready`. A heartbeat task queues the node's status.

pub mod postgres;
pub mod redis;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Secret};
use crate::notify::redact::redact;
use crate::store::indexer::Progress;
use crate::store::outbox::{Entry, Heartbeat};
use crate::store::{self, Store};
use crate::telemetry::metric;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(String),
    #[error("DATABASE_READ_URL: {0}")]
    DatabaseReadUrl(String),
    #[error("REDIS_URL: {0}")]
    RedisUrl(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Why a batch was not applied; the sink retries it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Where the outbox goes.
pub trait Sink: Send + 'static {
    /// Also the name of its cursor.
    const NAME: &'static str;

    /// A new sink of this kind starts with the node's whole state (every
    /// alert queued again); else it starts with what comes next.
    const WANTS_STATE: bool = false;

    /// Applies `entries` (in seq order) in one transaction. Applying entries
    /// again must change nothing. `after` is the last seq the receiver
    /// confirmed: a receiver that keeps its own record of it checks it in
    /// the same transaction and answers [`Applied::Lost`] when it holds less.
    fn apply(
        &mut self,
        after: u64,
        entries: &[Entry],
    ) -> impl Future<Output = Result<Applied, SinkError>> + Send;
}

/// What a sink did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied: this many rows or messages written.
    Rows(u64),
    /// Not applied: the receiver holds this node's outbox only up to
    /// `holds`, less than it had confirmed. It lost acknowledged writes (a
    /// failover to a replica that had not received them, a database
    /// restored from an older backup, a new empty one).
    Lost { holds: u64 },
}

/// Each sink's progress, for `/ready`, the metrics and the logs.
#[derive(Default)]
pub struct Status {
    sinks: Vec<Arc<SinkStatus>>,
    /// The fleet view, once replication started with Postgres: `/ready`
    /// shows its read replica.
    fleet: std::sync::OnceLock<Fleet>,
    /// Every reader of the outbox (the sinks, and `notify` with channels):
    /// an entry is deleted once all of them applied it.
    consumers: Vec<&'static str>,
    /// `/ready` fails when a sink lags more; `None`: never.
    max_ready_lag: Option<Duration>,
    /// The event export sinks (`crate::export`): reported, never making
    /// the node unready.
    exports: Vec<Arc<SinkStatus>>,
}

pub struct SinkStatus {
    name: &'static str,
    state: Mutex<SinkState>,
}

/// One sink's state. `/ready` (no credential) shows [`SinkState::ready_view`]:
/// states and counts, never `last_error`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkState {
    /// The last batch was applied (false until the first one).
    pub connected: bool,
    /// Outbox entries not yet applied.
    pub lag_entries: u64,
    /// Age of the oldest entry not yet applied.
    pub lag_seconds: f64,
    /// The last seq applied.
    pub applied: u64,
    pub last_success: Option<DateTime<Utc>>,
    /// Why the last batch failed, redacted of URLs and credentials
    /// (`notify::redact`); `None` once one succeeds.
    pub last_error: Option<String>,
}

impl SinkState {
    /// What the unauthenticated `/ready` shows: the state, not the error
    /// text (`failing` is whether the last attempt failed).
    pub fn ready_view(&self) -> serde_json::Value {
        serde_json::json!({
            "connected": self.connected,
            "lag_entries": self.lag_entries,
            "lag_seconds": self.lag_seconds,
            "applied": self.applied,
            "last_success": self.last_success,
            "failing": self.last_error.is_some(),
        })
    }

    /// [`SinkState::ready_view`] of an export sink, in its terms: events
    /// and the last seq the receiver took.
    pub fn export_view(&self) -> serde_json::Value {
        serde_json::json!({
            "connected": self.connected,
            "lag_events": self.lag_entries,
            "lag_seconds": self.lag_seconds,
            "exported": self.applied,
            "last_success": self.last_success,
            "failing": self.last_error.is_some(),
        })
    }
}

impl SinkStatus {
    pub(crate) fn new(name: &'static str) -> Arc<SinkStatus> {
        Arc::new(SinkStatus {
            name,
            state: Mutex::default(),
        })
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut SinkState)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn state(&self) -> SinkState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Status {
    /// The sinks `config` sets up, none applied yet.
    pub fn new(config: &Config) -> Status {
        let services = &config.services;
        let names = [
            services
                .database_url
                .as_ref()
                .map(|_| postgres::Postgres::NAME),
            services.redis_url.as_ref().map(|_| redis::Redis::NAME),
            // JetStream takes the alerts from the outbox, the events from
            // the store (`crate::export`).
            config
                .export
                .nats_url
                .as_ref()
                .map(|_| crate::export::nats::Alerts::NAME),
        ];
        // Always: channels may be created over the API at any time.
        let notify = Some(crate::notify::Dispatcher::NAME);
        let respond = (config.response.enabled && !config.response.actions.is_empty())
            .then_some(crate::respond::Responder::NAME);
        Status {
            fleet: std::sync::OnceLock::new(),
            consumers: names
                .into_iter()
                .chain([notify, respond])
                .flatten()
                .collect(),
            sinks: names.into_iter().flatten().map(SinkStatus::new).collect(),
            exports: crate::export::sink_names(config)
                .into_iter()
                .map(SinkStatus::new)
                .collect(),
            max_ready_lag: match config.replication.max_ready_lag_seconds {
                0 => None,
                s => Some(Duration::from_secs(s)),
            },
        }
    }

    /// Postgres or Redis is configured.
    pub fn is_enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    fn sink(&self, name: &str) -> Option<Arc<SinkStatus>> {
        self.sinks.iter().find(|s| s.name == name).cloned()
    }

    fn consumers(&self) -> Vec<&'static str> {
        self.consumers.clone()
    }

    pub fn sinks(&self) -> impl Iterator<Item = (&'static str, SinkState)> + '_ {
        self.sinks.iter().map(|s| (s.name, s.state()))
    }

    /// The event export sinks' states.
    pub fn exports(&self) -> impl Iterator<Item = (&'static str, SinkState)> + '_ {
        self.exports.iter().map(|s| (s.name, s.state()))
    }

    pub(crate) fn export(&self, name: &str) -> Option<Arc<SinkStatus>> {
        self.exports.iter().find(|s| s.name == name).cloned()
    }

    /// The read replica of `DATABASE_READ_URL` as last checked.
    pub fn read_replica(&self) -> Option<postgres::ReplicaState> {
        self.fleet.get().and_then(Fleet::replica_state)
    }

    /// False when a sink lags more than `replication.max_ready_lag_seconds`.
    pub fn ready(&self) -> bool {
        let Some(max) = self.max_ready_lag else {
            return true;
        };
        self.sinks
            .iter()
            .all(|s| s.state().lag_seconds <= max.as_secs_f64())
    }
}

/// What the fleet view reads, when Postgres is configured.
pub type Fleet = postgres::Fleet;

/// Turns the outbox on (the notification dispatcher always reads it); the
/// receiver of its head. Hourly event counts go in only for Postgres and
/// Redis, which apply them.
pub async fn enable_outbox(config: &Config, store: &Store) -> Result<watch::Receiver<u64>, Error> {
    let (store, max) = (store.clone(), config.replication.outbox_max_entries);
    let services = &config.services;
    let rollups = services.database_url.is_some() || services.redis_url.is_some();
    Ok(blocking(move || store.enable_outbox(max, rollups)).await?)
}

/// Starts the heartbeat and one task per sink. Returns the fleet view when
/// Postgres is configured.
pub async fn start(
    config: &Config,
    store: &Store,
    (progress, head): (Arc<Progress>, watch::Receiver<u64>),
    status: &Arc<Status>,
    (tasks, shutdown): (&TaskTracker, &CancellationToken),
) -> Result<Option<Fleet>, Error> {
    if !status.is_enabled() {
        return Ok(None);
    }
    let cfg = &config.replication;
    let pg = config
        .services
        .database_url
        .as_ref()
        .map(|url| postgres::Postgres::new(url.expose(), cfg.postgres_pool_size, store.node_id()))
        .transpose()?;
    let redis = config
        .services
        .redis_url
        .as_ref()
        .map(|url| redis::Redis::new(url.expose(), cfg, store.node_id()))
        .transpose()?;
    tasks.spawn(heartbeats(
        HeartbeatSource {
            store: store.clone(),
            progress,
            hostname: crate::app::node_name(config),
            api_url: config.fleet.api_url.clone(),
            data_dir: config.data_dir.clone(),
            interval: Duration::from_secs(cfg.heartbeat_interval_seconds),
            started_at: Utc::now(),
        },
        shutdown.clone(),
    ));
    let fleet = pg
        .as_ref()
        .map(|pg| {
            let read_url = config.services.database_read_url.as_ref();
            pg.fleet(read_url.map(Secret::expose), cfg.postgres_pool_size)
        })
        .transpose()?;
    if let Some(fleet) = &fleet {
        let _ = status.fleet.set(fleet.clone());
        tasks.spawn(fleet.clone().watch_replica(
            Duration::from_secs(cfg.heartbeat_interval_seconds.clamp(1, 10)),
            shutdown.clone(),
        ));
    }
    if let Some(pg) = pg {
        spawn(config, store, pg, status, &head, (tasks, shutdown)).await?;
    }
    if let Some(redis) = redis {
        spawn(config, store, redis, status, &head, (tasks, shutdown)).await?;
    }
    Ok(fleet)
}

/// Starts the task that keeps `sink` caught up with the outbox; returns
/// its state (also in `/ready` when it is a replication sink).
pub(crate) async fn spawn<S: Sink>(
    config: &Config,
    store: &Store,
    sink: S,
    status: &Status,
    head: &watch::Receiver<u64>,
    (tasks, shutdown): (&TaskTracker, &CancellationToken),
) -> Result<Arc<SinkStatus>, Error> {
    let cfg = &config.replication;
    let mut pump = Pump::new(store.clone(), sink, status.consumers(), cfg.batch_size).await?;
    if let Some(shared) = status.sink(S::NAME) {
        shared.update(|s| *s = pump.status.state());
        pump.status = shared;
    }
    let state = pump.status.clone();
    let backoff = Backoff::new(
        Duration::from_millis(cfg.retry_initial_ms),
        Duration::from_secs(cfg.retry_max_seconds),
    );
    tasks.spawn(run(pump, head.clone(), backoff, shutdown.clone()));
    Ok(state)
}

/// Runs `f` on a blocking thread (redb work).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> store::Result<T> + Send + 'static,
) -> store::Result<T> {
    joined(tokio::task::spawn_blocking(f).await)
}

/// Moves the outbox into one sink: reads a batch after the cursor, applies
/// it, records the cursor. The next batch is read while one is applied, and
/// the cursor of one is recorded while the next is applied.
pub struct Pump<S: Sink> {
    sink: S,
    store: Store,
    /// Every configured sink: an entry is deleted once all applied it.
    sinks: Vec<&'static str>,
    batch_size: usize,
    cursor: u64,
    /// The last seq the receiver confirmed: the cursor, or less after the
    /// receiver lost writes and the node's state was queued again.
    confirmed: u64,
    status: Arc<SinkStatus>,
}

/// Why [`Pump::catch_up`] stopped before the outbox was empty.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the outbox: {0}")]
    Store(#[from] store::Error),
}

type Read = tokio::task::JoinHandle<store::Result<Vec<Entry>>>;
type Ack = tokio::task::JoinHandle<store::Result<()>>;

impl<S: Sink> Pump<S> {
    /// A pump from where `sink` stopped; `sinks` names every configured one.
    pub async fn new(
        store: Store,
        sink: S,
        sinks: Vec<&'static str>,
        batch_size: usize,
    ) -> store::Result<Pump<S>> {
        let name = S::NAME;
        let cursor = {
            let store = store.clone();
            blocking(move || store.outbox_join(name, S::WANTS_STATE)).await?
        };
        let status = Arc::new(SinkStatus {
            name,
            state: Mutex::new(SinkState {
                applied: cursor,
                ..SinkState::default()
            }),
        });
        Ok(Pump {
            sink,
            store,
            sinks,
            batch_size: batch_size.max(1),
            cursor,
            confirmed: cursor,
            status,
        })
    }

    fn read(&self, after: u64) -> Read {
        let (store, limit) = (self.store.clone(), self.batch_size);
        tokio::task::spawn_blocking(move || store.outbox_after(after, limit))
    }

    /// Applies batches until the outbox is empty; returns the rows written.
    /// On an error, everything before the failed batch is applied and
    /// recorded.
    pub async fn catch_up(&mut self, head: u64) -> Result<u64, PumpError> {
        let mut rows = 0;
        let mut next = self.read(self.cursor);
        let mut acked: Option<Ack> = None;
        let result = loop {
            let entries = match joined(next.await) {
                Ok(entries) => entries,
                Err(e) => break Err(e.into()),
            };
            self.report_lag(
                head.max(self.cursor).saturating_sub(self.cursor),
                entries.first(),
            );
            let Some(last) = entries.last().map(|e| e.seq) else {
                break Ok(rows);
            };
            next = self.read(last);
            let started = Instant::now();
            let mut applied = self.sink.apply(self.confirmed, &entries).await;
            if let Ok(Applied::Lost { holds }) = applied {
                if let Err(e) = self.resend(holds).await {
                    next.abort();
                    break Err(e.into());
                }
                applied = self.sink.apply(self.confirmed, &entries).await;
            }
            match applied {
                Ok(Applied::Rows(n)) => {
                    let name = S::NAME;
                    metrics::histogram!(metric::REPLICATION_BATCH_SECONDS, "sink" => name)
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!(metric::REPLICATION_ROWS, "sink" => name).increment(n);
                    rows += n;
                    self.cursor = last;
                    self.confirmed = last;
                    let now = Utc::now();
                    self.status.update(|s| {
                        s.connected = true;
                        s.applied = last;
                        s.last_success = Some(now);
                        s.last_error = None;
                    });
                    // One cursor write at a time, in order.
                    if let Some(previous) = acked.take() {
                        record(name, previous.await);
                    }
                    let (store, sinks) = (self.store.clone(), self.sinks.clone());
                    acked = Some(tokio::task::spawn_blocking(move || {
                        store.outbox_ack(name, last, &sinks)
                    }));
                }
                failed => {
                    let e = match failed {
                        Err(e) => e,
                        _ => SinkError(format!(
                            "{} lost this node's writes again while its state was being sent",
                            S::NAME
                        )),
                    };
                    next.abort();
                    self.status.update(|s| {
                        s.connected = false;
                        s.last_error = Some(redact(&e.0));
                    });
                    break Err(e.into());
                }
            }
        };
        if let Some(previous) = acked {
            record(S::NAME, previous.await);
        }
        result
    }

    /// The receiver lost what it had confirmed after `holds`: queues the
    /// node's state again (it follows in the outbox) and takes the
    /// receiver's word for what it holds.
    async fn resend(&mut self, holds: u64) -> store::Result<()> {
        let name = S::NAME;
        tracing::warn!(
            sink = name,
            holds,
            confirmed = self.confirmed,
            "the receiver lost writes it had confirmed (a failover to a replica that had not received them, or a restored database): sending the node's state again"
        );
        metrics::counter!(metric::REPLICATION_RESENDS, "sink" => name).increment(1);
        let store = self.store.clone();
        blocking(move || store.outbox_resend()).await?;
        self.confirmed = holds;
        Ok(())
    }

    fn report_lag(&self, entries: u64, oldest: Option<&Entry>) {
        let seconds = oldest.map_or(0.0, |e| {
            (Utc::now() - e.at).num_milliseconds().max(0) as f64 / 1000.0
        });
        let name = S::NAME;
        metrics::gauge!(metric::REPLICATION_LAG_ENTRIES, "sink" => name).set(entries as f64);
        metrics::gauge!(metric::REPLICATION_LAG_SECONDS, "sink" => name).set(seconds);
        self.status.update(|s| {
            s.lag_entries = entries;
            s.lag_seconds = seconds;
        });
    }
}

fn joined<T>(r: Result<store::Result<T>, tokio::task::JoinError>) -> store::Result<T> {
    r.unwrap_or_else(|e| {
        Err(store::Error::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// A cursor that failed to move only means its batch is applied again
/// later, which changes nothing.
fn record(sink: &str, acked: Result<store::Result<()>, tokio::task::JoinError>) {
    if let Err(e) = joined(acked) {
        tracing::warn!(sink, error = %e, "cannot record the replication cursor");
    }
}

/// How long an idle sink waits before looking again (the lag metric moves
/// meanwhile).
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// How long a woken sink lets commits gather before it reads: under load
/// the writer commits a batch every few milliseconds, and a read, an apply
/// and a cursor write (a write transaction, taking its turn with the
/// writer's) for each cost more than the entries themselves.
const GATHER: Duration = Duration::from_millis(50);

/// One sink's task: catch up whenever the outbox grows; back off on errors.
async fn run<S: Sink>(
    mut pump: Pump<S>,
    mut head: watch::Receiver<u64>,
    mut backoff: Backoff,
    shutdown: CancellationToken,
) {
    let name = S::NAME;
    // From zero, so the first failure shows as an increase.
    metrics::counter!(metric::REPLICATION_ERRORS, "sink" => name).increment(0);
    metrics::counter!(metric::REPLICATION_ROWS, "sink" => name).increment(0);
    metrics::counter!(metric::REPLICATION_RESENDS, "sink" => name).increment(0);
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let latest = *head.borrow_and_update();
        // A batch cut short by shutdown is not committed by its sink and
        // is applied again at the next start.
        let caught_up = tokio::select! {
            r = pump.catch_up(latest) => r,
            () = shutdown.cancelled() => break,
        };
        match caught_up {
            Ok(_) => {
                if failures > 0 {
                    tracing::info!(sink = name, failures, "replication resumed");
                }
                failures = 0;
                backoff.reset();
                tokio::select! {
                    _ = head.changed() => {
                        tokio::select! {
                            () = tokio::time::sleep(GATHER) => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(IDLE_RECHECK) => {}
                }
            }
            Err(e) => {
                metrics::counter!(metric::REPLICATION_ERRORS, "sink" => name).increment(1);
                let delay = backoff.next();
                let e = redact(&e.to_string());
                if failures == 0 {
                    tracing::warn!(sink = name, error = %e, retry_in_ms = delay.as_millis() as u64, "replication failed; the outbox keeps the entries and retries");
                } else {
                    tracing::debug!(sink = name, error = %e, failures, "replication still failing");
                }
                failures += 1;
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }
}

/// `%2F` and friends in a URL part (a user, a password, a path in
/// `sslrootcert`); invalid UTF-8 is replaced.
pub(crate) fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Exponential backoff with jitter: each delay is drawn from the upper half
/// of a window that doubles up to `max`, so retrying nodes spread out.
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(10));
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let window = self.current;
        self.current = (window * 2).min(self.max);
        let half = window / 2;
        let jitter = getrandom::u64().unwrap_or(0) % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter)
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

struct HeartbeatSource {
    store: Store,
    progress: Arc<Progress>,
    hostname: String,
    api_url: Option<String>,
    data_dir: PathBuf,
    interval: Duration,
    started_at: DateTime<Utc>,
}

/// Queues a heartbeat now and every interval (each replaces the last one
/// not yet sent).
async fn heartbeats(source: HeartbeatSource, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(source.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let source = Arc::new(source);
    let mut previous: Option<(Instant, u64)> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        let events_total = source
            .progress
            .stored
            .load(std::sync::atomic::Ordering::Acquire);
        let events_per_second = previous.map_or(0.0, |(at, total)| {
            events_total.saturating_sub(total) as f64 / now.duration_since(at).as_secs_f64()
        });
        previous = Some((now, events_total));
        let source = source.clone();
        let written = blocking(move || {
            let heartbeat = Heartbeat {
                hostname: source.hostname.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at: source.started_at,
                uptime_seconds: (Utc::now() - source.started_at).num_seconds().max(0) as u64,
                events_total,
                events_per_second,
                storage_bytes: std::fs::metadata(source.data_dir.join(store::DB_FILE))
                    .map_or(0, |m| m.len()),
                index_lag: source.progress.index_lag(),
                outbox_entries: source.store.outbox_stats()?.entries,
                heartbeat_interval_seconds: source.interval.as_secs(),
                api_url: source.api_url.clone(),
            };
            source.store.write_heartbeat(&heartbeat)
        })
        .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot queue the heartbeat");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<Duration> = (0..6).map(|_| b.next()).collect();
        for (delay, window) in delays.iter().zip([100, 200, 400, 800, 800, 800]) {
            let window = Duration::from_millis(window);
            assert!(
                *delay >= window / 2 && *delay <= window,
                "{delay:?} not in the upper half of {window:?}"
            );
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
