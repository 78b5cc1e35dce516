//! The group-commit writer: one thread owns redb writes.
//!
//! Sources submit batches through a bounded queue and wait for the ack. The
//! writer drains whatever is queued (up to `batch_max_events`), commits it in
//! ONE redb transaction, and only then acks each submitter. That is the
//! durability promise: an ack means the events are on disk.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{Checkpoint, Error, Store};
use crate::detect::Detector;
use crate::model::Event;
use crate::store::indexer::Progress;
use crate::store::live::Live;
use crate::telemetry::metric;

type Ack = oneshot::Sender<Result<Range<u64>, Arc<Error>>>;

struct WriteRequest {
    events: Vec<Event>,
    checkpoint: Option<Checkpoint>,
    ack: Ack,
}

/// What the writer's queue carries.
enum Request {
    Write(WriteRequest),
    /// New rules: they take over the correlation windows and apply from the
    /// next batch on.
    Reload(Box<Detection>),
}

/// Why a batch was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the write queue is full: retry later")]
    Full,
    #[error("the writer is shut down")]
    Closed,
}

/// A cloneable handle to submit batches. The writer stops once every handle
/// is dropped and the queue is drained.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Request>,
}

/// What a submitter awaits: the committed seq range, or the storage error.
pub type Pending = oneshot::Receiver<Result<Range<u64>, Arc<Error>>>;

impl WriterHandle {
    /// Queues a batch without waiting; fails fast when the queue is full.
    pub fn try_submit(&self, events: Vec<Event>) -> Result<Pending, SubmitError> {
        let (ack, pending) = oneshot::channel();
        self.tx
            .try_send(Request::Write(WriteRequest {
                events,
                checkpoint: None,
                ack,
            }))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::Full,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
            })?;
        Ok(pending)
    }

    /// Queues a batch, waiting for room (for sources that apply backpressure
    /// by not reading, like TCP or offline import).
    pub async fn submit(&self, events: Vec<Event>) -> Result<Pending, SubmitError> {
        self.submit_with(events, None).await
    }

    /// [`WriterHandle::submit`], committing `checkpoint` in the same
    /// transaction as the events.
    pub async fn submit_with(
        &self,
        events: Vec<Event>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Pending, SubmitError> {
        let (ack, pending) = oneshot::channel();
        self.tx
            .send(Request::Write(WriteRequest {
                events,
                checkpoint,
                ack,
            }))
            .await
            .map_err(|_| SubmitError::Closed)?;
        Ok(pending)
    }

    /// Swaps in new rules between two batches, keeping the correlation
    /// windows of correlations that kept their id.
    pub async fn reload(&self, detection: Detection) -> Result<(), SubmitError> {
        self.tx
            .send(Request::Reload(Box::new(detection)))
            .await
            .map_err(|_| SubmitError::Closed)
    }
}

/// Rules evaluated on each batch before its commit.
pub struct Detection {
    pub detector: Detector,
    /// A repeat within this time of an active alert's last firing counts on it.
    pub dedup_window: chrono::Duration,
}

/// Starts the writer thread. `progress.stored` is advanced after each commit
/// and the indexer is woken through `progress`.
pub fn spawn(
    store: Store,
    queue_capacity: usize,
    batch_max_events: usize,
    progress: Arc<Progress>,
    live: Arc<Live>,
    detection: Option<Detection>,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(queue_capacity.max(1));
    metrics::gauge!(metric::WRITE_QUEUE_CAPACITY).set(rx.max_capacity() as f64);
    // From zero, so a stall or the first failure shows in rates and increases.
    metrics::counter!(metric::EVENTS_STORED).increment(0);
    metrics::counter!(metric::COMMIT_ERRORS).increment(0);
    let thread = std::thread::Builder::new()
        .name("secmon-writer".into())
        .spawn(move || {
            run(
                store,
                rx,
                batch_max_events.max(1),
                (&progress, &live),
                detection,
            )
        })?;
    Ok((WriterHandle { tx }, thread))
}

fn run(
    store: Store,
    mut rx: mpsc::Receiver<Request>,
    batch_max: usize,
    (progress, live): (&Progress, &Live),
    mut detection: Option<Detection>,
) {
    // Correlation windows first: no new event is evaluated before them.
    if let Some(d) = &mut detection {
        match d.detector.rebuild_windows(&store) {
            Ok(replayed) => tracing::info!(replayed, "correlation windows rebuilt"),
            Err(e) => {
                tracing::error!(error = %e, "correlation windows not rebuilt; they start empty")
            }
        }
    }
    let mut batch = Batch::default();
    // A batch advanced the correlation windows but failed to commit: they
    // are rebuilt from the store before the next batch is evaluated (by
    // these rules or, after a reload, by the new ones that took them over).
    let mut stale_windows = false;
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        let mut reload = None;
        while let Some(req) = next.take() {
            match req {
                Request::Write(req) => {
                    batch.waiting.push((req.events.len(), req.ack));
                    batch.events.extend(req.events);
                    batch.checkpoints.extend(req.checkpoint);
                    if batch.events.len() < batch_max {
                        next = rx.try_recv().ok();
                    }
                }
                // What was queued before the reload is evaluated by the
                // old rules.
                Request::Reload(new) => reload = Some(new),
            }
        }
        if stale_windows && let Some(d) = &mut detection {
            match d.detector.reset_windows(&store) {
                Ok(replayed) => {
                    tracing::info!(
                        replayed,
                        "correlation windows rebuilt after a failed commit"
                    );
                    stale_windows = false;
                }
                Err(e) => tracing::error!(error = %e, "correlation windows not rebuilt yet"),
            }
        }
        if !commit(&store, &mut batch, (progress, live), detection.as_mut()) && detection.is_some()
        {
            stale_windows = true;
        }
        metrics::gauge!(metric::WRITE_QUEUE).set(rx.len() as f64);
        if let Some(mut new) = reload {
            if let Some(old) = &detection {
                new.detector.take_state_of(&old.detector);
            }
            tracing::info!(
                rules = new.detector.rules,
                correlations = new.detector.correlations,
                "detection rules reloaded"
            );
            detection = Some(*new);
        }
    }
    progress.writer_finished();
    tracing::debug!("writer drained and stopped");
}

/// What one transaction commits, and who waits for it.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    checkpoints: Vec<Checkpoint>,
    /// Each submitter's event count, in order, and its ack.
    waiting: Vec<(usize, Ack)>,
}

/// Evaluates and commits `batch`; false when the commit failed.
fn commit(
    store: &Store,
    batch: &mut Batch,
    (progress, live): (&Progress, &Live),
    detection: Option<&mut Detection>,
) -> bool {
    if batch.waiting.is_empty() {
        return true;
    }
    let Batch {
        events,
        checkpoints,
        waiting,
    } = batch;
    let _span = tracing::info_span!("batch", events = events.len()).entered();
    let (updates, dedup_window) = match detection {
        Some(d) => {
            let started = Instant::now();
            let updates = d.detector.evaluate(events);
            metrics::histogram!(metric::RULE_EVAL_SECONDS).record(started.elapsed().as_secs_f64());
            (updates, d.dedup_window)
        }
        None => (Vec::new(), chrono::Duration::zero()),
    };
    let started = Instant::now();
    let result = store.commit_batch(events, checkpoints, &updates, dedup_window);
    metrics::histogram!(metric::BATCH_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
    let committed = result.is_ok();
    match result {
        Ok((range, alerts)) => {
            live.events(events);
            for alert in &alerts {
                live.alert(alert);
            }
            metrics::histogram!(metric::BATCH_EVENTS).record(events.len() as f64);
            metrics::counter!(metric::EVENTS_STORED).increment(events.len() as u64);
            progress.stored.store(range.end - 1, Ordering::Release);
            // The indexer takes the committed events from memory when it
            // can, and reads them back from redb when it cannot.
            progress.hand_over(std::mem::take(events));
            progress.wake_indexer();
            let mut next = range.start;
            for (n, ack) in waiting.drain(..) {
                let end = next + n as u64;
                // A submitter that went away is fine: its events are stored.
                let _ = ack.send(Ok(next..end));
                next = end;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, events = events.len(), "batch commit failed");
            metrics::counter!(metric::COMMIT_ERRORS).increment(1);
            let e = Arc::new(e);
            for (_, ack) in waiting.drain(..) {
                let _ = ack.send(Err(Arc::clone(&e)));
            }
        }
    }
    events.clear();
    checkpoints.clear();
    committed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                message: format!("e{i}"),
                ..Event::default()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn acks_after_commit_and_refuses_when_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let progress = Arc::new(Progress::new(0));
        // Hold redb's write lock so the writer blocks inside its first commit.
        let blocker = store.with_db(|db| Ok(db.begin_write()?)).unwrap();
        // batch_max 3: the first batch of 3 fills a commit on its own, so the
        // writer takes nothing more off the queue before it blocks.
        let (writer, thread) = spawn(
            store.clone(),
            2,
            3,
            progress.clone(),
            Default::default(),
            None,
        )
        .unwrap();

        let first = writer.try_submit(batch(3)).unwrap();
        // Wait until the writer has taken the first batch off the queue.
        while writer.tx.capacity() < 2 {
            tokio::task::yield_now().await;
        }
        let second = writer.try_submit(batch(2)).unwrap();
        let third = writer.try_submit(batch(1)).unwrap();
        assert_eq!(writer.try_submit(batch(1)).err(), Some(SubmitError::Full));
        assert_eq!(
            store.stats().unwrap().events,
            0,
            "nothing is acked before the commit"
        );

        drop(blocker);
        assert_eq!(first.await.unwrap().unwrap(), 1..4);
        // The two queued batches were committed together, in order.
        assert_eq!(second.await.unwrap().unwrap(), 4..6);
        assert_eq!(third.await.unwrap().unwrap(), 6..7);
        assert_eq!(progress.stored.load(Ordering::Acquire), 6);

        drop(writer);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        let msgs: Vec<_> = store
            .scan_from(1, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(msgs, ["e0", "e1", "e2", "e0", "e1", "e0"]);
    }
}
