//! Commands that work on a data dir without a running daemon: import,
//! search, index rebuild, restore. They hold the store, so a daemon using
//! the same data dir makes them fail with "in use by another secmon process".

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use crate::model::Event;
use crate::parse::{self, ParseOptions, RawRecord};
use crate::store::index::{EventIndex, Opened, SearchQuery};
use crate::store::indexer::{self, IndexerConfig, Progress};
use crate::store::{self, Store};

/// Events appended per transaction by `ingest`.
const BATCH: usize = 8192;
/// Errors listed in an ingest report (all are counted).
const MAX_LISTED_ERRORS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// NDJSON for lines starting with `{`, syslog otherwise.
    Auto,
    Syslog,
    Ndjson,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Index(#[from] store::index::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the indexer thread failed")]
    Indexer,
}

#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub errors: Vec<String>,
    pub indexed_up_to: u64,
}

/// Imports files into the store (syslog lines through the parsers, NDJSON
/// as events), then brings the index up to date.
pub fn ingest(
    data_dir: &Path,
    files: &[PathBuf],
    format: Format,
    opts: &ParseOptions,
) -> Result<IngestReport, Error> {
    let store = Store::open(data_dir)?;
    let mut report = IngestReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    for path in files {
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
                break;
            }
            number += 1;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            report.lines += 1;
            match to_event(text, format, opts) {
                Ok(event) => batch.push(event),
                Err(reason) => {
                    report.rejected += 1;
                    if report.errors.len() < MAX_LISTED_ERRORS {
                        report
                            .errors
                            .push(format!("{}:{number}: {reason}", path.display()));
                    }
                }
            }
            if batch.len() >= BATCH {
                report.accepted += batch.len() as u64;
                store.append(&mut batch)?;
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        report.accepted += batch.len() as u64;
        store.append(&mut batch)?;
    }
    report.indexed_up_to = catch_up_index(&store, data_dir, false)?;
    Ok(report)
}

fn to_event(line: &[u8], format: Format, opts: &ParseOptions) -> Result<Event, String> {
    let json = match format {
        Format::Ndjson => true,
        Format::Syslog => false,
        Format::Auto => line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
    };
    let received_at = Utc::now();
    if json {
        return Event::from_json_slice(line, received_at).map_err(|e| e.to_string());
    }
    let raw = RawRecord {
        bytes: line.to_vec(),
        source: "file",
        peer: None,
        received_at,
    };
    Ok(parse::parse(&raw, opts))
}

/// Searches the data dir's index (after bringing it up to date).
pub fn search(data_dir: &Path, query: &SearchQuery) -> Result<(usize, Vec<Event>), Error> {
    let store = Store::open(data_dir)?;
    catch_up_index(&store, data_dir, false)?;
    let (index, _) = EventIndex::open(&data_dir.join("index"))?;
    let page = index.search(query)?;
    let events = store.get_many(&page.seqs)?;
    Ok((page.total, events))
}

/// Drops the index and rebuilds it from the store; returns the last seq indexed.
pub fn rebuild_index(data_dir: &Path) -> Result<u64, Error> {
    let store = Store::open(data_dir)?;
    catch_up_index(&store, data_dir, true)
}

/// Runs the indexer until it has indexed everything stored, then stops it.
fn catch_up_index(store: &Store, data_dir: &Path, fresh: bool) -> Result<u64, Error> {
    let dir = data_dir.join("index");
    if fresh && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let (index, opened) = EventIndex::open(&dir)?;
    let opened = if fresh { Opened::Fresh } else { opened };
    let progress = Arc::new(Progress::new(store.stats()?.last_seq));
    let cfg = IndexerConfig {
        commit_interval: Duration::from_secs(3600),
        commit_max_events: 1_000_000,
    };
    let thread = indexer::spawn(
        store.clone(),
        Arc::new(index),
        opened,
        progress.clone(),
        cfg,
    )?;
    // No writer runs here: the indexer indexes what is stored, commits, stops.
    progress.writer_finished();
    thread.join().map_err(|_| Error::Indexer)?;
    Ok(progress.indexed.load(std::sync::atomic::Ordering::Acquire))
}
