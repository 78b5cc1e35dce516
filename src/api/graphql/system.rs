//! `system`: what this node is and how far its pipeline has got.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_graphql::{Context, Object, SimpleObject};

use super::{blocking, grant, internal};
use crate::api::ApiState;
use crate::auth::CanRead;

#[derive(Default)]
pub struct SystemQuery;

#[derive(SimpleObject)]
pub struct System {
    version: &'static str,
    node_id: String,
    environment: String,
    uptime_seconds: u64,
    /// Events in the store.
    events_stored: u64,
    /// Highest committed sequence number.
    last_seq: u64,
    /// Events stored but not yet searchable.
    index_lag: u64,
}

#[Object]
impl SystemQuery {
    async fn system(&self, ctx: &Context<'_>) -> async_graphql::Result<System> {
        let _read: CanRead = grant(ctx)?;
        snapshot(super::state(ctx)?).await
    }
}

/// The node's status now.
pub async fn snapshot(state: Arc<ApiState>) -> async_graphql::Result<System> {
    let stats = {
        let state = state.clone();
        blocking(move || state.store.stats().map_err(internal)).await?
    };
    let indexed = state.progress.indexed.load(Ordering::Acquire);
    Ok(System {
        version: env!("CARGO_PKG_VERSION"),
        node_id: state.node_id.to_string(),
        environment: state.environment.to_string(),
        uptime_seconds: state.started.elapsed().as_secs(),
        events_stored: stats.events,
        last_seq: stats.last_seq,
        index_lag: stats.last_seq.saturating_sub(indexed),
    })
}
