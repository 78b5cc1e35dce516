//! Retention: deletes the oldest events by receive age and by disk use, in
//! bounded steps (one short write transaction each, with a pause between)
//! so ingest is never stalled. The index follows through [`Progress::purged`].
//! Events an export sink has not taken are kept (with an archive, that is
//! tiered retention: only what the archive holds is deleted), unless
//! [`Exported::drops`] says to delete them anyway, counting the loss.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::indexer::Progress;
use super::{Result, Store};
use crate::config::Retention;
use crate::telemetry::metric;

/// Blocks deleted per write transaction (64 events each at most).
const STEP_BLOCKS: usize = 64;
/// Pause between steps, so the writer gets the write lock.
const STEP_PAUSE: Duration = Duration::from_millis(5);

/// What one retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub by_age: u64,
    pub by_size: u64,
    pub alerts: u64,
}

/// What retention must not delete: the events the export sinks have not
/// taken (`crate::export`).
#[derive(Debug, Clone, Default)]
pub struct Exported {
    /// The configured export sinks.
    pub sinks: Vec<&'static str>,
    /// Delete them anyway (`export.retention_drops_unexported`), each
    /// counted in `secmon_export_dropped_events_total{sink}` and logged.
    pub drops: bool,
}

/// Deletes one step of whole blocks from the oldest on while `want` says
/// so and `exported` allows it.
fn purge_step(
    store: &Store,
    exported: &Exported,
    mut want: impl FnMut(&super::codec::BlockHeader) -> bool,
) -> Result<super::Purged> {
    let mut taken = Vec::with_capacity(exported.sinks.len());
    for sink in &exported.sinks {
        taken.push((*sink, store.export_cursor(sink)?.taken, 0u64));
    }
    let floor = taken.iter().map(|(_, t, _)| *t).min();
    let purged = store.purge_oldest(STEP_BLOCKS, |block| {
        let last = block.last_seq();
        if floor.is_some_and(|floor| last > floor) && !exported.drops {
            return false;
        }
        if !want(block) {
            return false;
        }
        for (_, taken, lost) in &mut taken {
            if last > *taken {
                *lost += (last - *taken).min(u64::from(block.count));
            }
        }
        true
    })?;
    for (sink, _, lost) in taken {
        if lost > 0 {
            metrics::counter!(metric::EXPORT_DROPPED, "sink" => sink).increment(lost);
            tracing::warn!(
                sink,
                events = lost,
                "retention deleted events the export sink had not taken (export.retention_drops_unexported is on)"
            );
        }
    }
    Ok(purged)
}

/// One retention pass as of `now`. Blocks; run it on a blocking thread.
pub fn run_once(
    store: &Store,
    data_dir: &Path,
    (cfg, exported): (&Retention, &Exported),
    progress: &Progress,
    now: DateTime<Utc>,
) -> Result<Report> {
    let mut report = Report::default();
    if let Some(max_age) = cfg.events_max_age {
        let age = chrono::Duration::from_std(max_age.0).unwrap_or(chrono::Duration::MAX);
        let cutoff = now
            .checked_sub_signed(age)
            .map_or(i64::MIN, |t| t.timestamp_micros());
        loop {
            let purged = purge_step(store, exported, |block| block.max_received < cutoff)?;
            report.by_age += purged.events;
            advance(progress, purged.up_to_seq);
            if purged.blocks < STEP_BLOCKS {
                break;
            }
            std::thread::sleep(STEP_PAUSE);
        }
    }
    if let Some(max_bytes) = cfg.max_disk_bytes {
        // Freed space shows only later (redb reuses pages after following
        // commits, tantivy after merges), so the excess is converted into a
        // number of events at the current bytes per event, deleted, and the
        // next run measures again.
        let used = store.used_bytes()? + dir_bytes(&data_dir.join("index"));
        let events = store.stats()?.events;
        if used > max_bytes && events > 0 {
            let per_event = used.div_ceil(events).max(1);
            let mut to_delete = (used - max_bytes).div_ceil(per_event);
            while to_delete > 0 {
                let purged = purge_step(store, exported, |block| {
                    let take = u64::from(block.count) <= to_delete;
                    if take {
                        to_delete -= u64::from(block.count);
                    }
                    take
                })?;
                report.by_size += purged.events;
                advance(progress, purged.up_to_seq);
                if purged.blocks < STEP_BLOCKS {
                    break;
                }
                std::thread::sleep(STEP_PAUSE);
            }
        }
    }
    if let Some(max_age) = cfg.alerts_max_age {
        let age = chrono::Duration::from_std(max_age.0).unwrap_or(chrono::Duration::MAX);
        let cutoff = now
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        loop {
            let purged = store.purge_alerts(cutoff, STEP_BLOCKS * 16)?;
            report.alerts += purged;
            if purged < (STEP_BLOCKS * 16) as u64 {
                break;
            }
            std::thread::sleep(STEP_PAUSE);
        }
    }
    metrics::counter!(metric::RETENTION_DELETED, "reason" => "age").increment(report.by_age);
    metrics::counter!(metric::RETENTION_DELETED, "reason" => "size").increment(report.by_size);
    Ok(report)
}

fn advance(progress: &Progress, up_to_seq: u64) {
    if up_to_seq > 0 {
        progress.purged.fetch_max(up_to_seq, Ordering::AcqRel);
        progress.wake_indexer();
    }
}

/// Total size of the files in a directory tree (0 when missing).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Sets the storage gauges: the redb file and the index directory, and
/// the free and total space of the data directory's filesystem.
fn report_usage(data_dir: &Path) {
    let store = std::fs::metadata(data_dir.join(super::DB_FILE)).map_or(0, |m| m.len());
    metrics::gauge!(metric::STORAGE_BYTES, "part" => "store").set(store as f64);
    let index = dir_bytes(&data_dir.join("index"));
    metrics::gauge!(metric::STORAGE_BYTES, "part" => "index").set(index as f64);
    match fs4::statvfs(data_dir) {
        Ok(fs) => {
            metrics::gauge!(metric::DISK_FREE).set(fs.available_space() as f64);
            metrics::gauge!(metric::DISK_TOTAL).set(fs.total_space() as f64);
        }
        Err(e) => tracing::debug!(error = %e, "cannot stat the data directory's filesystem"),
    }
}

/// Every `check_interval_seconds` until `shutdown`: the storage gauges,
/// then retention when a limit is set.
pub async fn run(
    store: Store,
    data_dir: std::path::PathBuf,
    (cfg, exported): (Retention, Exported),
    progress: Arc<Progress>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let limited = cfg.events_max_age.is_some()
        || cfg.max_disk_bytes.is_some()
        || cfg.alerts_max_age.is_some();
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.check_interval_seconds.max(1)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let dir = data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || report_usage(&dir)).await;
        if !limited {
            continue;
        }
        let (store, dir, cfg, exported, progress) = (
            store.clone(),
            data_dir.clone(),
            cfg.clone(),
            exported.clone(),
            progress.clone(),
        );
        let done = tokio::task::spawn_blocking(move || {
            run_once(&store, &dir, (&cfg, &exported), &progress, Utc::now())
        })
        .await;
        match done {
            Ok(Ok(report)) if report != Report::default() => {
                tracing::info!(
                    by_age = report.by_age,
                    by_size = report.by_size,
                    "retention deleted events"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "retention failed; retrying at the next interval")
            }
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Span;
    use crate::model::Event;
    use crate::store::index::{EventIndex, SearchQuery};
    use crate::store::indexer::{self, IndexerConfig};
    use sha2::Digest;

    fn event(received: DateTime<Utc>, i: usize) -> Event {
        Event {
            timestamp: received,
            received_at: received,
            message: format!("event {i} with some text to take space {}", "x".repeat(200)),
            ..Event::default()
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
        index: Arc<EventIndex>,
        progress: Arc<Progress>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let (index, opened) = EventIndex::open(&dir.path().join("index")).unwrap();
            let index = Arc::new(index);
            let progress = Arc::new(Progress::new(0));
            let cfg = IndexerConfig {
                commit_interval: Duration::from_millis(10),
                commit_max_events: 100_000,
            };
            let thread =
                indexer::spawn(store.clone(), index.clone(), opened, progress.clone(), cfg)
                    .unwrap();
            Fixture {
                dir,
                store,
                index,
                progress,
                thread: Some(thread),
            }
        }

        fn append(&self, mut events: Vec<Event>) {
            let range = self.store.append(&mut events).unwrap();
            self.progress.stored.store(range.end - 1, Ordering::Release);
            self.progress.wake_indexer();
        }

        fn searchable(&self) -> usize {
            let q = SearchQuery {
                limit: 1,
                ..Default::default()
            };
            self.index.search(&q).unwrap().total
        }

        /// Waits until the index has caught up with adds and purges.
        fn settle(&self, expected: usize) {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while self.searchable() != expected {
                assert!(
                    std::time::Instant::now() < deadline,
                    "index has {} not {expected}",
                    self.searchable()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.progress.writer_finished();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn deletes_by_age_from_store_and_index() {
        let f = Fixture::new();
        let now = Utc::now();
        let old = now - chrono::Duration::days(40);
        f.append((0..300).map(|i| event(old, i)).collect());
        f.append((0..50).map(|i| event(now, i)).collect());
        f.settle(350);
        let cfg = Retention {
            events_max_age: Some("30d".parse().unwrap()),
            ..Retention::default()
        };
        let report = run_once(
            &f.store,
            f.dir.path(),
            (&cfg, &Exported::default()),
            &f.progress,
            now,
        )
        .unwrap();
        assert_eq!(
            report,
            Report {
                by_age: 300,
                ..Report::default()
            }
        );
        assert_eq!(f.store.stats().unwrap().events, 50);
        assert_eq!(f.store.scan_from(0, 1000).unwrap().len(), 50);
        f.settle(50);
        // Nothing more is old enough.
        let again = run_once(
            &f.store,
            f.dir.path(),
            (&cfg, &Exported::default()),
            &f.progress,
            now,
        )
        .unwrap();
        assert_eq!(again, Report::default());
    }

    #[test]
    fn deletes_oldest_first_until_under_the_size_limit() {
        let f = Fixture::new();
        let now = Utc::now();
        for _ in 0..20 {
            f.append((0..500).map(|i| event(now, i)).collect());
        }
        f.settle(10_000);
        let before = f.store.used_bytes().unwrap() + dir_bytes(&f.dir.path().join("index"));
        let cfg = Retention {
            max_disk_bytes: Some(before / 2),
            ..Retention::default()
        };
        let report = run_once(
            &f.store,
            f.dir.path(),
            (&cfg, &Exported::default()),
            &f.progress,
            now,
        )
        .unwrap();
        assert!(report.by_size > 0 && report.by_size < 10_000, "{report:?}");
        let left = f.store.scan_from(0, 20_000).unwrap();
        assert_eq!(left.len() as u64, 10_000 - report.by_size);
        // Oldest first: what is left is the newest, contiguous up to the last seq.
        assert_eq!(left.last().unwrap().seq, 10_000);
        assert_eq!(left.first().unwrap().seq, 10_000 - left.len() as u64 + 1);
    }

    #[test]
    fn events_an_export_sink_has_not_taken_are_kept_unless_told_to_drop_them() {
        let f = Fixture::new();
        let now = Utc::now();
        let old = now - chrono::Duration::days(40);
        // Events that compress about as well as log lines, so that blocks
        // hold about a hundred of them.
        f.append(
            (0..3000)
                .map(|i| Event {
                    message: format!("{:x}", sha2::Sha256::digest(i.to_string())),
                    ..event(old, i)
                })
                .collect(),
        );
        f.settle(3000);
        let cfg = Retention {
            events_max_age: Some("30d".parse().unwrap()),
            ..Retention::default()
        };
        let cursor = |taken| crate::store::export::Cursor { taken, pending: 0 };
        f.store.set_export_cursor("archive", cursor(1000)).unwrap();
        let exported = Exported {
            sinks: vec!["archive", "nats"],
            drops: false,
        };
        let kept = run_once(&f.store, f.dir.path(), (&cfg, &exported), &f.progress, now).unwrap();
        assert_eq!(kept.by_age, 0, "nats took nothing yet");

        f.store.set_export_cursor("nats", cursor(3000)).unwrap();
        let report = run_once(&f.store, f.dir.path(), (&cfg, &exported), &f.progress, now).unwrap();
        // Whole blocks: only those the archive holds entirely.
        assert!(report.by_age > 0 && report.by_age <= 1000, "{report:?}");
        let left = f.store.scan_from(0, 10_000).unwrap();
        assert!(
            left[0].seq <= 1001,
            "event 1001 on are kept: {}",
            left[0].seq
        );
        assert_eq!(left.last().unwrap().seq, 3000);

        let dropping = Exported {
            drops: true,
            ..exported
        };
        let report = run_once(&f.store, f.dir.path(), (&cfg, &dropping), &f.progress, now).unwrap();
        assert_eq!(
            report.by_age,
            left.len() as u64,
            "deleted, the loss counted"
        );
        assert_eq!(f.store.stats().unwrap().events, 0);
    }

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(
            "30d".parse::<Span>().unwrap().0,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!("90m".parse::<Span>().unwrap().to_string(), "90m");
        assert_eq!("120m".parse::<Span>().unwrap().to_string(), "2h");
        for bad in ["", "d", "10", "1w", "0s", "-1d"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }
}
