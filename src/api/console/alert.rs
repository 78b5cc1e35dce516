//! One alert: what raised it, its history, the events behind it and those
//! around it, and what an analyst may do with it (triage, block its
//! source).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::session::Analyst;
use super::{Console, Frame, problem, render};
use crate::auth::{CanRead, CanTriage};
use crate::model::{Alert, Event};
use crate::store::index::SearchQuery;

/// Related events shown: the same source address (or host) an hour
/// either side of the alert's last firing.
const RELATED: usize = 20;
const AROUND: chrono::Duration = chrono::Duration::hours(1);

/// An event as a row.
pub struct EventRow {
    pub time: String,
    pub host: String,
    pub source: String,
    pub user: String,
    pub message: String,
}

impl From<Event> for EventRow {
    fn from(e: Event) -> EventRow {
        EventRow {
            time: e.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
            host: e.host_name.unwrap_or_default(),
            source: e.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            user: e.user_name.unwrap_or_default(),
            message: e.original.unwrap_or(e.message),
        }
    }
}

/// A tag, linked to MITRE ATT&CK when it names a technique.
pub struct Tag {
    pub text: String,
    pub href: Option<String>,
}

/// `attack.t1110.001` → its ATT&CK page; other tags as they are.
fn tag(text: &str) -> Tag {
    let technique = text.strip_prefix("attack.t").filter(|rest| {
        rest.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    let href = technique.map(|t| {
        let mut parts = t.split('.');
        let main = parts.next().unwrap_or_default();
        match parts.next() {
            Some(sub) => format!("https://attack.mitre.org/techniques/T{main}/{sub}/"),
            None => format!("https://attack.mitre.org/techniques/T{main}/"),
        }
    });
    Tag {
        text: text.to_owned(),
        href,
    }
}

/// One entry of the history.
pub struct Change {
    pub at: String,
    pub actor: String,
    pub action: &'static str,
    pub status: &'static str,
    pub assignee: String,
    pub comment: String,
}

#[derive(Template)]
#[template(path = "console/alert.html")]
struct AlertPage {
    frame: Frame,
    id: u64,
    title: String,
    rule_id: String,
    severity: String,
    status: &'static str,
    count: u64,
    first_seen: String,
    last_seen: String,
    assignee: String,
    trusted: bool,
    correlation: bool,
    group_key: Vec<(String, String)>,
    tags: Vec<Tag>,
    history: Vec<Change>,
    events: Vec<EventRow>,
    related: Vec<EventRow>,
    /// What the related events are: `source.ip:"…"` or `host.name:"…"`.
    related_query: String,
    /// The events around it, in search.
    in_search: String,
    can_triage: bool,
    /// The address a block would take, when the alert has one and active
    /// response is on.
    block_ip: Option<String>,
    here: String,
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub async fn page(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Path(id): Path<String>,
) -> Response {
    let _read: CanRead = match analyst.grant() {
        Ok(cap) => cap,
        Err(denied) => return problem(StatusCode::FORBIDDEN, &denied.to_string()),
    };
    let Ok(id) = id.parse::<u64>() else {
        return problem(StatusCode::NOT_FOUND, "no such alert");
    };
    let api = console.api.clone();
    let loaded = tokio::task::spawn_blocking(move || load(&api, id)).await;
    let (alert, events, related, related_query) = match loaded {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => return problem(StatusCode::NOT_FOUND, &format!("no alert {id}")),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the console cannot read an alert");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the alert cannot be read right now",
            );
        }
        Err(_) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the alert cannot be read",
            );
        }
    };
    let block_ip = alert
        .key_value("source.ip")
        .filter(|_| console.api.firewall.is_some())
        .map(str::to_owned);
    let page = AlertPage {
        can_triage: analyst.may::<CanTriage>(),
        frame: Frame::new(&analyst, "alerts"),
        id: alert.id,
        title: alert.rule_title.clone(),
        rule_id: alert.rule_id.clone(),
        severity: alert.severity.clone(),
        status: alert.status.as_str(),
        count: alert.count,
        first_seen: when(alert.first_seen),
        last_seen: when(alert.last_seen),
        assignee: alert.assignee.clone().unwrap_or_default(),
        trusted: alert.trusted,
        correlation: alert.correlation,
        group_key: alert.group_key.clone(),
        tags: alert.tags.iter().map(|t| tag(t)).collect(),
        history: alert
            .history
            .iter()
            .rev()
            .map(|c| Change {
                at: when(c.at),
                actor: c.actor.clone(),
                action: c.action.as_str(),
                status: c.status.as_str(),
                assignee: c.assignee.clone().unwrap_or_default(),
                comment: c.comment.clone().unwrap_or_default(),
            })
            .collect(),
        events: events.into_iter().map(EventRow::from).collect(),
        related: related.into_iter().map(EventRow::from).collect(),
        in_search: format!(
            "/ui/search?{}",
            super::search::link(
                Some(&related_query),
                alert.first_seen - AROUND,
                alert.last_seen + AROUND
            )
        ),
        related_query,
        block_ip,
        here: format!("/ui/alerts/{id}"),
    };
    render(StatusCode::OK, &page)
}

type Loaded = (Alert, Vec<Event>, Vec<Event>, String);

/// The alert, its events, and the events around it (blocking).
fn load(api: &crate::api::ApiState, id: u64) -> Result<Option<Loaded>, String> {
    let Some(alert) = api.store.alert(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut events = api
        .store
        .get_many(&alert.events)
        .map_err(|e| e.to_string())?;
    events.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(b.seq.cmp(&a.seq)));
    let related_query = ["source.ip", "host.name"]
        .iter()
        .find_map(|field| {
            alert.key_value(field).map(|v| {
                format!(
                    "{field}:\"{}\"",
                    v.replace('\\', "\\\\").replace('"', "\\\"")
                )
            })
        })
        .unwrap_or_default();
    let related = if related_query.is_empty() {
        Vec::new()
    } else {
        let page = api
            .index
            .search(&SearchQuery {
                text: Some(related_query.clone()),
                from: Some(alert.first_seen - AROUND),
                to: Some(alert.last_seen + AROUND),
                after: None,
                limit: RELATED,
            })
            .map_err(|e| e.to_string())?;
        api.store.get_many(&page.seqs).map_err(|e| e.to_string())?
    };
    Ok(Some((alert, events, related, related_query)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn techniques_link_to_attack() {
        assert_eq!(
            tag("attack.t1110").href.as_deref(),
            Some("https://attack.mitre.org/techniques/T1110/")
        );
        assert_eq!(
            tag("attack.t1110.001").href.as_deref(),
            Some("https://attack.mitre.org/techniques/T1110/001/")
        );
        assert!(tag("attack.credential_access").href.is_none());
        assert!(tag("attack.t1110.x/../../evil").href.is_none());
        assert!(tag("cve.2024.1").href.is_none());
    }
}
