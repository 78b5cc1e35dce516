//! The alert queue: filters, counts per status, paging, and triage of
//! many alerts in one all-or-none change.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::session::{self, Analyst};
use super::{Console, Frame, problem, render};
use crate::api::graphql::triage::{MAX_BULK, MAX_COMMENT};
use crate::auth::{CanRead, CanTriage, Capability};
use crate::model::{Alert, AlertAction, AlertChange, AlertStatus};
use crate::store::alerts::{AlertFilter, AlertOrder, ChangeError, Paging};

/// Alerts on one page.
const PAGE: usize = 50;
/// Longest filter value read.
const MAX_FILTER: usize = 256;

const STATUSES: [(&str, &str); 4] = [
    ("open", "Open"),
    ("acknowledged", "Acknowledged"),
    ("resolved", "Resolved"),
    ("false_positive", "False positive"),
];
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "informational"];
/// Orders of the queue: (value, label, order).
const SORTS: [(&str, &str, AlertOrder); 4] = [
    ("newest", "Newest", AlertOrder::Newest),
    ("last_seen", "Last seen", AlertOrder::LastSeen),
    ("severity", "Severity", AlertOrder::Severity),
    ("count", "Most events", AlertOrder::Count),
];

/// How the queue's caption says its order.
fn order_words(order: AlertOrder) -> &'static str {
    match order {
        AlertOrder::Newest => "the newest first",
        AlertOrder::LastSeen => "the last seen first",
        AlertOrder::Severity => "the most severe first",
        AlertOrder::Count => "those with the most events first",
    }
}
/// Time presets of `lastSeen`: (value, label, span).
const RANGES: [(&str, &str, Option<i64>); 5] = [
    ("1h", "Last hour", Some(3600)),
    ("24h", "Last 24 hours", Some(86_400)),
    ("7d", "Last 7 days", Some(7 * 86_400)),
    ("30d", "Last 30 days", Some(30 * 86_400)),
    ("all", "Any time", None),
];

/// The queue's query string: the whole state of the page, so a view can
/// be bookmarked and shared.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    range: Option<String>,
    /// `newest` (the default), `last_seen`, `severity` or `count`.
    #[serde(default)]
    sort: Option<String>,
    /// Alerts older than this id (the next page, newest first).
    #[serde(default)]
    before: Option<u64>,
    /// Alerts after this many (the next page, in the other orders).
    #[serde(default)]
    offset: Option<usize>,
    /// What the last triage did (`<n>-<action>`), shown once.
    #[serde(default)]
    done: Option<String>,
}

/// A filter value: trimmed, empty as none, cut at [`MAX_FILTER`] bytes.
fn value(v: &Option<String>) -> Option<String> {
    let v = v.as_deref()?.trim();
    if v.is_empty() {
        return None;
    }
    let mut end = v.len().min(MAX_FILTER);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    Some(v[..end].to_owned())
}

impl Filters {
    fn status(&self) -> Option<AlertStatus> {
        match self.status.as_deref() {
            None | Some("") => Some(AlertStatus::Open),
            Some("open") => Some(AlertStatus::Open),
            Some("acknowledged") => Some(AlertStatus::Acknowledged),
            Some("resolved") => Some(AlertStatus::Resolved),
            Some("false_positive") => Some(AlertStatus::FalsePositive),
            Some(_) => None,
        }
    }

    /// The order asked, or newest first.
    fn sort(&self) -> (&'static str, AlertOrder) {
        SORTS
            .iter()
            .find(|(v, _, _)| Some(*v) == self.sort.as_deref())
            .map_or(("newest", AlertOrder::Newest), |(v, _, o)| (*v, *o))
    }

    /// The page asked.
    fn page(&self) -> Paging {
        match self.sort().1 {
            AlertOrder::Newest => Paging::Newest {
                before: self.before,
            },
            order => Paging::Sorted {
                order,
                offset: self.offset.unwrap_or(0),
            },
        }
    }

    /// This page's paging parameter, for links back to it.
    fn paging(&self) -> Option<String> {
        match self.page() {
            Paging::Newest { before } => before.map(|b| format!("before={b}")),
            Paging::Sorted { offset, .. } => (offset > 0).then(|| format!("offset={offset}")),
        }
    }

    fn range(&self) -> &'static str {
        RANGES
            .iter()
            .find(|(v, _, _)| Some(*v) == self.range.as_deref())
            .map_or("all", |(v, _, _)| v)
    }

    fn filter(&self, now: DateTime<Utc>) -> AlertFilter {
        let span = RANGES
            .iter()
            .find(|(v, _, _)| *v == self.range())
            .and_then(|(_, _, span)| *span);
        AlertFilter {
            status: self.status(),
            severity: value(&self.severity).filter(|s| SEVERITIES.contains(&s.as_str())),
            rule_id: value(&self.rule),
            from: span.map(|s| now - chrono::Duration::seconds(s)),
            to: None,
            host: value(&self.host),
            source_ip: value(&self.source),
            assignee: value(&self.assignee),
        }
    }

    /// The query string of these filters (no paging), for links.
    fn query(&self, status: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        let status = status.map(str::to_owned).or_else(|| self.status.clone());
        for (key, v) in [
            ("status", status),
            ("severity", value(&self.severity)),
            ("rule", value(&self.rule)),
            ("host", value(&self.host)),
            ("source", value(&self.source)),
            ("assignee", value(&self.assignee)),
            ("range", self.range.clone()),
            (
                "sort",
                Some(self.sort().0)
                    .filter(|s| *s != "newest")
                    .map(str::to_owned),
            ),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                q.append_pair(key, &v);
            }
        }
        q.finish()
    }
}

/// One row of the queue, as shown.
pub struct Row {
    id: u64,
    severity: String,
    title: String,
    rule_id: String,
    host: String,
    source: String,
    user: String,
    count: u64,
    last_seen: String,
    status: &'static str,
    assignee: String,
    trusted: bool,
}

impl From<Alert> for Row {
    fn from(a: Alert) -> Row {
        let key = |name| a.key_value(name).unwrap_or_default().to_owned();
        Row {
            id: a.id,
            severity: a.severity.clone(),
            host: key("host.name"),
            source: key("source.ip"),
            user: key("user.name"),
            title: a.rule_title,
            rule_id: a.rule_id,
            count: a.count,
            last_seen: a.last_seen.format("%Y-%m-%d %H:%M:%S").to_string(),
            status: a.status.as_str(),
            assignee: a.assignee.unwrap_or_default(),
            trusted: a.trusted,
        }
    }
}

/// A status tab: its value, label, count, link.
pub struct Tab {
    value: &'static str,
    label: &'static str,
    count: u64,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "console/alerts.html")]
struct QueuePage {
    frame: Frame,
    tabs: Vec<Tab>,
    rows: Vec<Row>,
    /// The link to the next page.
    next: Option<String>,
    /// The link to the first page, when not on it.
    first: Option<String>,
    rule: String,
    host: String,
    source: String,
    assignee: String,
    status: String,
    /// (value, label, selected).
    ranges: Vec<(&'static str, &'static str, bool)>,
    /// (value, selected).
    severities: Vec<(&'static str, bool)>,
    /// (value, label, selected).
    sorts: Vec<(&'static str, &'static str, bool)>,
    /// The order, in words.
    order: &'static str,
    can_triage: bool,
    /// This page's URL, where a triage comes back to.
    here: String,
    done: Option<String>,
}

pub async fn queue(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Query(filters): Query<Filters>,
) -> Response {
    let _read: CanRead = match analyst.grant() {
        Ok(cap) => cap,
        Err(denied) => return problem(StatusCode::FORBIDDEN, &denied.to_string()),
    };
    let filter = filters.filter(Utc::now());
    let page = filters.page();
    let store = console.api.store.clone();
    let queue =
        match tokio::task::spawn_blocking(move || store.alert_queue(&filter, page, PAGE)).await {
            Ok(Ok(queue)) => queue,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the console's alert queue cannot be read");
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the alerts cannot be read right now",
                );
            }
            Err(_) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the alerts cannot be read",
                );
            }
        };
    let status = filters.status().map_or("any", AlertStatus::as_str);
    let mut tabs: Vec<Tab> = STATUSES
        .iter()
        .map(|(value, label)| Tab {
            value,
            label,
            count: queue.counts.get(value).copied().unwrap_or(0),
            href: format!("/ui/alerts?{}", filters.query(Some(value))),
            current: status == *value,
        })
        .collect();
    tabs.push(Tab {
        value: "any",
        label: "All",
        count: queue.counts.values().sum(),
        href: format!("/ui/alerts?{}", filters.query(Some("any"))),
        current: status == "any",
    });
    let base = filters.query(None);
    let next = match page {
        _ if !queue.more => None,
        Paging::Newest { .. } => queue
            .alerts
            .last()
            .map(|a| format!("/ui/alerts?{base}&before={}", a.id)),
        Paging::Sorted { offset, .. } => Some(format!(
            "/ui/alerts?{base}&offset={}",
            offset.saturating_add(PAGE)
        )),
    };
    let paging = filters.paging();
    let here = match &paging {
        Some(paging) => format!("/ui/alerts?{base}&{paging}"),
        None => format!("/ui/alerts?{base}"),
    };
    let severity = value(&filters.severity).unwrap_or_default();
    let range = filters.range();
    let page = QueuePage {
        can_triage: analyst.may::<CanTriage>(),
        frame: Frame::new(&analyst, "alerts"),
        tabs,
        rows: queue.alerts.into_iter().map(Row::from).collect(),
        next,
        first: paging.map(|_| format!("/ui/alerts?{base}")),
        sorts: SORTS
            .iter()
            .map(|(v, l, _)| (*v, *l, *v == filters.sort().0))
            .collect(),
        order: order_words(filters.sort().1),
        severities: SEVERITIES.iter().map(|s| (*s, *s == severity)).collect(),
        ranges: RANGES
            .iter()
            .map(|(v, l, _)| (*v, *l, *v == range))
            .collect(),
        rule: value(&filters.rule).unwrap_or_default(),
        host: value(&filters.host).unwrap_or_default(),
        source: value(&filters.source).unwrap_or_default(),
        assignee: value(&filters.assignee).unwrap_or_default(),
        status: status.to_owned(),
        here,
        done: value(&filters.done).and_then(|d| done_message(&d)),
    };
    render(StatusCode::OK, &page)
}

/// What `done=<n>-<action>` says, in words (nothing else is shown).
fn done_message(done: &str) -> Option<String> {
    let (n, action) = done.split_once('-')?;
    let n: usize = n.parse().ok()?;
    let (_, past) = ACTIONS.iter().find(|(a, _)| *a == action)?.1;
    let noun = if n == 1 { "alert" } else { "alerts" };
    Some(format!("{n} {noun} {past}."))
}

/// The triage actions a form may ask: (name, (action, past tense)).
const ACTIONS: [(&str, (AlertAction, &str)); 6] = [
    ("acknowledge", (AlertAction::Acknowledge, "acknowledged")),
    ("resolve", (AlertAction::Resolve, "resolved")),
    (
        "false_positive",
        (AlertAction::MarkFalsePositive, "marked false positive"),
    ),
    ("reopen", (AlertAction::Reopen, "reopened")),
    ("assign", (AlertAction::Assign, "assigned")),
    ("comment", (AlertAction::Comment, "commented")),
];

/// `POST /ui/alerts/triage`: the selected alerts (`id`, repeated) all
/// change, or none; then back to the page it came from.
pub async fn triage(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ids = Vec::new();
    let (mut csrf, mut action, mut comment, mut assignee, mut back) =
        (None, None, None, None, None);
    for (key, v) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "id" if ids.len() <= MAX_BULK => ids.push(v.into_owned()),
            "csrf" => csrf = Some(v.into_owned()),
            "action" => action = Some(v.into_owned()),
            "comment" => comment = Some(v.into_owned()),
            "assignee" => assignee = Some(v.into_owned()),
            "back" => back = Some(v.into_owned()),
            _ => {}
        }
    }
    if !session::check_csrf(&headers, &analyst, csrf.as_deref()) {
        return super::csrf_refused();
    }
    let cap: CanTriage = match analyst.grant() {
        Ok(cap) => cap,
        Err(denied) => return problem(StatusCode::FORBIDDEN, &denied.to_string()),
    };
    let Some((name, (action, _))) = ACTIONS.iter().find(|(a, _)| Some(*a) == action.as_deref())
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "choose what to do with the selected alerts",
        );
    };
    if ids.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "select at least one alert");
    }
    if ids.len() > MAX_BULK {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_BULK} alerts change at once: select fewer"),
        );
    }
    let Ok(ids) = ids
        .iter()
        .map(|id| id.parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
    else {
        return problem(StatusCode::BAD_REQUEST, "an alert id is not a number");
    };
    if comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT) {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("a comment is at most {MAX_COMMENT} bytes"),
        );
    }
    let mut change = AlertChange::new(cap.actor().name.clone(), *action).with_comment(comment);
    change.assignee = assignee.filter(|a| !a.trim().is_empty());
    let store = console.api.store.clone();
    let n = ids.len();
    let changed =
        tokio::task::spawn_blocking(move || store.change_alerts(&cap, &ids, &change)).await;
    match changed {
        Ok(Ok(alerts)) => {
            for alert in &alerts {
                console.api.live.alert(alert);
            }
        }
        Ok(Err(e @ (ChangeError::NotFound(_) | ChangeError::Invalid { .. }))) => {
            return problem(
                StatusCode::CONFLICT,
                &format!("nothing was changed: {e}. Reload the queue and select again."),
            );
        }
        Ok(Err(ChangeError::Store(e))) => {
            tracing::error!(error = %e, "a console triage was not stored");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "nothing was changed: the store refused it",
            );
        }
        Err(_) => return problem(StatusCode::INTERNAL_SERVER_ERROR, "nothing was changed"),
    }
    let back = back
        .filter(|b| b.starts_with("/ui/alerts") && !b.contains("//"))
        .unwrap_or_else(|| "/ui/alerts".to_owned());
    let joiner = if back.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{back}{joiner}done={n}-{name}")).into_response()
}

/// Most live queues open at once on this node.
pub const MAX_LIVE: usize = 256;

/// `GET /ui/alerts/live`: server-sent events, one `alert` per raised or
/// changed alert (`{id, status, count, new}`), until the page closes or the
/// node stops. A reader too slow for the feed skips what it missed (the
/// next reload shows it).
pub async fn live(State(console): State<Arc<Console>>, analyst: Analyst) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let _read: CanRead = match analyst.grant() {
        Ok(cap) => cap,
        Err(denied) => return problem(StatusCode::FORBIDDEN, &denied.to_string()),
    };
    let Ok(permit) = console.live_streams.clone().try_acquire_owned() else {
        ::metrics::counter!(crate::telemetry::metric::CONSOLE_REFUSED, "code" => "LIVE_FULL")
            .increment(1);
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live queues are open on this node: reload later",
        );
    };
    let alerts = console.api.live.subscribe_alerts();
    let shutdown = console.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (alerts, shutdown, permit),
        |(mut alerts, shutdown, permit)| async move {
            loop {
                let received = tokio::select! {
                    received = alerts.recv() => received,
                    () = shutdown.cancelled() => return None,
                };
                match received {
                    Ok(alert) => {
                        let data = serde_json::json!({
                            "id": alert.id,
                            "status": alert.status.as_str(),
                            "count": alert.count,
                            "new": alert.count == 1 && alert.history.is_empty(),
                        });
                        let event = Event::default().event("alert").data(data.to_string());
                        return Some((
                            Ok::<_, std::convert::Infallible>(event),
                            (alerts, shutdown, permit),
                        ));
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
