//! The group-commit writer: one thread owns redb writes.
//!
//! Sources submit batches through a bounded queue and wait for the ack. The
//! writer drains whatever is queued (up to `batch_max_events`), commits it in
//! ONE redb transaction, and only then acks each submitter. That is the
//! durability promise: an ack means the events are on disk.
//!
//! The queue is bounded twice: in batches (`ingest.queue_capacity`) and in
//! bytes (`ingest.queue_max_bytes`, the events' [`Event::approx_bytes`]).
//! A batch's bytes count from its submission until its commit (or failure)
//! is acknowledged, so they cover the batch being committed too. A submit
//! that would pass either bound is refused ([`WriterHandle::try_submit`])
//! or waits ([`WriterHandle::submit`]); a lone batch larger than the byte
//! bound is taken when nothing else is queued, so it is never refused
//! forever.
//!
//! If the writer thread ends for any reason (a panic included), it closes
//! its queue and releases the bytes of the batch it held and of the batches
//! still queued: submitters waiting for room get [`SubmitError::Closed`]
//! instead of waiting forever, and those waiting for an ack get an error.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot};

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
    /// Reserved in [`QueuedBytes`]; released once acknowledged.
    bytes: usize,
}

/// The default of `ingest.queue_max_bytes`.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 256 * 1024 * 1024;

/// The bytes of the batches queued or being committed, and their bound.
struct QueuedBytes {
    used: AtomicUsize,
    max: usize,
    /// Woken when bytes are released, for the submitters that wait.
    released: Notify,
}

impl QueuedBytes {
    /// Reserves `n` bytes when they fit under the bound (or nothing else
    /// is queued); false when they do not.
    fn try_reserve(&self, n: usize) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used > 0 && used.saturating_add(n) > self.max {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // Relative, so concurrent changes cannot leave a stale value.
                    metrics::gauge!(metric::WRITE_QUEUE_BYTES).increment(n as f64);
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }

    /// Waits until `n` bytes are reserved. Only ends by itself once bytes
    /// are released: callers also watch for the writer being gone
    /// ([`WriterHandle::submit_with`]).
    async fn reserve(&self, n: usize) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check: a release in between wakes it.
            released.as_mut().enable();
            if self.try_reserve(n) {
                return;
            }
            released.await;
        }
    }

    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::AcqRel);
        metrics::gauge!(metric::WRITE_QUEUE_BYTES).decrement(n as f64);
        self.released.notify_waiters();
    }
}

/// Bytes reserved by a submitter that has not queued its batch yet.
struct Reserved<'a> {
    queue: &'a QueuedBytes,
    bytes: usize,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.queue.release(self.bytes);
    }
}

/// The bytes a batch counts for.
fn batch_bytes(events: &[Event]) -> usize {
    events.iter().map(Event::approx_bytes).sum()
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
    /// Full in batches or in bytes.
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
    bytes: Arc<QueuedBytes>,
    /// Whether events submitted over the authenticated API (HTTP NDJSON,
    /// `_bulk`, GraphQL `ingestEvents`) are marked trusted
    /// (`ingest.api_trusted`): see [`crate::ingest::commit`].
    api_trusted: bool,
}

/// What a submitter awaits: the committed seq range, or the storage error.
pub type Pending = oneshot::Receiver<Result<Range<u64>, Arc<Error>>>;

impl WriterHandle {
    /// Queues a batch without waiting; fails fast when the queue is full
    /// (in batches or in bytes).
    pub fn try_submit(&self, events: Vec<Event>) -> Result<Pending, SubmitError> {
        let bytes = batch_bytes(&events);
        self.try_submit_sized(events, bytes)
    }

    /// [`WriterHandle::try_submit`] of events whose bytes the caller
    /// counted already (`bytes`: their [`Event::approx_bytes`] summed).
    pub fn try_submit_sized(
        &self,
        events: Vec<Event>,
        bytes: usize,
    ) -> Result<Pending, SubmitError> {
        if self.tx.is_closed() {
            return Err(SubmitError::Closed);
        }
        if !self.bytes.try_reserve(bytes) {
            return Err(SubmitError::Full);
        }
        let (ack, pending) = oneshot::channel();
        self.tx
            .try_send(Request::Write(WriteRequest {
                events,
                checkpoint: None,
                ack,
                bytes,
            }))
            .map_err(|e| {
                self.bytes.release(bytes);
                match e {
                    mpsc::error::TrySendError::Full(_) => SubmitError::Full,
                    mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
                }
            })?;
        Ok(pending)
    }

    /// Whether the authenticated API's events are marked trusted.
    pub fn api_trusted(&self) -> bool {
        self.api_trusted
    }

    /// The same handle, marking the authenticated API's events trusted or not.
    pub fn with_api_trusted(mut self, trusted: bool) -> WriterHandle {
        self.api_trusted = trusted;
        self
    }

    /// Bytes queued or being committed now.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.used.load(Ordering::Acquire)
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
        let bytes = batch_bytes(&events);
        self.submit_sized(events, bytes, checkpoint).await
    }

    /// [`WriterHandle::submit_with`] of events whose bytes the caller
    /// counted already (`bytes`: their [`Event::approx_bytes`] summed).
    pub async fn submit_sized(
        &self,
        events: Vec<Event>,
        bytes: usize,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Pending, SubmitError> {
        if self.tx.is_closed() {
            return Err(SubmitError::Closed);
        }
        // A writer that is gone (it ended, or panicked) releases nothing
        // more: answer Closed rather than wait for room forever.
        tokio::select! {
            () = self.bytes.reserve(bytes) => {}
            () = self.tx.closed() => return Err(SubmitError::Closed),
        }
        // Released if this future is dropped before the batch is queued.
        let mut reserved = Reserved {
            queue: &self.bytes,
            bytes,
        };
        let (ack, pending) = oneshot::channel();
        self.tx
            .send(Request::Write(WriteRequest {
                events,
                checkpoint,
                ack,
                bytes,
            }))
            .await
            .map_err(|_| SubmitError::Closed)?;
        // Queued: the writer releases them once it has answered.
        reserved.bytes = 0;
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
/// and the indexer is woken through `progress`. The queue holds
/// [`DEFAULT_QUEUE_MAX_BYTES`] at most (see [`spawn_bounded`]).
pub fn spawn(
    store: Store,
    queue_capacity: usize,
    batch_max_events: usize,
    progress: Arc<Progress>,
    live: Arc<Live>,
    detection: Option<Detection>,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    spawn_bounded(
        store,
        (queue_capacity, DEFAULT_QUEUE_MAX_BYTES),
        batch_max_events,
        progress,
        live,
        detection,
    )
}

/// [`spawn`] with the queue bounded to `(batches, bytes)`.
pub fn spawn_bounded(
    store: Store,
    (queue_capacity, queue_max_bytes): (usize, usize),
    batch_max_events: usize,
    progress: Arc<Progress>,
    live: Arc<Live>,
    detection: Option<Detection>,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(queue_capacity.max(1));
    let bytes = Arc::new(QueuedBytes {
        used: AtomicUsize::new(0),
        max: queue_max_bytes.max(1),
        released: Notify::new(),
    });
    metrics::gauge!(metric::WRITE_QUEUE_CAPACITY).set(rx.max_capacity() as f64);
    metrics::gauge!(metric::WRITE_QUEUE_CAPACITY_BYTES).set(bytes.max as f64);
    metrics::gauge!(metric::WRITE_QUEUE_BYTES).increment(0.0);
    // From zero, so a stall or the first failure shows in rates and increases.
    metrics::counter!(metric::EVENTS_STORED).increment(0);
    metrics::counter!(metric::COMMIT_ERRORS).increment(0);
    let thread = std::thread::Builder::new()
        .name("secmon-writer".into())
        .spawn({
            let bytes = bytes.clone();
            move || {
                run(
                    store,
                    rx,
                    batch_max_events.max(1),
                    (&progress, &live, &bytes),
                    detection,
                )
            }
        })?;
    Ok((
        WriterHandle {
            tx,
            bytes,
            api_trusted: true,
        },
        thread,
    ))
}

/// What the writer thread holds that others wait on: its queue and the
/// batch being committed. Dropped when the thread ends, by returning or by
/// unwinding from a panic: the queue is closed (submitters get
/// [`SubmitError::Closed`], waiting ones included) and the bytes of the held
/// and queued batches are released; their acks are dropped, so their
/// submitters hear an error rather than nothing; and the indexer is told
/// the writer finished, so it indexes what was committed and stops rather
/// than waiting for events that never come (shutdown joins it).
struct Running<'a> {
    rx: mpsc::Receiver<Request>,
    batch: Batch,
    bytes: &'a QueuedBytes,
    progress: &'a Progress,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.rx.close();
        let mut held = std::mem::take(&mut self.batch.bytes);
        while let Ok(req) = self.rx.try_recv() {
            if let Request::Write(req) = req {
                held += req.bytes;
            }
        }
        if held > 0 {
            tracing::error!(
                bytes = held,
                "writer stopped with batches not acknowledged; their submitters get an error"
            );
        }
        self.bytes.release(held);
        // Idempotent: after a normal return `run` has said so already.
        self.progress.writer_finished();
    }
}

fn run(
    store: Store,
    rx: mpsc::Receiver<Request>,
    batch_max: usize,
    (progress, live, bytes): (&Progress, &Live, &QueuedBytes),
    mut detection: Option<Detection>,
) {
    let mut running = Running {
        rx,
        batch: Batch::default(),
        bytes,
        progress,
    };
    let Running { rx, batch, .. } = &mut running;
    // Correlation windows first: no new event is evaluated before them.
    if let Some(d) = &mut detection {
        match d.detector.rebuild_windows(&store) {
            Ok(replayed) => tracing::info!(replayed, "correlation windows rebuilt"),
            Err(e) => {
                tracing::error!(error = %e, "correlation windows not rebuilt; they start empty")
            }
        }
    }
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
                    batch.bytes += req.bytes;
                    if batch.events.is_empty() {
                        // The first request's events as they are, no copy
                        // (a source's vector has room for at most about
                        // twice its events: a listener gives back what it
                        // reserved and did not use).
                        batch.events = req.events;
                    } else {
                        batch.events.extend(req.events);
                    }
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
        if !commit(&store, batch, (progress, live, bytes), detection.as_mut())
            && detection.is_some()
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
    /// What its requests reserved in the byte bound.
    bytes: usize,
}

/// Evaluates and commits `batch`; false when the commit failed. Its bytes
/// are released before its submitters hear back, so a submitter that was
/// answered finds them free.
fn commit(
    store: &Store,
    batch: &mut Batch,
    (progress, live, queued): (&Progress, &Live, &QueuedBytes),
    detection: Option<&mut Detection>,
) -> bool {
    if batch.waiting.is_empty() {
        return true;
    }
    let Batch {
        events,
        checkpoints,
        waiting,
        bytes,
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
    #[cfg(test)]
    tests::maybe_panic(events);
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
            progress.hand_over(std::mem::take(events), *bytes);
            progress.wake_indexer();
            queued.release(std::mem::take(bytes));
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
            queued.release(std::mem::take(bytes));
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
    use std::future::Future;
    use std::task::Poll;

    /// A label that makes the writer panic right after committing the batch
    /// that holds it, before it releases or acknowledges anything.
    const PANIC_LABEL: &str = "test.writer_panics";

    pub(super) fn maybe_panic(events: &[Event]) {
        if events.iter().any(|e| e.labels.contains_key(PANIC_LABEL)) {
            panic!("writer panic injected by a test");
        }
    }

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

    #[tokio::test(flavor = "multi_thread")]
    async fn the_queue_is_bounded_in_bytes_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let progress = Arc::new(Progress::new(0));
        let blocker = store.with_db(|db| Ok(db.begin_write()?)).unwrap();
        let big = |n: usize| {
            vec![Event {
                message: "x".repeat(n),
                ..Event::default()
            }]
        };
        // Room for many batches, but 100 KB.
        let (writer, thread) = spawn_bounded(
            store.clone(),
            (64, 100_000),
            1000,
            progress.clone(),
            Default::default(),
            None,
        )
        .unwrap();
        let first = writer.try_submit(big(60_000)).unwrap();
        assert!(writer.queued_bytes() >= 60_000);
        // 60 KB + 60 KB > 100 KB: refused like a full queue.
        assert_eq!(
            writer.try_submit(big(60_000)).err(),
            Some(SubmitError::Full)
        );
        // Small batches still fit.
        let small = writer.try_submit(batch(3)).unwrap();
        // A waiting submitter waits for room rather than failing.
        let waiting = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.submit(big(60_000)).await.unwrap().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(blocker);
        assert_eq!(first.await.unwrap().unwrap(), 1..2);
        assert_eq!(small.await.unwrap().unwrap(), 2..5);
        assert_eq!(waiting.await.unwrap().unwrap().unwrap(), 5..6);
        // Everything acknowledged: nothing counted any more.
        assert_eq!(writer.queued_bytes(), 0);
        // A lone batch over the bound goes through when nothing else waits.
        let huge = writer.try_submit(big(150_000)).unwrap();
        assert_eq!(huge.await.unwrap().unwrap(), 6..7);
        drop(writer);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_writer_that_dies_answers_waiting_submitters_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let progress = Arc::new(Progress::new(0));
        // Hold redb's write lock so the writer blocks inside its first
        // commit, holding that batch's bytes.
        let blocker = store.with_db(|db| Ok(db.begin_write()?)).unwrap();
        let (writer, thread) = spawn_bounded(
            store.clone(),
            (4, 100_000),
            1000,
            progress.clone(),
            Default::default(),
            None,
        )
        .unwrap();
        // The indexer waits for the writer; it must hear that it died.
        let (index, opened) =
            crate::store::index::EventIndex::open(&dir.path().join("index")).unwrap();
        let indexer = crate::store::indexer::spawn(
            store.clone(),
            Arc::new(index),
            opened,
            progress,
            crate::store::indexer::IndexerConfig {
                commit_interval: std::time::Duration::from_millis(10),
                commit_max_events: 100_000,
            },
        )
        .unwrap();
        let mut poison = Event {
            message: "x".repeat(60_000),
            ..Event::default()
        };
        poison.labels.insert(PANIC_LABEL.into(), "1".into());
        let first = writer.try_submit(vec![poison]).unwrap();
        while writer.tx.capacity() < 4 {
            tokio::task::yield_now().await;
        }
        // 60 KB held + 60 KB > 100 KB: this submitter waits for room.
        let big = vec![Event {
            message: "y".repeat(60_000),
            ..Event::default()
        }];
        let mut waiting = Box::pin(writer.submit(big));
        let pending =
            std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx).is_pending())).await;
        assert!(pending, "the second batch did not wait for room");

        // The writer commits, then panics before releasing or acking.
        drop(blocker);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
            .await
            .expect("a submitter waiting for room hangs after the writer died");
        assert_eq!(answer.err(), Some(SubmitError::Closed));
        assert!(first.await.is_err(), "the held batch's ack was dropped");
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
        assert!(joined.is_err(), "the writer did not panic");
        // The indexer stops (it waits up to an hour when idle otherwise):
        // shutdown, which joins it, does not hang.
        // Joined on a thread of its own: a hung indexer fails the test
        // rather than holding the runtime's shutdown.
        let (joined_tx, joined_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = joined_tx.send(indexer.join().is_ok());
        });
        let indexer_ok = tokio::time::timeout(std::time::Duration::from_secs(20), joined_rx)
            .await
            .expect("the indexer still waits for a writer that died");
        assert_eq!(indexer_ok, Ok(true), "the indexer panicked");
        assert_eq!(writer.queued_bytes(), 0, "the held bytes were released");
        // Later submitters hear Closed at once, waiting or not.
        assert_eq!(
            writer.submit(batch(1)).await.err(),
            Some(SubmitError::Closed)
        );
        assert_eq!(writer.try_submit(batch(1)).err(), Some(SubmitError::Closed));
    }
}
