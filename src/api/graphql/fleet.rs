//! The fleet view: `fleet { nodes alerts rollups }`, read from the central
//! Postgres every node replicates to (a node with `DATABASE_URL` set), and
//! `fleet { events eventStats }`, searched on every node (`crate::fanout`).

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::alerts::{Severity, Status};
use super::events::EventNode;
use super::{coded, grant};
use crate::auth::CanRead;
use crate::fanout::{EventSearch, FanOut, NodeAnswer, NodeStatus};
use crate::replicate::postgres::{
    FleetAlert, FleetAlertFilter, FleetNode, FleetRollup, FleetRollupFilter, FleetSource,
};
use crate::replicate::{Fleet, SinkError};

#[derive(Default)]
pub struct FleetQuery;

#[Object]
impl FleetQuery {
    /// The whole fleet as the central database holds it. Needs
    /// `DATABASE_URL` on this node.
    async fn fleet(&self, ctx: &Context<'_>) -> async_graphql::Result<FleetView> {
        let _read: CanRead = grant(ctx)?;
        let session = ctx.data::<crate::api::guard::Session>()?;
        if session.principal.as_ref().is_some_and(|p| {
            p.kind == crate::auth::PrincipalKind::ApiKey
                && p.name == crate::auth::service::FLEET_PRINCIPAL
        }) {
            // A fleet search asks single nodes; one that asked the fleet
            // again would multiply itself.
            return Err(coded(
                "FORBIDDEN",
                "the fleet credential searches this node only, not the fleet",
            ));
        }
        let state = super::state(ctx)?;
        let fleet = state.fleet.clone().ok_or_else(|| {
            coded(
                "NOT_CONFIGURED",
                "the fleet view needs the fleet's Postgres: set DATABASE_URL on this node",
            )
        })?;
        Ok(FleetView(fleet, state.fanout.clone()))
    }
}

pub struct FleetView(Fleet, Option<Arc<FanOut>>);

/// An event of some node, found by a fleet search.
#[derive(SimpleObject)]
pub struct FleetEvent {
    node_id: String,
    hostname: String,
    event: EventNode,
}

/// How one node took part in a fleet search.
#[derive(SimpleObject)]
pub struct FleetSearchNode {
    node_id: String,
    hostname: String,
    status: NodeStatus,
    /// How long it took to answer (or to fail).
    took_ms: u64,
    /// Its events matching the search (`events`; null unless `OK`).
    total_count: Option<u64>,
    /// Why it is not `OK`, in a few words.
    error: Option<String>,
}

impl<T> From<&NodeAnswer<T>> for FleetSearchNode {
    fn from(a: &NodeAnswer<T>) -> FleetSearchNode {
        FleetSearchNode {
            node_id: a.node_id.clone(),
            hostname: a.hostname.clone(),
            status: a.status,
            took_ms: a.took.as_millis() as u64,
            total_count: None,
            error: a.error.clone(),
        }
    }
}

/// A fleet search's answer: what the nodes that answered hold, and each
/// node's part. `partial`: some node did not answer.
#[derive(SimpleObject)]
pub struct FleetEvents {
    /// Newest first, across the nodes.
    events: Vec<FleetEvent>,
    /// Matching events on the nodes that answered.
    total_count: u64,
    partial: bool,
    nodes: Vec<FleetSearchNode>,
}

#[derive(SimpleObject)]
pub struct FleetBucket {
    key: String,
    count: u64,
}

/// Counts summed across the nodes that answered.
#[derive(SimpleObject)]
pub struct FleetStats {
    buckets: Vec<FleetBucket>,
    partial: bool,
    nodes: Vec<FleetSearchNode>,
}

/// Most events one fleet search returns.
const MAX_FLEET_PAGE: usize = 500;

fn fanout(view: &FleetView) -> async_graphql::Result<&FanOut> {
    view.1.as_deref().ok_or_else(|| {
        coded(
            "NOT_CONFIGURED",
            "the fleet search needs the fleet credential: set FLEET_API_KEY (the same on every node) and each node's FLEET_API_URL",
        )
    })
}

fn fleet_unavailable(e: String) -> async_graphql::Error {
    tracing::warn!(error = %e, "fleet search failed");
    coded("UNAVAILABLE", "the fleet database is unavailable")
}

/// Most rows one fleet list returns.
const MAX_ROWS: i32 = 10_000;

fn unavailable(e: SinkError) -> async_graphql::Error {
    tracing::warn!(error = %e, "fleet query failed");
    coded("UNAVAILABLE", "the fleet database is unavailable")
}

fn rows(limit: i32) -> async_graphql::Result<i64> {
    if !(0..=MAX_ROWS).contains(&limit) {
        return Err(coded(
            "BAD_REQUEST",
            format!("`limit` is between 0 and {MAX_ROWS}"),
        ));
    }
    Ok(i64::from(limit))
}

#[Object]
impl FleetView {
    /// Where the fleet lists are read and how old their data may be: the
    /// read replica (`DATABASE_READ_URL`) with its lag, or the primary.
    async fn source(&self) -> FleetSource {
        self.0.source().await
    }

    /// Searches the events of every node (each with this query, as
    /// `events` does on one node), newest first across the fleet. Nodes
    /// that are slow, failing or offline leave their part out: `partial`
    /// and `nodes` say which. Needs `FLEET_API_KEY` on every node.
    #[graphql(complexity = "super::cost(Some(first), 50, MAX_FLEET_PAGE, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(default = 50, validator(minimum = 0, maximum = 500))] first: i32,
    ) -> async_graphql::Result<FleetEvents> {
        let fanout = fanout(self)?;
        let state = super::state(ctx)?;
        super::stats::check_search(&state, query.as_deref())?;
        let first = usize::try_from(first).unwrap_or_default();
        super::take(ctx, first)?;
        let search = EventSearch {
            query,
            from,
            to,
            first,
        };
        let (events, answers) = fanout.events(&search).await.map_err(fleet_unavailable)?;
        let hostnames: std::collections::HashMap<&str, &str> = answers
            .iter()
            .map(|a| (a.node_id.as_str(), a.hostname.as_str()))
            .collect();
        let events = events
            .into_iter()
            .map(|(node_id, event)| FleetEvent {
                hostname: hostnames
                    .get(node_id.as_str())
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                node_id,
                event: EventNode(event),
            })
            .collect();
        let nodes: Vec<FleetSearchNode> = answers
            .iter()
            .map(|a| FleetSearchNode {
                total_count: a.answer.as_ref().map(|page| page.total),
                ..a.into()
            })
            .collect();
        Ok(FleetEvents {
            events,
            total_count: nodes.iter().filter_map(|n| n.total_count).sum(),
            partial: nodes.iter().any(|n| n.status != NodeStatus::Ok),
            nodes,
        })
    }

    /// `eventStats` on every node, the counts summed: the `top` values of
    /// `groupBy` across the fleet, approximate as any distributed terms
    /// count (each node is asked for more than `top`; a value outside one
    /// node's share is missing from its sum). Partial like `events`.
    #[graphql(complexity = "super::cost(top, 10, crate::store::index::MAX_TOP, child_complexity)")]
    async fn event_stats(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        group_by: String,
        #[graphql(validator(minimum = 1, maximum = 1000))] top: Option<i32>,
    ) -> async_graphql::Result<FleetStats> {
        let fanout = fanout(self)?;
        let state = super::state(ctx)?;
        super::stats::check_search(&state, query.as_deref())?;
        let top = top.map_or(crate::store::index::DEFAULT_TOP, |n| {
            usize::try_from(n).unwrap_or(1)
        });
        super::take(ctx, top)?;
        let search = EventSearch {
            query,
            from,
            to,
            first: 0,
        };
        let (buckets, answers) = fanout
            .stats(&search, &group_by, top)
            .await
            .map_err(fleet_unavailable)?;
        let nodes: Vec<FleetSearchNode> = answers.iter().map(Into::into).collect();
        Ok(FleetStats {
            buckets: buckets
                .into_iter()
                .map(|(key, count)| FleetBucket { key, count })
                .collect(),
            partial: nodes.iter().any(|n| n.status != NodeStatus::Ok),
            nodes,
        })
    }

    /// Every node that ever replicated, with its last heartbeat.
    async fn nodes(&self) -> async_graphql::Result<Vec<FleetNode>> {
        self.0.nodes().await.map_err(unavailable)
    }

    /// Alerts of every node, latest `lastSeen` first. `from`/`to` bound
    /// `lastSeen` (`to` exclusive). `offset` is at most 100 000 (Postgres
    /// reads every row it skips).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::cost(Some(limit), 100, MAX_ROWS as usize, child_complexity)")]
    async fn alerts(
        &self,
        node_id: Option<String>,
        status: Option<Status>,
        severity: Option<Severity>,
        rule_id: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(default = 100)] limit: i32,
        #[graphql(default = 0, validator(minimum = 0, maximum = 100_000))] offset: i32,
    ) -> async_graphql::Result<Vec<FleetAlert>> {
        let filter = FleetAlertFilter {
            node_id,
            status: status.map(|s| crate::model::AlertStatus::from(s).as_str().to_owned()),
            severity: severity.map(|s| s.as_str().to_owned()),
            rule_id,
            from,
            to,
        };
        self.0
            .alerts(filter, rows(limit)?, i64::from(offset))
            .await
            .map_err(unavailable)
    }

    /// Hourly event counts of every node in `from..to` (hours, `to`
    /// exclusive), oldest first.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::cost(Some(limit), 1000, MAX_ROWS as usize, child_complexity)")]
    async fn rollups(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        node_id: Option<String>,
        host_name: Option<String>,
        dataset: Option<String>,
        #[graphql(default = 1000)] limit: i32,
    ) -> async_graphql::Result<Vec<FleetRollup>> {
        let filter = FleetRollupFilter {
            from,
            to,
            node_id,
            host_name,
            dataset,
        };
        self.0
            .rollups(filter, rows(limit)?)
            .await
            .map_err(unavailable)
    }
}
