//! Alert triage: status changes, assignment and comments, each recorded in
//! the alert's history with who and when.

use async_graphql::{Context, ID, Object};

use super::alerts::{AlertNode, Status, parse_id};
use super::{blocking, coded, grant, internal, state};
use crate::auth::{CanTriage, Capability};
use crate::model::{AlertAction, AlertChange, AlertStatus};
use crate::store::alerts::ChangeError;

/// Most alerts one bulk change takes.
pub const MAX_BULK: usize = 1_000;
/// Longest comment, in bytes.
pub const MAX_COMMENT: usize = 10_000;

#[derive(Default)]
pub struct TriageMutation;

#[Object]
impl TriageMutation {
    /// open -> acknowledged.
    async fn acknowledge_alert(
        &self,
        ctx: &Context<'_>,
        id: ID,
        comment: Option<String>,
    ) -> async_graphql::Result<AlertNode> {
        one(ctx, id, AlertAction::Acknowledge, comment, None).await
    }

    /// open | acknowledged -> resolved.
    async fn resolve_alert(
        &self,
        ctx: &Context<'_>,
        id: ID,
        comment: Option<String>,
    ) -> async_graphql::Result<AlertNode> {
        one(ctx, id, AlertAction::Resolve, comment, None).await
    }

    /// open | acknowledged -> false_positive.
    async fn mark_false_positive(
        &self,
        ctx: &Context<'_>,
        id: ID,
        comment: Option<String>,
    ) -> async_graphql::Result<AlertNode> {
        one(ctx, id, AlertAction::MarkFalsePositive, comment, None).await
    }

    /// acknowledged | resolved | false_positive -> open. A reopened alert
    /// counts repeats again while it is its group's latest.
    async fn reopen_alert(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<AlertNode> {
        one(ctx, id, AlertAction::Reopen, None, None).await
    }

    /// Sets the assignee; none unassigns.
    async fn assign_alert(
        &self,
        ctx: &Context<'_>,
        id: ID,
        username: Option<String>,
    ) -> async_graphql::Result<AlertNode> {
        let username = username.filter(|u| !u.is_empty());
        one(ctx, id, AlertAction::Assign, None, username).await
    }

    async fn comment_alert(
        &self,
        ctx: &Context<'_>,
        id: ID,
        text: String,
    ) -> async_graphql::Result<AlertNode> {
        one(ctx, id, AlertAction::Comment, Some(text), None).await
    }

    /// Moves every alert of `ids` to `status` in one transaction: all
    /// change, or none (an unknown id or a transition the lifecycle does
    /// not allow fails the whole request).
    async fn set_alerts_status(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
        status: Status,
        comment: Option<String>,
    ) -> async_graphql::Result<Vec<AlertNode>> {
        if ids.len() > MAX_BULK {
            return Err(coded(
                "BAD_REQUEST",
                format!("at most {MAX_BULK} alerts at once"),
            ));
        }
        let action = match AlertStatus::from(status) {
            AlertStatus::Open => AlertAction::Reopen,
            AlertStatus::Acknowledged => AlertAction::Acknowledge,
            AlertStatus::Resolved => AlertAction::Resolve,
            AlertStatus::FalsePositive => AlertAction::MarkFalsePositive,
        };
        let cap: CanTriage = grant(ctx)?;
        let ids = ids.iter().map(parse_id).collect::<Result<Vec<_>, _>>()?;
        let change = change(&cap, action, comment, None)?;
        apply(ctx, cap, ids, change).await
    }
}

async fn one(
    ctx: &Context<'_>,
    id: ID,
    action: AlertAction,
    comment: Option<String>,
    assignee: Option<String>,
) -> async_graphql::Result<AlertNode> {
    let cap: CanTriage = grant(ctx)?;
    let change = change(&cap, action, comment, assignee)?;
    let mut changed = apply(ctx, cap, vec![parse_id(&id)?], change).await?;
    Ok(changed.remove(0))
}

fn change(
    cap: &CanTriage,
    action: AlertAction,
    comment: Option<String>,
    assignee: Option<String>,
) -> async_graphql::Result<AlertChange> {
    if comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
        return Err(coded(
            "BAD_REQUEST",
            format!("a comment is at most {MAX_COMMENT} bytes"),
        ));
    }
    let mut change = AlertChange::new(cap.actor().name.clone(), action).with_comment(comment);
    change.assignee = assignee;
    Ok(change)
}

async fn apply(
    ctx: &Context<'_>,
    cap: CanTriage,
    ids: Vec<u64>,
    change: AlertChange,
) -> async_graphql::Result<Vec<AlertNode>> {
    let state = state(ctx)?;
    let live = state.live.clone();
    let changed = blocking(move || {
        state
            .store
            .change_alerts(&cap, &ids, &change)
            .map_err(|e| match e {
                ChangeError::NotFound(_) => coded("NOT_FOUND", e.to_string()),
                ChangeError::Invalid { .. } => coded("INVALID_TRANSITION", e.to_string()),
                ChangeError::Store(e) => internal(e),
            })
    })
    .await?;
    for alert in &changed {
        live.alert(alert);
    }
    Ok(changed.into_iter().map(AlertNode).collect())
}
