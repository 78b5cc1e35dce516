//! Alerts: `alerts` (Relay connection, newest first, filtered) and
//! `alert(id)` with the events behind it.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, ID, Json, Object};
use chrono::{DateTime, Utc};

use super::events::EventNode;
use super::{blocking, coded, grant, internal};
use crate::auth::CanRead;
use crate::model::{Alert, AlertAction, AlertChange, AlertStatus};
use crate::store::alerts::AlertFilter;

#[derive(Default)]
pub struct AlertsQuery;

/// The alert lifecycle: open -> acknowledged -> resolved | false_positive.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "AlertStatus", remote = "AlertStatus")]
pub enum Status {
    Open,
    Acknowledged,
    Resolved,
    FalsePositive,
}

/// A rule's level, in increasing order.
#[derive(Enum, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub(super) fn parse(s: &str) -> Severity {
        match s {
            "informational" => Severity::Informational,
            "low" => Severity::Low,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => Severity::Medium,
        }
    }
}

pub type AlertConnection = Connection<String, AlertNode, EmptyFields, EmptyFields>;

/// The events an alert's `events` counts for in the query cost: a typical
/// alert's, not the 100 it may link (a page of 1000 alerts with their
/// events would be refused outright). What they are in fact is taken from
/// the request's item budget (`api.max_items_per_request`) as they load.
const LINKED_EVENTS_COST: usize = 10;

#[Object]
impl AlertsQuery {
    /// Alerts, newest first. `from`/`to` bound `lastSeen` (`to` exclusive).
    #[allow(clippy::too_many_arguments)]
    #[graphql(
        complexity = "super::cost(first, super::DEFAULT_PAGE, super::MAX_PAGE, child_complexity)"
    )]
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        status: Option<Status>,
        severity: Option<Severity>,
        rule_id: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(validator(minimum = 0))] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AlertConnection> {
        let _read: CanRead = grant(ctx)?;
        let state = super::state(ctx)?;
        let limit = super::page(ctx, first)?;
        let before = match after {
            Some(cursor) => Some(
                cursor
                    .parse::<u64>()
                    .map_err(|_| coded("BAD_REQUEST", "`after` is not a cursor from this API"))?,
            ),
            None => None,
        };
        let filter = AlertFilter {
            status: status.map(Into::into),
            severity: severity.map(|s| s.as_str().to_owned()),
            rule_id,
            from,
            to,
            ..AlertFilter::default()
        };
        let (alerts, more) =
            blocking(move || state.store.alerts(&filter, before, limit).map_err(internal)).await?;
        let mut connection = Connection::new(before.is_some(), more);
        connection.edges.extend(
            alerts
                .into_iter()
                .map(|a| Edge::new(a.id.to_string(), AlertNode(a))),
        );
        Ok(connection)
    }

    /// One alert by id.
    async fn alert(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<AlertNode>> {
        let _read: CanRead = grant(ctx)?;
        let state = super::state(ctx)?;
        let id = parse_id(&id)?;
        let alert = blocking(move || state.store.alert(id).map_err(internal)).await?;
        Ok(alert.map(AlertNode))
    }
}

pub fn parse_id(id: &ID) -> async_graphql::Result<u64> {
    id.parse::<u64>().map_err(|_| {
        coded(
            "BAD_REQUEST",
            format!("`{}` is not an alert id", id.as_str()),
        )
    })
}

pub struct AlertNode(pub Alert);

#[Object(name = "Alert")]
impl AlertNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn rule_id(&self) -> &str {
        &self.0.rule_id
    }
    async fn rule_title(&self) -> &str {
        &self.0.rule_title
    }
    async fn severity(&self) -> Severity {
        Severity::parse(&self.0.severity)
    }
    async fn status(&self) -> Status {
        self.0.status.into()
    }
    /// Whether every event of its latest firing came from a trusted source:
    /// active response acts only on trusted firings (docs/RESPONSE.md).
    async fn trusted(&self) -> bool {
        self.0.trusted
    }
    /// How many times the rule fired for this group.
    async fn count(&self) -> u64 {
        self.0.count
    }
    /// Event time of the first firing.
    async fn first_seen(&self) -> DateTime<Utc> {
        self.0.first_seen
    }
    /// Event time of the latest firing.
    async fn last_seen(&self) -> DateTime<Utc> {
        self.0.last_seen
    }
    /// What the alert is grouped by (field name -> value).
    async fn group_key(&self) -> Json<std::collections::BTreeMap<String, String>> {
        Json(self.0.group_key.iter().cloned().collect())
    }
    async fn host_name(&self) -> Option<&str> {
        self.0.key_value("host.name")
    }
    async fn source_ip(&self) -> Option<&str> {
        self.0.key_value("source.ip")
    }
    async fn user_name(&self) -> Option<&str> {
        self.0.key_value("user.name")
    }
    /// Raised by a correlation rule (a count, a sequence) rather than one event.
    async fn correlation(&self) -> bool {
        self.0.correlation
    }
    /// The rule's tags (MITRE ATT&CK).
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn assignee(&self) -> Option<&str> {
        self.0.assignee.as_deref()
    }
    /// What analysts did to it, oldest first.
    async fn history(&self) -> Vec<AlertChangeNode<'_>> {
        self.0.history.iter().map(AlertChangeNode).collect()
    }
    /// The history's comments (with a status change or on their own).
    async fn comments(&self) -> Vec<AlertChangeNode<'_>> {
        self.0
            .history
            .iter()
            .filter(|c| c.comment.is_some())
            .map(AlertChangeNode)
            .collect()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// An `events` query (with `from: firstSeen`, `to` just after
    /// `lastSeen`) that finds every event of the group, beyond the newest
    /// ones linked here.
    async fn events_query(&self) -> String {
        self.0.events_query()
    }
    /// The newest events behind the alert (at most 100 are linked).
    #[graphql(
        complexity = "super::cost(None, LINKED_EVENTS_COST, crate::model::MAX_LINKED_EVENTS, child_complexity)"
    )]
    async fn events(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<EventNode>> {
        let state = super::state(ctx)?;
        super::take(ctx, self.0.events.len())?;
        let seqs = self.0.events.clone();
        let events = blocking(move || state.store.get_many(&seqs).map_err(internal)).await?;
        Ok(events.into_iter().map(EventNode).collect())
    }
}

/// What an analyst did.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "AlertAction", remote = "AlertAction")]
pub enum Action {
    Acknowledge,
    Resolve,
    MarkFalsePositive,
    Reopen,
    Assign,
    Comment,
}

pub struct AlertChangeNode<'a>(&'a AlertChange);

/// One entry of an alert's history.
#[Object(name = "AlertChange")]
impl AlertChangeNode<'_> {
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// Who made the change.
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    async fn action(&self) -> Action {
        self.0.action.into()
    }
    /// The status after the change.
    async fn status(&self) -> Status {
        self.0.status.into()
    }
    /// The assignee after an assignment.
    async fn assignee(&self) -> Option<&str> {
        self.0.assignee.as_deref()
    }
    async fn comment(&self) -> Option<&str> {
        self.0.comment.as_deref()
    }
}
