//! The indexer: keeps the tantivy index caught up with redb.
//!
//! It runs on its own thread, pulls committed events from redb by seq (so
//! start-up replay, rebuild and live indexing are one code path), commits
//! the index on a timer or every N events, and records the last indexed seq
//! both in the tantivy commit payload and in redb `meta`. On start-up it
//! resumes from the lower of the two, after deleting anything above it, so a
//! crash between the two writes neither loses nor duplicates documents.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tantivy::IndexWriter;
use tantivy::indexer::UserOperation;

use super::Store;
use super::index::{EventIndex, Opened};
use crate::model::Event;
use crate::telemetry::metric;

/// Events read from redb per step.
const SCAN_CHUNK: usize = 4096;
/// Committed events held in memory for the indexer at most, by count and by
/// bytes ([`Event::approx_bytes`]); beyond either (the indexer is behind) it
/// reads them back from redb. The byte bound keeps a lagging indexer from
/// holding 16 384 events of 64 KiB message and original each (~2 GiB).
const HANDOFF_MAX_EVENTS: usize = 16_384;
const HANDOFF_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Shared progress of the write path, read by the API and `/ready`.
#[derive(Default)]
pub struct Progress {
    /// Highest committed seq in redb.
    pub stored: AtomicU64,
    /// Highest seq searchable in the index.
    pub indexed: AtomicU64,
    /// The index is open (searches answer, possibly lagging).
    pub index_ready: AtomicBool,
    /// Retention deleted every event up to this seq; the index follows.
    pub purged: AtomicU64,
    wake: Mutex<Wake>,
    cv: Condvar,
    /// Batches the writer committed, in seq order, not yet indexed.
    handoff: Mutex<Handoff>,
}

#[derive(Default)]
struct Handoff {
    /// Each batch with its bytes ([`Event::approx_bytes`] summed).
    batches: std::collections::VecDeque<(Vec<Event>, usize)>,
    events: usize,
    bytes: usize,
}

#[derive(Default)]
struct Wake {
    pending: bool,
    writer_finished: bool,
}

impl Progress {
    pub fn new(stored: u64) -> Progress {
        let p = Progress::default();
        p.stored.store(stored, Ordering::Release);
        p
    }

    /// Events stored but not yet searchable.
    pub fn index_lag(&self) -> u64 {
        self.stored
            .load(Ordering::Acquire)
            .saturating_sub(self.indexed.load(Ordering::Acquire))
    }

    /// Offers a just-committed batch to the indexer: the part there is room
    /// for, by events and by bytes (the indexer reads the rest back from
    /// redb). `bytes`: the batch's [`Event::approx_bytes`] summed, as the
    /// writer's queue counted them.
    pub fn hand_over(&self, batch: Vec<Event>, bytes: usize) {
        self.hand_over_within(batch, bytes, HANDOFF_MAX_EVENTS, HANDOFF_MAX_BYTES);
    }

    fn hand_over_within(
        &self,
        mut batch: Vec<Event>,
        bytes: usize,
        max_events: usize,
        max_bytes: usize,
    ) {
        let Ok(mut h) = self.handoff.lock() else {
            return;
        };
        // As much of the batch as there is room for: the indexer reads only
        // the rest back. (Whole batches or none held one HTTP-sized batch of
        // two and read half of all events back under sustained ingest.) By
        // bytes, each event counts the batch's mean, rounded up.
        let per_event = bytes.div_ceil(batch.len().max(1)).max(1);
        let room = max_events
            .saturating_sub(h.events)
            .min(max_bytes.saturating_sub(h.bytes) / per_event);
        if room == 0 {
            return;
        }
        let bytes = if room < batch.len() {
            batch.truncate(room);
            room * per_event
        } else {
            bytes
        };
        h.events += batch.len();
        h.bytes += bytes;
        h.batches.push_back((batch, bytes));
    }

    /// The handed-over events that follow `after` directly, if the next
    /// batch in memory starts there; batches already indexed are dropped.
    fn take_after(&self, after: u64) -> Option<Vec<Event>> {
        let mut h = self.handoff.lock().ok()?;
        while let Some((front, _)) = h.batches.front() {
            let first = front.first().map_or(0, |e| e.seq);
            let last = front.last().map_or(0, |e| e.seq);
            if first > after + 1 {
                return None;
            }
            let (mut batch, bytes) = h.batches.pop_front()?;
            h.events -= batch.len();
            h.bytes -= bytes;
            if last > after {
                batch.retain(|e| e.seq > after);
                return Some(batch);
            }
        }
        None
    }

    pub fn wake_indexer(&self) {
        if let Ok(mut w) = self.wake.lock() {
            w.pending = true;
            self.cv.notify_one();
        }
    }

    pub fn writer_finished(&self) {
        if let Ok(mut w) = self.wake.lock() {
            w.writer_finished = true;
            self.cv.notify_one();
        }
    }

    /// Waits for new events or the timeout; returns true once the writer has
    /// finished (no more events will come).
    fn wait(&self, timeout: Duration) -> bool {
        let Ok(guard) = self.wake.lock() else {
            return true;
        };
        let Ok((mut w, _)) = self
            .cv
            .wait_timeout_while(guard, timeout, |w| !w.pending && !w.writer_finished)
        else {
            return true;
        };
        w.pending = false;
        w.writer_finished
    }
}

#[cfg(test)]
mod handoff_tests {
    use super::*;

    fn batch(seqs: std::ops::RangeInclusive<u64>) -> Vec<Event> {
        seqs.map(|seq| Event {
            seq,
            ..Event::default()
        })
        .collect()
    }

    /// Hands `batch` over with its bytes counted as the writer's queue
    /// counts them.
    fn offer(p: &Progress, batch: Vec<Event>) {
        let bytes = batch.iter().map(Event::approx_bytes).sum();
        p.hand_over(batch, bytes);
    }

    fn offer_within(p: &Progress, batch: Vec<Event>, max_events: usize, max_bytes: usize) {
        let bytes = batch.iter().map(Event::approx_bytes).sum();
        p.hand_over_within(batch, bytes, max_events, max_bytes);
    }

    fn seqs(events: Option<Vec<Event>>) -> Option<Vec<u64>> {
        events.map(|b| b.into_iter().map(|e| e.seq).collect())
    }

    #[test]
    fn hands_over_in_order_skipping_what_is_indexed_and_stopping_at_gaps() {
        let p = Progress::new(0);
        offer(&p, batch(1..=3));
        offer(&p, batch(4..=6));
        offer(&p, batch(9..=10));
        assert_eq!(seqs(p.take_after(0)), Some(vec![1, 2, 3]));
        // Already indexed up to 5 (from redb): the rest of the batch.
        assert_eq!(seqs(p.take_after(5)), Some(vec![6]));
        // 7 and 8 were never handed over: read them from redb.
        assert_eq!(seqs(p.take_after(6)), None);
        assert_eq!(seqs(p.take_after(8)), Some(vec![9, 10]));
        assert_eq!(seqs(p.take_after(10)), None);
    }

    #[test]
    fn holds_a_bounded_number_of_events() {
        let p = Progress::new(0);
        offer(&p, batch(1..=HANDOFF_MAX_EVENTS as u64));
        offer(
            &p,
            batch(HANDOFF_MAX_EVENTS as u64 + 1..=HANDOFF_MAX_EVENTS as u64 + 1),
        );
        assert_eq!(p.take_after(0).map(|b| b.len()), Some(HANDOFF_MAX_EVENTS));
        assert_eq!(
            seqs(p.take_after(HANDOFF_MAX_EVENTS as u64)),
            None,
            "the overflow was not kept"
        );
    }

    #[test]
    fn keeps_the_part_of_a_batch_there_is_room_for() {
        let p = Progress::new(0);
        offer_within(&p, batch(1..=6), 10, usize::MAX);
        offer_within(&p, batch(7..=12), 10, usize::MAX);
        offer_within(&p, batch(13..=14), 10, usize::MAX);
        assert_eq!(held(&p).0, 10);
        assert_eq!(seqs(p.take_after(0)), Some(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(seqs(p.take_after(6)), Some(vec![7, 8, 9, 10]));
        // 11 to 14 come back from redb.
        assert_eq!(seqs(p.take_after(10)), None);
        assert_eq!(held(&p), (0, 0));
    }

    fn big(seqs: std::ops::RangeInclusive<u64>, message_bytes: usize) -> Vec<Event> {
        seqs.map(|seq| Event {
            seq,
            message: "m".repeat(message_bytes),
            original: Some("o".repeat(message_bytes)),
            ..Event::default()
        })
        .collect()
    }

    fn held(p: &Progress) -> (usize, usize) {
        let h = p.handoff.lock().unwrap();
        (h.events, h.bytes)
    }

    #[test]
    fn holds_a_bounded_number_of_bytes() {
        // Events of 64 KiB message and 64 KiB original: far fewer than the
        // event bound fit in the byte bound.
        let p = Progress::new(0);
        let per_batch = 64u64;
        let mut next = 1;
        for _ in 0..(HANDOFF_MAX_EVENTS as u64 / per_batch) {
            offer(&p, big(next..=next + per_batch - 1, 64 * 1024));
            next += per_batch;
        }
        let (events, bytes) = held(&p);
        assert!(bytes <= HANDOFF_MAX_BYTES, "{bytes} bytes held");
        assert!(
            events < HANDOFF_MAX_EVENTS / 2,
            "{events} events of 128 KiB held"
        );
        // Every batch held is in order from 1; the indexer reads the
        // rest back from redb.
        let mut after = 0;
        while let Some(b) = p.take_after(after) {
            after = b.last().unwrap().seq;
        }
        assert_eq!(after as usize, events);
        assert_eq!(held(&p), (0, 0), "taking releases the bytes");
        // Room again once taken.
        offer(&p, big(next..=next, 64 * 1024));
        assert_eq!(held(&p).0, 1);
    }

    #[test]
    fn the_byte_bound_keeps_the_part_that_fits() {
        let p = Progress::new(0);
        let one = big(1..=1, 1000)
            .iter()
            .map(Event::approx_bytes)
            .sum::<usize>();
        offer_within(&p, big(1..=2, 1000), 10, 3 * one);
        // Over the byte bound, under the event bound: the part that fits.
        offer_within(&p, big(3..=4, 1000), 10, 3 * one);
        assert_eq!(held(&p), (3, 3 * one));
        // Full by bytes: refused.
        offer_within(&p, big(5..=5, 1000), 10, 3 * one);
        assert_eq!(held(&p), (3, 3 * one));
        // A partly indexed batch still releases all its bytes.
        assert_eq!(seqs(p.take_after(1)), Some(vec![2]));
        assert_eq!(held(&p), (1, one));
        assert_eq!(seqs(p.take_after(2)), Some(vec![3]));
        assert_eq!(held(&p), (0, 0));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct IndexerConfig {
    pub commit_interval: Duration,
    pub commit_max_events: usize,
}

struct Indexer {
    store: Store,
    index: Arc<EventIndex>,
    writer: IndexWriter,
    progress: Arc<Progress>,
    cfg: IndexerConfig,
    /// Highest seq added to the writer.
    added: u64,
    /// Highest seq deleted from the index after retention.
    purged: u64,
    /// Added but not yet committed.
    pending: usize,
    last_commit: Instant,
}

/// Opens the writer, recovers the checkpoint, and starts the indexer thread.
pub fn spawn(
    store: Store,
    index: Arc<EventIndex>,
    opened: Opened,
    progress: Arc<Progress>,
    cfg: IndexerConfig,
) -> Result<std::thread::JoinHandle<()>, super::index::Error> {
    let writer = index.writer()?;
    let checkpoint = match opened {
        Opened::Fresh => 0,
        Opened::Existing => {
            let in_redb = store.index_checkpoint().unwrap_or(0);
            in_redb.min(index.committed_seq()?)
        }
    };
    // Anything above the checkpoint may be half-done: drop it and redo it.
    writer.delete_query(index.after_seq(checkpoint))?;
    progress.indexed.store(checkpoint, Ordering::Release);
    progress.index_ready.store(true, Ordering::Release);
    if opened == Opened::Fresh && progress.stored.load(Ordering::Acquire) > 0 {
        tracing::info!(
            events = progress.stored.load(Ordering::Acquire),
            "rebuilding the index from the store in the background"
        );
    }
    let mut indexer = Indexer {
        store,
        index,
        writer,
        progress,
        cfg,
        added: checkpoint,
        purged: 0,
        pending: 0,
        last_commit: Instant::now(),
    };
    std::thread::Builder::new()
        .name("secmon-indexer".into())
        .spawn(move || indexer.run())
        .map_err(|e| {
            super::index::Error::Tantivy(tantivy::TantivyError::SystemError(e.to_string()))
        })
}

impl Indexer {
    fn run(&mut self) {
        // From zero, so the first failure shows as an increase.
        metrics::counter!(metric::INDEX_ERRORS).increment(0);
        loop {
            if let Err(e) = self.catch_up() {
                tracing::error!(error = %e, "indexing failed; retrying");
                metrics::counter!(metric::INDEX_ERRORS).increment(1);
                self.back_to_checkpoint();
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            let timeout = if self.pending > 0 {
                self.cfg
                    .commit_interval
                    .saturating_sub(self.last_commit.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            let finished = self.progress.wait(timeout);
            if finished {
                // The writer is gone: index what it committed last, then stop.
                if let Err(e) = self.catch_up().and_then(|()| self.commit()) {
                    tracing::error!(error = %e, "final index commit failed; the index catches up at next start");
                }
                break;
            }
        }
        tracing::debug!(indexed = self.added, "indexer stopped");
    }

    /// Adds every stored event not yet added, drops what retention
    /// deleted; commits when due.
    fn catch_up(&mut self) -> Result<(), super::Error> {
        let purged = self.progress.purged.load(Ordering::Acquire);
        if purged > self.purged {
            self.writer
                .delete_query(self.index.up_to_seq(purged))
                .map_err(|e| super::Error::Index(e.into()))?;
            self.purged = purged;
            self.pending += 1;
        }
        loop {
            let stored = self.progress.stored.load(Ordering::Acquire);
            if self.added >= stored {
                break;
            }
            let events = match self.progress.take_after(self.added) {
                Some(events) => events,
                None => {
                    let events = self.store.scan_from(self.added + 1, SCAN_CHUNK)?;
                    metrics::counter!(metric::INDEX_READ_BACK).increment(events.len() as u64);
                    events
                }
            };
            let Some(last) = events.last() else { break };
            let (last, n) = (last.seq, events.len());
            // One batch for tantivy: one hand-over to its indexing threads
            // instead of one a document.
            self.writer
                .run(
                    events
                        .into_iter()
                        .map(|e| UserOperation::Add(self.index.document(e))),
                )
                .map_err(|e| super::Error::Index(e.into()))?;
            self.added = last;
            self.pending += n;
            // The timer applies inside a long catch-up too: otherwise a rebuild
            // or a backlog under steady ingest commits (and checkpoints) only
            // every `commit_max_events`, and a crash loses all of that work.
            if self.pending >= self.cfg.commit_max_events
                || self.last_commit.elapsed() >= self.cfg.commit_interval
            {
                self.commit()?;
            }
        }
        if self.pending > 0 && self.last_commit.elapsed() >= self.cfg.commit_interval {
            self.commit()?;
        }
        Ok(())
    }

    /// After a failed step (a full disk, say) the tantivy writer may hold
    /// half-done work, or be unusable after a failed flush: go back to its
    /// last commit and redo everything after the checkpoint, as at start-up.
    fn back_to_checkpoint(&mut self) {
        let checkpoint = self.progress.indexed.load(Ordering::Acquire);
        let reset = self.writer.rollback().and_then(|_| {
            self.writer
                .delete_query(self.index.after_seq(checkpoint))
                .map(|_| ())
        });
        match reset {
            Ok(()) => {
                self.added = checkpoint;
                // Deletes since the last commit were rolled back too.
                self.purged = 0;
                self.pending = 0;
            }
            Err(e) => tracing::error!(error = %e, "cannot roll the index writer back; retrying"),
        }
    }

    fn commit(&mut self) -> Result<(), super::Error> {
        let started = Instant::now();
        let seq = self.added;
        let mut prepared = self
            .writer
            .prepare_commit()
            .map_err(|e| super::Error::Index(e.into()))?;
        prepared.set_payload(&seq.to_string());
        prepared
            .commit()
            .map_err(|e| super::Error::Index(e.into()))?;
        self.index.reload().map_err(super::Error::Index)?;
        self.store.set_index_checkpoint(seq)?;
        self.progress.indexed.store(seq, Ordering::Release);
        self.pending = 0;
        self.last_commit = Instant::now();
        metrics::histogram!(metric::INDEX_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::gauge!(metric::INDEX_LAG).set(self.progress.index_lag() as f64);
        Ok(())
    }
}
