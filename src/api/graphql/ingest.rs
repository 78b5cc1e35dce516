//! `ingestEvents`: events over GraphQL, for clients that speak nothing
//! else. The same events `/api/v1/ingest` takes; answered after the commit.
//! Like every mutation it is audited (one entry per call): shippers at a
//! high rate belong on `/api/v1/ingest` or `_bulk`.

use async_graphql::{Context, Json, Object, SimpleObject};
use chrono::Utc;

use super::{blocking, coded, grant, internal, state};
use crate::auth::{CanIngest, Capability};
use crate::ingest::{self, Refused};
use crate::model::Event;
use crate::store::audit::Record;
use crate::telemetry::metric;

const SOURCE: &str = "graphql";
/// Most events one call takes.
pub const MAX_EVENTS: usize = 10_000;

#[derive(SimpleObject)]
pub struct IngestResult {
    accepted: usize,
    rejected: usize,
    /// Why each rejected event was refused (at most 100 listed).
    errors: Vec<IngestError>,
}

#[derive(SimpleObject)]
pub struct IngestError {
    /// 1-based position in `events`.
    index: usize,
    reason: String,
}

#[derive(Default)]
pub struct IngestMutation;

#[Object]
impl IngestMutation {
    /// Stores events (JSON objects with ECS-style fields); answers once
    /// they are committed. Invalid events are refused one by one, the rest
    /// stored.
    async fn ingest_events(
        &self,
        ctx: &Context<'_>,
        events: Vec<Json<serde_json::Value>>,
    ) -> async_graphql::Result<IngestResult> {
        let cap: CanIngest = grant(ctx)?;
        if events.len() > MAX_EVENTS {
            return Err(coded(
                "BAD_REQUEST",
                format!("at most {MAX_EVENTS} events at once"),
            ));
        }
        let received_at = Utc::now();
        let mut accepted = ingest::Batch::default();
        let mut errors = Vec::new();
        let mut rejected = 0;
        for (i, Json(value)) in events.into_iter().enumerate() {
            match Event::from_json(value, received_at) {
                Ok(e) => accepted.push(e),
                Err(e) => {
                    rejected += 1;
                    if errors.len() < 100 {
                        errors.push(IngestError {
                            index: i + 1,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        ::metrics::counter!(metric::EVENTS_RECEIVED, "source" => SOURCE)
            .increment((accepted.len() + rejected) as u64);
        ::metrics::counter!(metric::EVENTS_REJECTED, "source" => SOURCE).increment(rejected as u64);
        let count = accepted.len();
        let state = state(ctx)?;
        if count > 0 {
            ingest::commit(&state.writer, accepted, SOURCE)
                .await
                .map_err(|refused| match refused {
                    Refused::Busy => coded("RATE_LIMITED", "the write queue is full: retry later"),
                    Refused::Closed => coded("UNAVAILABLE", "shutting down: retry later"),
                    Refused::NotCommitted => {
                        coded("UNAVAILABLE", "the store cannot commit: retry later")
                    }
                })?;
        }
        let record = Record::new("events.ingest")
            .after(serde_json::json!({ "accepted": count, "rejected": rejected }));
        blocking(move || state.store.audit(cap.actor(), record).map_err(internal)).await?;
        Ok(IngestResult {
            accepted: count,
            rejected,
            errors,
        })
    }
}
