//! Sources: each turns bytes from the outside into events and submits them
//! to the store's writer, acknowledging the sender only after the commit.

pub mod bulk;
pub mod file;
pub mod gelf;
pub mod http;
pub mod journald;
pub mod syslog;

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::Utc;

use crate::config::Cidr;
use crate::model::Event;
use crate::parse::{self, ParseOptions, RawRecord};
use crate::store::writer::{SubmitError, WriterHandle};
use crate::telemetry::metric;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a request's events were not committed; nothing was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The write queue is full: 429, retry later.
    Busy,
    /// The node is stopping: 503.
    Closed,
    /// The store could not commit (a full disk, say): 503.
    NotCommitted,
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Refused::Busy => StatusCode::TOO_MANY_REQUESTS,
            Refused::Closed | Refused::NotCommitted => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Registers a source's counters at zero when it starts, so a rate or an
/// increase sees its first event, refusal or loss. `lossy`: the source
/// drops what a full queue refuses (datagrams), else it answers 429.
pub fn count_from_zero(source: &'static str, lossy: bool) {
    metrics::counter!(metric::EVENTS_RECEIVED, "source" => source).increment(0);
    metrics::counter!(metric::EVENTS_REJECTED, "source" => source).increment(0);
    if lossy {
        metrics::counter!(metric::EVENTS_DROPPED, "source" => source).increment(0);
    } else {
        metrics::counter!(metric::INGEST_THROTTLED, "source" => source).increment(0);
    }
}

/// Queues `events` without waiting for room, then waits for their commit:
/// how the request/response sources (HTTP ingest, `_bulk`) submit.
pub async fn commit(
    writer: &WriterHandle,
    events: Vec<Event>,
    source: &'static str,
) -> Result<Range<u64>, Refused> {
    let pending = writer.try_submit(events).map_err(|e| match e {
        SubmitError::Full => {
            metrics::counter!(metric::INGEST_THROTTLED, "source" => source).increment(1);
            Refused::Busy
        }
        SubmitError::Closed => Refused::Closed,
    })?;
    match pending.await {
        Ok(Ok(range)) => Ok(range),
        Ok(Err(e)) => {
            tracing::warn!(source, error = %e, "ingest batch not committed");
            Err(Refused::NotCommitted)
        }
        Err(_) => Err(Refused::Closed),
    }
}

/// Parses one framed record received now, counting it as received, parsed
/// (a program parser knew it) and truncated, by source.
pub fn parse_counted(
    bytes: Vec<u8>,
    source: &'static str,
    peer: Option<IpAddr>,
    opts: &ParseOptions,
) -> Event {
    metrics::counter!(metric::EVENTS_RECEIVED, "source" => source).increment(1);
    let raw = RawRecord {
        bytes,
        source,
        peer,
        received_at: Utc::now(),
    };
    let event = parse::parse(&raw, opts);
    count_parsed(&event, source);
    event
}

/// Counts `event` as parsed and truncated where it is, by source.
pub fn count_parsed(event: &Event, source: &'static str) {
    if event.labels.contains_key("truncated") {
        metrics::counter!(metric::EVENTS_TRUNCATED, "source" => source).increment(1);
    }
    if event.dataset.is_some() {
        metrics::counter!(metric::EVENTS_PARSED, "source" => source).increment(1);
    }
}

/// What every unauthenticated listener (syslog, GELF) shares.
pub struct Listener {
    pub writer: WriterHandle,
    pub parse: ParseOptions,
    /// Networks allowed to send; empty means any.
    pub allow: Vec<Cidr>,
    /// The listener's name (`syslog_udp`, `gelf_tcp`, ...): the metric label.
    pub source: &'static str,
}

impl Listener {
    pub fn allowed(&self, peer: SocketAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(peer.ip()))
    }

    pub fn event(&self, bytes: Vec<u8>, peer: SocketAddr) -> Event {
        parse_counted(bytes, self.source, Some(peer.ip()), &self.parse)
    }

    /// Counts a message from a sender outside the allow-list.
    pub fn refuse(&self, peer: SocketAddr) {
        metrics::counter!(metric::EVENTS_RECEIVED, "source" => self.source).increment(1);
        metrics::counter!(metric::EVENTS_REJECTED, "source" => self.source).increment(1);
        tracing::debug!(source = self.source, %peer, "sender not in allow_sources");
    }

    /// Accepts connections until `shutdown`; each allowed one runs
    /// `connection` on its own task (refused senders are counted).
    pub async fn accept<F, Fut>(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        connection: F,
    ) where
        F: Fn(TcpStream, SocketAddr, Arc<Listener>, CancellationToken) -> Fut,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        count_from_zero(self.source, true);
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(source = self.source, error = %e, "accept failed");
                        continue;
                    }
                },
            };
            if !self.allowed(peer) {
                self.refuse(peer);
                continue;
            }
            let source = self.source;
            let done = connection(stream, peer, self.clone(), shutdown.clone());
            tasks.spawn(async move {
                if let Err(e) = done.await {
                    tracing::debug!(source, %peer, error = %e, "connection ended");
                }
            });
        }
    }

    /// Queues `batch` without waiting, for datagram sources that cannot
    /// slow their sender: a full queue drops it, counted.
    pub fn submit_nowait(&self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match self.writer.try_submit(std::mem::take(batch)) {
            // Nobody to acknowledge: the commit outcome is logged by the writer.
            Ok(_) => {}
            Err(SubmitError::Full | SubmitError::Closed) => {
                metrics::counter!(metric::EVENTS_DROPPED, "source" => self.source).increment(n);
            }
        }
    }

    /// Queues `batch` and waits for its commit, for stream sources: the next
    /// read waits, which slows the sender. An error closes the connection.
    pub async fn submit_wait(&self, batch: &mut Vec<Event>) -> std::io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        let committed = match self.writer.submit(std::mem::take(batch)).await {
            Ok(pending) => matches!(pending.await, Ok(Ok(_))),
            Err(_) => false,
        };
        if committed {
            Ok(())
        } else {
            metrics::counter!(metric::EVENTS_DROPPED, "source" => self.source).increment(n);
            // Closing the connection tells the sender to resend (rsyslog does).
            Err(std::io::Error::other(
                "the store did not commit; closing the connection",
            ))
        }
    }
}
