//! File tail: the configured paths and globs, followed across rotation.
//!
//! Each file is read line by line from its checkpoint. A batch of lines is
//! submitted with the file's new position (`file:<path>` in the store's
//! checkpoint table), and the two commit in one transaction: after a crash
//! the file resumes exactly after the last committed line, so nothing is
//! lost or read twice. The next lines are read only after the commit
//! (backpressure: a slow store slows the tail, it never buffers a file).
//!
//! Files are polled (`ingest.files.poll_interval_ms`), which works on every
//! file system and costs one `stat` per file per interval. Rotation:
//! - rename + create (logrotate's default): the path now names another
//!   file; the old one is read to its end, then the new one from its start;
//! - copytruncate: the file got shorter than the position; it is read again
//!   from its start (what was written between the copy and the truncation
//!   is in the copy, which is not tailed unless a glob matches it).
//!
//! A file rotated while secmon was stopped starts from its beginning; the
//! rest of the old file is read only when a glob matches its new name.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

use super::SourceCounters;
use crate::config::{Files, StartAt};
use crate::model::Event;
use crate::parse::{self, ParseOptions};
use crate::store::writer::WriterHandle;
use crate::store::{Checkpoint, Store};

const SOURCE: &str = "file";
/// Lines per store submission.
const BATCH: usize = 1024;
/// Bytes read from a file at a time.
const CHUNK: usize = 256 * 1024;

/// What the file source needs from the node.
pub struct FileSource {
    pub config: Files,
    pub writer: WriterHandle,
    pub store: Store,
    pub parse: ParseOptions,
    /// `host.name` for lines that do not name their host (access logs).
    pub host_name: String,
}

/// The committed position of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    dev: u64,
    ino: u64,
    offset: u64,
}

/// A file being followed.
struct Tail {
    file: tokio::fs::File,
    dev: u64,
    ino: u64,
    /// The offset of the next byte to read.
    pos: u64,
    /// Where a restart resumes: everything before is committed (or was
    /// skipped as the rest of an overlong line).
    committed: u64,
    /// The start of an incomplete last line, read but not yet an event: the
    /// bytes just before `pos`.
    partial: Vec<u8>,
    /// Inside a line longer than the limit: bytes up to the next newline are
    /// dropped (the line's first part is already an event, flagged truncated).
    skipping: bool,
}

/// Follows the configured files until `shutdown`.
pub async fn run(source: FileSource, shutdown: CancellationToken) {
    let mut tails: BTreeMap<PathBuf, Tail> = BTreeMap::new();
    let interval = Duration::from_millis(source.config.poll_interval_ms.max(10));
    loop {
        for path in expand(&source.config.paths) {
            let std::collections::btree_map::Entry::Vacant(slot) = tails.entry(path) else {
                continue;
            };
            let path = slot.key();
            match source.open(path).await {
                Ok(Some(tail)) => {
                    tracing::info!(path = %path.display(), offset = tail.committed, "tailing file");
                    slot.insert(tail);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open file to tail")
                }
            }
        }
        let mut gone = Vec::new();
        for (path, tail) in &mut tails {
            if shutdown.is_cancelled() {
                return;
            }
            match source.follow(path, tail).await {
                Ok(true) => {}
                Ok(false) => gone.push(path.clone()),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "file tail stopped; it is opened again at the next poll");
                    gone.push(path.clone());
                }
            }
        }
        for path in gone {
            tails.remove(&path);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// The files the patterns match now, in a stable order.
fn expand(patterns: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pattern in patterns {
        match glob::glob(pattern) {
            Ok(paths) => out.extend(paths.flatten().filter(|p| p.is_file())),
            Err(e) => tracing::warn!(pattern, error = %e, "bad file pattern"),
        }
    }
    out.sort();
    out.dedup();
    out
}

fn checkpoint_key(path: &Path) -> String {
    format!("file:{}", path.display())
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl FileSource {
    /// Opens `path` at its committed position, or where `start_at` says for a
    /// file never seen. `None` when the file vanished in between.
    async fn open(&self, path: &Path) -> std::io::Result<Option<Tail>> {
        let mut file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata().await?;
        let (dev, ino) = identity(&meta);
        let store = self.store.clone();
        let key = checkpoint_key(path);
        let saved = tokio::task::spawn_blocking(move || store.checkpoint(&key))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?
            .and_then(|bytes| serde_json::from_slice::<Position>(&bytes).ok());
        let offset = match saved {
            // The same file: resume, unless it was truncated meanwhile.
            Some(p) if (p.dev, p.ino) == (dev, ino) && p.offset <= meta.len() => p.offset,
            Some(p) if (p.dev, p.ino) == (dev, ino) => 0,
            // Rotated while stopped: the file at this path is a new one.
            Some(_) => 0,
            None => match self.config.start_at {
                StartAt::Beginning => 0,
                StartAt::End => meta.len(),
            },
        };
        file.seek(SeekFrom::Start(offset)).await?;
        Ok(Some(Tail {
            file,
            dev,
            ino,
            pos: offset,
            committed: offset,
            partial: Vec::new(),
            skipping: false,
        }))
    }

    /// Reads what `tail` has new, follows rotation; false when the file is
    /// gone and done with.
    async fn follow(&self, path: &Path, tail: &mut Tail) -> std::io::Result<bool> {
        let len = tail.file.metadata().await?.len();
        if len < tail.pos {
            tracing::info!(path = %path.display(), "file truncated (copytruncate): reading it from the start");
            tail.file.seek(SeekFrom::Start(0)).await?;
            tail.pos = 0;
            tail.partial.clear();
            tail.skipping = false;
            self.commit(path, tail, Vec::new(), 0).await?;
        }
        self.read_to_end(path, tail).await?;
        let now = match tokio::fs::metadata(path).await {
            Ok(meta) => Some(identity(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if now == Some((tail.dev, tail.ino)) {
            return Ok(true);
        }
        // Renamed or deleted: what the writer added before the switch was
        // just read; a last line without newline is complete now.
        self.read_to_end(path, tail).await?;
        if !tail.partial.is_empty() {
            let line = std::mem::take(&mut tail.partial);
            let event = self.event(&SourceCounters::new(SOURCE), path, line);
            self.commit(path, tail, vec![event], tail.pos).await?;
        }
        tracing::info!(path = %path.display(), "file rotated or removed: following the new file");
        Ok(false)
    }

    /// Turns every complete line up to the end of the file into events,
    /// committing them batch by batch with the position after them.
    async fn read_to_end(&self, path: &Path, tail: &mut Tail) -> std::io::Result<()> {
        let limit = self.parse.max_message_bytes;
        let counters = SourceCounters::new(SOURCE);
        let mut buf = vec![0u8; CHUNK];
        let mut events = Vec::new();
        loop {
            let n = tail.file.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let base = tail.pos;
            tail.pos += n as u64;
            // Where a restart would resume after what this read consumed.
            let mut resume = tail.committed;
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let offset = base + (n - rest.len()) as u64;
                match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        if !std::mem::take(&mut tail.skipping) {
                            tail.partial.extend_from_slice(&rest[..i]);
                            let line = std::mem::take(&mut tail.partial);
                            if !line.iter().all(u8::is_ascii_whitespace) {
                                events.push(self.event(&counters, path, line));
                            }
                        }
                        rest = &rest[i + 1..];
                        resume = offset + i as u64 + 1;
                        if events.len() >= BATCH {
                            self.commit(path, tail, std::mem::take(&mut events), resume)
                                .await?;
                        }
                    }
                    None => {
                        if tail.skipping {
                            resume = tail.pos;
                        } else {
                            tail.partial.extend_from_slice(rest);
                            if tail.partial.len() > limit {
                                // Keep limit + 1 bytes so the parser flags it.
                                tail.partial.truncate(limit + 1);
                                let line = std::mem::take(&mut tail.partial);
                                events.push(self.event(&counters, path, line));
                                tail.skipping = true;
                                resume = tail.pos;
                            }
                        }
                        rest = &[];
                    }
                }
            }
            if !events.is_empty() || resume != tail.committed {
                self.commit(path, tail, std::mem::take(&mut events), resume)
                    .await?;
            }
        }
    }

    fn event(&self, counters: &SourceCounters, path: &Path, line: Vec<u8>) -> Event {
        let mut event = counters.parse(line, None, &self.parse);
        parse::set_field(
            &mut event,
            "log.file.path",
            serde_json::Value::String(path.display().to_string()),
        );
        if event.host_name.is_none() {
            event.host_name = Some(self.host_name.clone());
        }
        event
    }

    /// Commits `events` with the position `offset`, waiting for the commit.
    async fn commit(
        &self,
        path: &Path,
        tail: &mut Tail,
        mut events: Vec<Event>,
        offset: u64,
    ) -> std::io::Result<()> {
        // Provenance from the configuration only (`ingest.files.trusted`).
        for event in &mut events {
            event.trusted = self.config.trusted;
        }
        let position = Position {
            dev: tail.dev,
            ino: tail.ino,
            offset,
        };
        let checkpoint = Checkpoint {
            key: checkpoint_key(path),
            value: serde_json::to_vec(&position).map_err(std::io::Error::other)?,
        };
        let n = events.len() as u64;
        let committed = match self.writer.submit_with(events, Some(checkpoint)).await {
            Ok(pending) => matches!(pending.await, Ok(Ok(_))),
            Err(_) => false,
        };
        if !committed {
            // Nothing is lost: the file is opened again at its checkpoint.
            return Err(std::io::Error::other(format!(
                "the store did not commit {n} lines; they are read again"
            )));
        }
        tail.committed = offset;
        Ok(())
    }
}
