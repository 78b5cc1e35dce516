//! Event export: every stored event, to the engines large sites already
//! run (docs/EXPORT.md).
//!
//! One task per sink reads committed events by seq after the sink's own
//! cursor in redb (`store::export`), sends a batch, and moves the cursor
//! only once the receiver confirmed it: a crash in between sends the batch
//! again, which each sink makes harmless (JetStream drops a message whose
//! `Nats-Msg-Id` it has seen; the archive writes the same file again under
//! the same name). A sink that is down is retried with backoff and never
//! slows ingest: it only reads the store. Retention keeps every event a
//! sink has not taken unless `export.retention_drops_unexported` is on.
//!
//! A new engine is one file: a [`Sink`] and a line in [`start`].

pub mod archive;
pub mod nats;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::model::Event;
use crate::notify::redact::redact;
use crate::replicate::{Backoff, SinkError, SinkStatus};
use crate::store::export::Cursor;
use crate::store::indexer::Progress;
use crate::store::{self, Store};
use crate::telemetry::metric;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("NATS_URL: {0}")]
    NatsUrl(String),
    #[error("ARCHIVE_URL: {0}")]
    ArchiveUrl(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Replication(#[from] crate::replicate::Error),
}

/// Where events go.
pub trait Sink: Send + 'static {
    /// Also the name of its cursor and its label in metrics and `/ready`.
    const NAME: &'static str;

    /// A batch cut short (a crash, a failed send) is sent again with exactly
    /// the same events, not a longer one (the archive names its files after
    /// their seqs). Costs one cursor write before each batch; the next
    /// batch is then not read while one is sent.
    const FIXED_BATCHES: bool = false;

    /// How batches are formed.
    fn batching(&self) -> Batching;

    /// Sends `events` (in seq order). `Ok`: the receiver holds them all.
    /// Sending them again must not duplicate them at the receiver.
    fn send(&mut self, events: &[Event]) -> impl Future<Output = Result<(), Failed>> + Send;
}

/// A batch holds at most `max_events`, and is sent when that many wait or
/// the oldest has waited `max_wait`.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max_events: usize,
    pub max_wait: Duration,
}

/// A batch the receiver did not confirm whole.
#[derive(Debug)]
pub struct Failed {
    /// The receiver confirmed the events up to this seq (0: none of them).
    pub through: u64,
    pub error: SinkError,
}

impl Failed {
    pub fn nothing(error: impl Into<String>) -> Failed {
        Failed {
            through: 0,
            error: SinkError(error.into()),
        }
    }
}

/// The names of the sinks `config` sets up.
pub fn sink_names(config: &Config) -> Vec<&'static str> {
    let export = &config.export;
    [
        export.nats_url.as_ref().map(|_| nats::Events::NAME),
        export.archive_url.as_ref().map(|_| archive::Archive::NAME),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Starts one task per configured sink, and the JetStream alert sink with
/// the outbox ones. `status` holds the export sinks' states for `/ready`.
pub async fn start(
    config: &Config,
    store: &Store,
    (progress, head): (&Arc<Progress>, &tokio::sync::watch::Receiver<u64>),
    status: &Arc<crate::replicate::Status>,
    (tasks, shutdown): (&TaskTracker, &CancellationToken),
) -> Result<(), Error> {
    let backoff = || {
        Backoff::new(
            Duration::from_millis(config.replication.retry_initial_ms),
            Duration::from_secs(config.replication.retry_max_seconds),
        )
    };
    if let Some(url) = &config.export.nats_url {
        let nats = nats::Nats::connect(url.expose(), &config.export, store.node_id()).await?;
        crate::replicate::spawn(
            config,
            store,
            nats.alerts(),
            status,
            head,
            (tasks, shutdown),
        )
        .await?;
        let pump = Pump::new(store, nats.events(), progress, status).await?;
        tasks.spawn(run(pump, backoff(), shutdown.clone()));
    }
    if let Some(url) = &config.export.archive_url {
        let archive = archive::Archive::new(url, &config.export, &config.s3, store.node_id())?;
        let pump = Pump::new(store, archive, progress, status).await?;
        tasks.spawn(run(pump, backoff(), shutdown.clone()));
    }
    Ok(())
}

/// How long an idle sink waits before it looks at the store's head again
/// (an atomic load; the store is read only when there is something new).
const POLL: Duration = Duration::from_millis(200);
/// How often a sink waiting for a batch to fill or age looks again (reads
/// the oldest waiting event's block).
const FILL_POLL: Duration = Duration::from_secs(1);

/// Moves events into one sink.
pub struct Pump<S: Sink> {
    sink: S,
    store: Store,
    progress: Arc<Progress>,
    cursor: Cursor,
    status: Arc<SinkStatus>,
    /// The next batch, read while one is sent: (its first seq, the last
    /// seq it may hold, the read).
    next: Option<(u64, u64, Read)>,
}

type Read = tokio::task::JoinHandle<store::Result<Vec<Event>>>;

/// What one [`Pump::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The receiver confirmed this many events.
    Sent(usize),
    /// Nothing to send yet: look again after this long.
    Wait(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the store: {0}")]
    Store(#[from] store::Error),
}

impl<S: Sink> Pump<S> {
    /// A pump from where `sink` stopped, reporting to its slot in `status`
    /// (a slot of its own when `status` has none).
    pub async fn new(
        store: &Store,
        sink: S,
        progress: &Arc<Progress>,
        status: &crate::replicate::Status,
    ) -> store::Result<Pump<S>> {
        let cursor = {
            let store = store.clone();
            blocking(move || store.export_cursor(S::NAME)).await?
        };
        let status = status
            .export(S::NAME)
            .unwrap_or_else(|| SinkStatus::new(S::NAME));
        status.update(|s| s.applied = cursor.taken);
        Ok(Pump {
            sink,
            store: store.clone(),
            progress: progress.clone(),
            cursor,
            status,
            next: None,
        })
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Sends one batch if one is due.
    pub async fn step(&mut self) -> Result<Step, PumpError> {
        let Batching {
            max_events,
            max_wait,
        } = self.sink.batching();
        let max_events = max_events.max(1);
        let head = self.progress.stored.load(Ordering::Acquire);
        let Cursor { taken, pending } = self.cursor;
        let events = if pending > taken {
            // The batch a crash or a failure cut short, exactly.
            let limit = usize::try_from(pending - taken).unwrap_or(usize::MAX);
            let events = self.read(taken + 1, pending, limit).await?;
            if events.is_empty() {
                // Deleted by retention meanwhile.
                self.record(pending).await?;
                return Ok(Step::Sent(0));
            }
            events
        } else {
            if head <= taken {
                self.report_lag(0, None);
                return Ok(Step::Wait(POLL));
            }
            let waiting = head - taken;
            if waiting < max_events as u64 && !max_wait.is_zero() {
                // Not full: is the oldest old enough to go anyway?
                let first = {
                    let store = self.store.clone();
                    blocking(move || store.first_event_after(taken)).await?
                };
                if let Some(first) = first {
                    let age = (Utc::now() - first.received_at)
                        .to_std()
                        .unwrap_or_default();
                    if age < max_wait {
                        self.report_lag(waiting, Some(&first));
                        return Ok(Step::Wait((max_wait - age).min(FILL_POLL)));
                    }
                }
            }
            let (events, through) = match self.next.take() {
                Some((from, to, read)) if from == taken + 1 => (joined(read.await)?, to),
                _ => (self.read(taken + 1, head, max_events).await?, head),
            };
            let Some(first) = events.first() else {
                // Retention deleted everything the read covered (it was
                // told to drop what the sinks had not taken): nothing to
                // send up to there.
                self.record(through).await?;
                return Ok(Step::Sent(0));
            };
            self.report_lag(waiting, Some(first));
            events
        };
        let last = events.last().map_or(taken, |e| e.seq);
        if S::FIXED_BATCHES && pending <= taken {
            let (store, cursor) = (
                self.store.clone(),
                Cursor {
                    taken,
                    pending: last,
                },
            );
            blocking(move || store.set_export_cursor(S::NAME, cursor)).await?;
            self.cursor = cursor;
        } else if !S::FIXED_BATCHES && head > last {
            // The next batch is read while this one is sent.
            let (store, from) = (self.store.clone(), last + 1);
            let read = tokio::task::spawn_blocking(move || store.events_in(from, head, max_events));
            self.next = Some((from, head, read));
        }
        let name = S::NAME;
        let started = Instant::now();
        match self.sink.send(&events).await {
            Ok(()) => {
                metrics::histogram!(metric::EXPORT_BATCH_SECONDS, "sink" => name)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(metric::EXPORT_EVENTS, "sink" => name)
                    .increment(events.len() as u64);
                self.record(last).await?;
                let now = Utc::now();
                self.status.update(|s| {
                    s.connected = true;
                    s.last_success = Some(now);
                    s.last_error = None;
                });
                Ok(Step::Sent(events.len()))
            }
            Err(Failed { through, error }) => {
                if through > taken {
                    let confirmed = events.iter().take_while(|e| e.seq <= through).count();
                    metrics::counter!(metric::EXPORT_EVENTS, "sink" => name)
                        .increment(confirmed as u64);
                    self.record(through).await?;
                }
                // What is sent next starts after `through`.
                if let Some((_, _, read)) = self.next.take() {
                    read.abort();
                }
                self.status.update(|s| {
                    s.connected = false;
                    s.last_error = Some(redact(&error.0));
                });
                Err(error.into())
            }
        }
    }

    async fn read(&self, from: u64, to: u64, limit: usize) -> store::Result<Vec<Event>> {
        let store = self.store.clone();
        blocking(move || store.events_in(from, to, limit)).await
    }

    /// The receiver holds everything up to `seq`.
    async fn record(&mut self, seq: u64) -> store::Result<()> {
        let cursor = Cursor {
            taken: seq,
            pending: self.cursor.pending,
        };
        let store = self.store.clone();
        blocking(move || store.set_export_cursor(S::NAME, cursor)).await?;
        self.cursor = Cursor {
            taken: seq,
            pending: if cursor.pending > seq {
                cursor.pending
            } else {
                0
            },
        };
        self.status.update(|s| s.applied = seq);
        Ok(())
    }

    fn report_lag(&self, events: u64, oldest: Option<&Event>) {
        let seconds = oldest.map_or(0.0, |e| {
            (Utc::now() - e.received_at).num_milliseconds().max(0) as f64 / 1000.0
        });
        let name = S::NAME;
        metrics::gauge!(metric::EXPORT_LAG_EVENTS, "sink" => name).set(events as f64);
        metrics::gauge!(metric::EXPORT_LAG_SECONDS, "sink" => name).set(seconds);
        self.status.update(|s| {
            s.lag_entries = events;
            s.lag_seconds = seconds;
        });
    }
}

/// One sink's task: a batch whenever one is due; back off on errors.
async fn run<S: Sink>(mut pump: Pump<S>, mut backoff: Backoff, shutdown: CancellationToken) {
    let name = S::NAME;
    // From zero, so the first failure shows as an increase.
    metrics::counter!(metric::EXPORT_ERRORS, "sink" => name).increment(0);
    metrics::counter!(metric::EXPORT_EVENTS, "sink" => name).increment(0);
    metrics::counter!(metric::EXPORT_DROPPED, "sink" => name).increment(0);
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        // A batch cut short by shutdown is sent again at the next start.
        let step = tokio::select! {
            r = pump.step() => r,
            () = shutdown.cancelled() => break,
        };
        let wait = match step {
            Ok(step) => {
                if failures > 0 {
                    tracing::info!(sink = name, failures, "export resumed");
                }
                failures = 0;
                backoff.reset();
                match step {
                    Step::Sent(_) => continue,
                    Step::Wait(wait) => wait,
                }
            }
            Err(e) => {
                metrics::counter!(metric::EXPORT_ERRORS, "sink" => name).increment(1);
                let delay = backoff.next();
                let e = redact(&e.to_string());
                if failures == 0 {
                    tracing::warn!(sink = name, error = %e, retry_in_ms = delay.as_millis() as u64, "export failed; the events stay in the store and the batch is retried");
                } else {
                    tracing::debug!(sink = name, error = %e, failures, "export still failing");
                }
                failures += 1;
                delay
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> store::Result<T> + Send + 'static,
) -> store::Result<T> {
    joined(tokio::task::spawn_blocking(f).await)
}

fn joined<T>(r: Result<store::Result<T>, tokio::task::JoinError>) -> store::Result<T> {
    r.unwrap_or_else(|e| {
        Err(store::Error::Io {
            path: std::path::PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// A NATS subject token or a Hive partition value made of `value`: letters,
/// digits, `-` and `_` kept, anything else `_` (a `.` would split a
/// subject, a `/` a path); empty: `unknown`.
pub fn token(value: Option<&str>) -> String {
    let value = value.unwrap_or_default();
    if value.is_empty() {
        return "unknown".to_owned();
    }
    value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
