//! The fleet view: `fleet { nodes alerts rollups }`, read from the central
//! Postgres every node replicates to (a node with `DATABASE_URL` set).

use async_graphql::{Context, Object};
use chrono::{DateTime, Utc};

use super::alerts::{Severity, Status};
use super::{coded, grant};
use crate::auth::CanRead;
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
        let state = super::state(ctx)?;
        let fleet = state.fleet.clone().ok_or_else(|| {
            coded(
                "NOT_CONFIGURED",
                "the fleet view needs the fleet's Postgres: set DATABASE_URL on this node",
            )
        })?;
        Ok(FleetView(fleet))
    }
}

pub struct FleetView(Fleet);

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
