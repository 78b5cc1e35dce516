//! Decisions: the blocked source addresses (readers), blocking one or
//! lifting a block early (analysts). Each change is audited.

use std::net::IpAddr;

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{blocking, coded, grant, internal};
use crate::auth::{CanRead, CanTriage, Capability};
use crate::respond::{BlockRefused, Firewall, Origin};
use crate::store::decisions::{BlockError, Decision};

#[derive(Default)]
pub struct DecisionsQuery;

#[derive(Default)]
pub struct DecisionsMutation;

/// A block of one source address.
#[derive(SimpleObject)]
#[graphql(name = "Decision")]
pub struct DecisionNode {
    ip: String,
    reason: String,
    /// `alert` (a response action) or `manual`.
    origin: String,
    alert_id: Option<u64>,
    /// The action or the analyst.
    by: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    active: bool,
    /// The how-many-th block of this address (each doubles the length).
    offence: u64,
}

impl From<Decision> for DecisionNode {
    fn from(d: Decision) -> Self {
        DecisionNode {
            active: d.active(Utc::now()),
            ip: d.ip.to_string(),
            reason: d.reason,
            origin: d.origin,
            alert_id: d.alert_id,
            by: d.by,
            created_at: d.created_at,
            expires_at: d.expires_at,
            offence: d.offence,
        }
    }
}

fn parse_ip(ip: &str) -> async_graphql::Result<IpAddr> {
    ip.parse()
        .map_err(|_| coded("BAD_REQUEST", format!("`{ip}` is not an IP address")))
}

fn firewall(ctx: &Context<'_>) -> async_graphql::Result<std::sync::Arc<Firewall>> {
    super::state(ctx)?.firewall.clone().ok_or_else(|| {
        coded(
            "NOT_CONFIGURED",
            "active response is off: set response.enabled (docs/RESPONSE.md)",
        )
    })
}

#[Object]
impl DecisionsQuery {
    /// Blocks, newest first: only those in force unless `activeOnly: false`;
    /// the `first` of them (50 by default, at most 1000).
    #[graphql(
        complexity = "super::cost(first, super::DEFAULT_PAGE, super::MAX_PAGE, child_complexity)"
    )]
    async fn decisions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = true)] active_only: bool,
        #[graphql(validator(minimum = 0))] first: Option<i32>,
    ) -> async_graphql::Result<Vec<DecisionNode>> {
        let _read: CanRead = grant(ctx)?;
        let limit = super::page(ctx, first)?;
        let state = super::state(ctx)?;
        let mut all =
            blocking(move || state.store.decisions(active_only).map_err(internal)).await?;
        all.truncate(limit);
        Ok(all.into_iter().map(Into::into).collect())
    }
}

#[Object]
impl DecisionsMutation {
    /// Blocks `ip` for `durationSeconds` (doubled for each earlier block of
    /// it, up to `response.max_block_duration`). Never blocked
    /// (`PROTECTED_ADDRESS`): loopback, link-local, unspecified, multicast
    /// and broadcast addresses, the node's own, `auth.trusted_proxies` and
    /// `response.allow`. In a dry run nothing is blocked (`DRY_RUN`, saying
    /// what would have been).
    async fn add_decision(
        &self,
        ctx: &Context<'_>,
        ip: String,
        reason: String,
        #[graphql(default = 3600, validator(minimum = 1))] duration_seconds: i64,
    ) -> async_graphql::Result<DecisionNode> {
        let cap: CanTriage = grant(ctx)?;
        let ip = parse_ip(&ip)?;
        let fw = firewall(ctx)?;
        let duration = chrono::Duration::seconds(duration_seconds);
        match fw
            .block(cap.actor(), ip, &reason, Origin::Manual, duration)
            .await
        {
            Ok(b) if b.dry_run => Err(coded(
                "DRY_RUN",
                format!(
                    "response.dry_run is on: nothing was blocked; a real run would block {} until {} (offence {})",
                    b.decision.ip, b.decision.expires_at, b.decision.offence
                ),
            )),
            Ok(b) => Ok(b.decision.into()),
            Err(e @ BlockRefused::Protected { .. }) => {
                Err(coded("PROTECTED_ADDRESS", e.to_string()))
            }
            Err(
                e @ BlockRefused::Block(
                    BlockError::Active(..) | BlockError::Full(_) | BlockError::FullUntrusted(_),
                ),
            ) => Err(coded("CONFLICT", e.to_string())),
            Err(BlockRefused::Apply(e)) => Err(coded(
                "UNAVAILABLE",
                format!("recorded, but the firewall refused it (applied at the next start): {e}"),
            )),
            Err(e) => Err(internal(e)),
        }
    }

    /// Lifts the block of `ip` now; false when none was in force.
    async fn delete_decision(&self, ctx: &Context<'_>, ip: String) -> async_graphql::Result<bool> {
        let cap: CanTriage = grant(ctx)?;
        let ip = parse_ip(&ip)?;
        let fw = firewall(ctx)?;
        let ended = fw.unblock(cap.actor(), ip).await.map_err(internal)?;
        Ok(ended.is_some())
    }
}
