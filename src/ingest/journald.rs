//! The systemd journal, through `journalctl -o json --follow`.
//!
//! Each entry's `__CURSOR` is committed with the entry (`journald` in the
//! store's checkpoint table); a restart passes it back as `--after-cursor`,
//! so no entry is lost or read twice. Entries are read only after the
//! previous batch committed (backpressure: journalctl's pipe fills and it
//! waits). If journalctl exits, it is started again from the checkpoint.

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::config::{Journald, StartAt};
use crate::parse::{self, ParseOptions};
use crate::store::writer::WriterHandle;
use crate::store::{Checkpoint, Store};
use crate::telemetry::metric;

const SOURCE: &str = "journald";
const CHECKPOINT_KEY: &str = "journald";
const BATCH: usize = 1024;
/// Wait before journalctl is started again after it stopped.
const RESTART_DELAY: Duration = Duration::from_secs(5);
/// Longest entry line read; longer ones are skipped, counted as rejected.
const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;

pub struct JournaldSource {
    pub config: Journald,
    pub writer: WriterHandle,
    pub store: Store,
    pub parse: ParseOptions,
}

/// Follows the journal until `shutdown`.
pub async fn run(source: JournaldSource, shutdown: CancellationToken) {
    loop {
        match source.follow(&shutdown).await {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => tracing::warn!("journalctl exited; starting it again"),
            Err(e) => tracing::warn!(error = %e, "journald source stopped; starting it again"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESTART_DELAY) => {}
        }
    }
}

impl JournaldSource {
    /// The journalctl arguments: JSON, follow, from the checkpoint.
    fn args(&self, cursor: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "--output=json".to_owned(),
            "--follow".to_owned(),
            // Without it, --follow keeps to the current boot: entries written
            // after the checkpoint but before a reboot would be skipped.
            "--merge".to_owned(),
            "--no-pager".to_owned(),
            "--quiet".to_owned(),
        ];
        match (cursor, self.config.start_at) {
            (Some(cursor), _) => {
                args.push(format!("--after-cursor={cursor}"));
                args.push("--lines=all".to_owned());
            }
            (None, StartAt::Beginning) => args.push("--lines=all".to_owned()),
            (None, StartAt::End) => args.push("--lines=0".to_owned()),
        }
        args.extend(self.config.args.iter().cloned());
        args
    }

    async fn cursor(&self) -> std::io::Result<Option<String>> {
        let store = self.store.clone();
        let saved = tokio::task::spawn_blocking(move || store.checkpoint(CHECKPOINT_KEY))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        Ok(saved.and_then(|bytes| String::from_utf8(bytes).ok()))
    }

    /// Runs journalctl once, until it exits or `shutdown`.
    async fn follow(&self, shutdown: &CancellationToken) -> std::io::Result<()> {
        let counters = super::SourceCounters::new(SOURCE);
        let cursor = self.cursor().await?;
        let mut child = Command::new(&self.config.journalctl)
            .args(self.args(cursor.as_deref()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot run {}: {e}", self.config.journalctl.display()),
                )
            })?;
        tracing::info!(cursor = cursor.is_some(), "following the journal");
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("journalctl has no stdout"))?;
        let mut stderr = child.stderr.take();
        let mut reader = BufReader::with_capacity(256 * 1024, stdout);
        let mut batch = Vec::with_capacity(BATCH);
        let mut last_cursor = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            let mut limited = (&mut reader).take(MAX_ENTRY_BYTES as u64 + 1);
            let n = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = limited.read_until(b'\n', &mut line) => n?,
            };
            if n == 0 {
                break;
            }
            if line.len() > MAX_ENTRY_BYTES && line.last() != Some(&b'\n') {
                // Skip the rest of an entry too large to be one.
                let mut rest = Vec::new();
                reader.read_until(b'\n', &mut rest).await?;
                self.reject("an entry larger than 4 MiB");
                continue;
            }
            match serde_json::from_slice::<Map<String, Value>>(&line) {
                Ok(entry) => {
                    counters.received(1);
                    let event = parse::journald::parse(&entry, Utc::now(), &self.parse);
                    counters.count_parsed(&event);
                    batch.push(event);
                    if let Some(c) = parse::journald::cursor(&entry) {
                        last_cursor = Some(c.to_owned());
                    }
                }
                Err(e) => self.reject(&format!("not a JSON entry: {e}")),
            }
            if batch.len() >= BATCH || reader.buffer().is_empty() {
                self.commit(&mut batch, last_cursor.take()).await?;
            }
        }
        self.commit(&mut batch, last_cursor.take()).await?;
        if let Some(stderr) = stderr.as_mut()
            && !shutdown.is_cancelled()
        {
            let mut text = String::new();
            let _ = stderr.take(4096).read_to_string(&mut text).await;
            if !text.trim().is_empty() {
                tracing::warn!(stderr = text.trim(), "journalctl said");
            }
        }
        Ok(())
    }

    fn reject(&self, why: &str) {
        metrics::counter!(metric::EVENTS_RECEIVED, "source" => SOURCE).increment(1);
        metrics::counter!(metric::EVENTS_REJECTED, "source" => SOURCE).increment(1);
        tracing::warn!(why, "journal entry skipped");
    }

    /// Commits `batch` with the cursor of its last entry.
    async fn commit(
        &self,
        batch: &mut Vec<crate::model::Event>,
        cursor: Option<String>,
    ) -> std::io::Result<()> {
        if batch.is_empty() && cursor.is_none() {
            return Ok(());
        }
        let checkpoint = cursor.map(|c| Checkpoint {
            key: CHECKPOINT_KEY.to_owned(),
            value: c.into_bytes(),
        });
        let n = batch.len();
        // Provenance from the configuration only (`ingest.journald.trusted`).
        for event in batch.iter_mut() {
            event.trusted = self.config.trusted;
        }
        let committed = match self
            .writer
            .submit_with(std::mem::take(batch), checkpoint)
            .await
        {
            Ok(pending) => matches!(pending.await, Ok(Ok(_))),
            Err(_) => false,
        };
        if committed {
            Ok(())
        } else {
            // journalctl is started again from the last committed cursor.
            Err(std::io::Error::other(format!(
                "the store did not commit {n} journal entries; reading them again"
            )))
        }
    }
}
