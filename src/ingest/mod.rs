//! Sources: each turns bytes from the outside into events and submits them
//! to the store's writer, acknowledging the sender only after the commit.

pub mod bulk;
pub mod http;
pub mod syslog;

use std::ops::Range;

use axum::http::StatusCode;

use crate::model::Event;
use crate::store::writer::{SubmitError, WriterHandle};
use crate::telemetry::metric;

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
