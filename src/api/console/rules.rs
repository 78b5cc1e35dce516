//! Rules: the list (source, level, enabled, hits), enabling and disabling,
//! each rule's YAML in an editor, checked on demand and on save with its
//! problems at their line and column, and a back-test over the last hours
//! that lists what the rule would have raised before it is saved. Reads
//! and changes run the API's own queries and mutations as the analyst
//! ([`Console::graphql`]).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::Analyst;
use super::{Console, Failed, Frame, api_time, posted, problem, render, text};
use crate::auth::{CanEditRules, CanRead};

const LIST: &str = "query($q: String, $source: RuleSource, $enabled: Boolean) {
  rules(query: $q, source: $source, enabled: $enabled, first: 1000) {
    totalCount
    edges { node { id title level kind source enabled file } }
  }
}";
const RULE: &str = "query($id: ID!) {
  rule(id: $id) { id title level kind source file enabled yaml updatedBy updatedAt }
}";
const BACKTEST: &str = "query($yaml: String!, $from: DateTime!, $to: DateTime!) {
  backtestRule(yaml: $yaml, from: $from, to: $to, limit: 100) {
    count eventsScanned complete
    hits { ruleTitle severity timestamp seq message }
  }
}";
const CREATE: &str = "mutation($yaml: String!) { createRule(yaml: $yaml) { id } }";
const UPDATE: &str =
    "mutation($id: ID!, $yaml: String!) { updateRule(id: $id, yaml: $yaml) { id } }";
const ENABLE: &str =
    "mutation($id: ID!, $on: Boolean!) { setRuleEnabled(id: $id, enabled: $on) { id } }";

/// Back-test spans offered: (hours, label).
const SPANS: [(i64, &str); 5] = [
    (1, "the last hour"),
    (6, "the last 6 hours"),
    (24, "the last 24 hours"),
    (24 * 7, "the last 7 days"),
    (24 * 30, "the last 30 days"),
];

/// A new rule's starting point.
const TEMPLATE: &str = "title: A new rule
id: 00000000-0000-4000-8000-000000000000
status: experimental
description: What it finds, and why it matters.
logsource:
    product: linux
    service: sshd
detection:
    keywords:
        - 'Failed password'
    condition: keywords
level: medium
";

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    q: Option<String>,
    /// builtin, file or api.
    #[serde(default)]
    source: Option<String>,
    /// `on` or `off`.
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

struct Row {
    id: String,
    title: String,
    level: String,
    kind: String,
    source: String,
    enabled: bool,
    hits: u64,
}

#[derive(Template)]
#[template(path = "console/rules.html")]
struct ListPage {
    frame: Frame,
    can_edit: bool,
    q: String,
    source: String,
    enabled: String,
    done: Option<&'static str>,
    total: u64,
    rows: Vec<Row>,
}

/// `GET /ui/rules`.
pub async fn list(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Query(p): Query<ListParams>,
) -> Response {
    if let Err(denied) = analyst.grant::<CanRead>() {
        return problem(StatusCode::FORBIDDEN, &denied.to_string());
    }
    let source = p
        .source
        .as_deref()
        .filter(|s| ["builtin", "file", "api"].contains(s));
    let enabled = match p.enabled.as_deref() {
        Some("on") => Some(true),
        Some("off") => Some(false),
        _ => None,
    };
    let q =
        p.q.as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| q.chars().take(256).collect::<String>());
    let variables = json!({"q": q, "source": source.map(str::to_uppercase), "enabled": enabled});
    let data = match console.graphql(&analyst, LIST, variables).await {
        Ok(data) => data,
        Err(failed) => return failed.page(),
    };
    let store = console.api.store.clone();
    let hits = match tokio::task::spawn_blocking(move || store.rule_hits()).await {
        Ok(Ok(hits)) => hits,
        _ => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the rules' hits cannot be read right now",
            );
        }
    };
    let rows = data["rules"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| {
                    let n = &e["node"];
                    let id = text(&n["id"]);
                    Row {
                        hits: hits.get(&id).copied().unwrap_or(0),
                        id,
                        title: text(&n["title"]),
                        level: text(&n["level"]).to_lowercase(),
                        kind: text(&n["kind"]).to_lowercase(),
                        source: text(&n["source"]).to_lowercase(),
                        enabled: n["enabled"] == true,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let page = ListPage {
        frame: Frame::new(&analyst, "rules"),
        can_edit: analyst.may::<CanEditRules>(),
        q: q.unwrap_or_default(),
        source: source.unwrap_or_default().to_owned(),
        enabled: p
            .enabled
            .clone()
            .filter(|e| e == "on" || e == "off")
            .unwrap_or_default(),
        done: match p.done.as_deref() {
            Some("enabled") => Some("The rule is enabled."),
            Some("disabled") => {
                Some("The rule is disabled: it raises nothing until enabled again.")
            }
            _ => None,
        },
        total: data["rules"]["totalCount"].as_u64().unwrap_or(0),
        rows,
    };
    render(StatusCode::OK, &page)
}

/// `POST /ui/rules/enable`: `id`, `enabled` (`true` or `false`).
pub async fn enable(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = posted(&headers, &analyst, &body) else {
        return super::csrf_refused();
    };
    let (Some(id), Some(on)) = (form.get("id"), form.get("enabled").map(|e| e == "true")) else {
        return problem(StatusCode::BAD_REQUEST, "choose a rule");
    };
    match console
        .graphql(&analyst, ENABLE, json!({"id": id, "on": on}))
        .await
    {
        Ok(_) => {
            let done = if on { "enabled" } else { "disabled" };
            Redirect::to(&format!("/ui/rules?done={done}")).into_response()
        }
        Err(failed) => failed.page(),
    }
}

struct Problem {
    line: u64,
    column: u64,
    message: String,
}

struct Hit {
    time: String,
    severity: String,
    title: String,
    message: String,
}

/// What a back-test found.
struct Tested {
    count: u64,
    scanned: u64,
    complete: bool,
    span: &'static str,
    hits: Vec<Hit>,
}

#[derive(Template)]
#[template(path = "console/rule.html")]
struct EditorPage {
    frame: Frame,
    can_edit: bool,
    /// The rule's id when it exists; empty for a new rule.
    id: String,
    title: String,
    facts: Vec<(&'static str, String)>,
    enabled: bool,
    /// Saving replaces it (a rule made over the API); otherwise saving
    /// stores a new rule.
    updates: bool,
    yaml: String,
    hours: i64,
    spans: &'static [(i64, &'static str)],
    error: Option<String>,
    problems: Vec<Problem>,
    tested: Option<Tested>,
    saved: bool,
}

impl EditorPage {
    fn blank(analyst: &Analyst) -> EditorPage {
        EditorPage {
            frame: Frame::new(analyst, "rules"),
            can_edit: analyst.may::<CanEditRules>(),
            id: String::new(),
            title: "A new rule".to_owned(),
            facts: Vec::new(),
            enabled: true,
            updates: false,
            yaml: TEMPLATE.to_owned(),
            hours: 24,
            spans: &SPANS,
            error: None,
            problems: Vec::new(),
            tested: None,
            saved: false,
        }
    }

    /// Shows a refusal of the API on the editor: problems at their lines.
    fn failed(mut self, failed: Failed) -> Response {
        self.problems = failed
            .problems
            .iter()
            .map(|p| Problem {
                line: p["line"].as_u64().unwrap_or(1),
                column: p["column"].as_u64().unwrap_or(1),
                message: text(&p["message"]),
            })
            .collect();
        self.error = Some(failed.message);
        let status = if failed.code == "RULE_INVALID" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            failed.status
        };
        render(status, &self)
    }
}

/// `GET /ui/rules/new`.
pub async fn new(analyst: Analyst) -> Response {
    if let Err(denied) = analyst.grant::<CanEditRules>() {
        return problem(StatusCode::FORBIDDEN, &denied.to_string());
    }
    render(StatusCode::OK, &EditorPage::blank(&analyst))
}

#[derive(Debug, Default, Deserialize)]
pub struct RuleParams {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /ui/rules/<id>`.
pub async fn page(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Path(id): Path<String>,
    Query(p): Query<RuleParams>,
) -> Response {
    let mut page = EditorPage::blank(&analyst);
    match console.graphql(&analyst, RULE, json!({"id": id})).await {
        Ok(data) if data["rule"].is_object() => fill(&mut page, &data["rule"]),
        Ok(_) => return problem(StatusCode::NOT_FOUND, &format!("no rule {id}")),
        Err(failed) => return failed.page(),
    }
    page.saved = p.done.as_deref() == Some("saved");
    render(StatusCode::OK, &page)
}

/// The editor for an existing rule.
fn fill(page: &mut EditorPage, rule: &Value) {
    let source = text(&rule["source"]).to_lowercase();
    page.id = text(&rule["id"]);
    page.title = text(&rule["title"]);
    page.yaml = text(&rule["yaml"]);
    page.enabled = rule["enabled"] == true;
    page.updates = source == "api";
    page.facts = vec![
        ("id", page.id.clone()),
        ("source", source),
        ("kind", text(&rule["kind"]).to_lowercase()),
        ("level", text(&rule["level"]).to_lowercase()),
        ("file", text(&rule["file"])),
        (
            "changed",
            format!(
                "{} {}",
                api_time(&text(&rule["updatedAt"])),
                text(&rule["updatedBy"])
            )
            .trim()
            .to_owned(),
        ),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
}

/// The editor's form: the YAML, the rule it edits, the back-test span.
fn editor(form: &HashMap<String, String>, analyst: &Analyst) -> EditorPage {
    let mut page = EditorPage::blank(analyst);
    page.yaml = form
        .get("yaml")
        .cloned()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    page.id = form.get("id").cloned().unwrap_or_default();
    page.updates = form.get("updates").is_some_and(|u| u == "1") && !page.id.is_empty();
    page.title = if page.id.is_empty() {
        "A new rule".to_owned()
    } else {
        page.id.clone()
    };
    page.hours = form
        .get("hours")
        .and_then(|h| h.parse().ok())
        .filter(|h| SPANS.iter().any(|(s, _)| s == h))
        .unwrap_or(24);
    page
}

/// `POST /ui/rules/check`: checks the YAML and back-tests it over the
/// chosen span; nothing is saved or raised.
pub async fn check(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = posted(&headers, &analyst, &body) else {
        return super::csrf_refused();
    };
    let mut page = editor(&form, &analyst);
    let to = Utc::now();
    let from = to - chrono::Duration::hours(page.hours);
    let variables = json!({"yaml": page.yaml, "from": from.to_rfc3339(), "to": to.to_rfc3339()});
    match console.graphql(&analyst, BACKTEST, variables).await {
        Ok(data) => {
            let b = &data["backtestRule"];
            page.tested = Some(Tested {
                count: b["count"].as_u64().unwrap_or(0),
                scanned: b["eventsScanned"].as_u64().unwrap_or(0),
                complete: b["complete"] == true,
                span: SPANS
                    .iter()
                    .find(|(h, _)| *h == page.hours)
                    .map_or("", |(_, l)| l),
                hits: b["hits"]
                    .as_array()
                    .map(|hits| {
                        hits.iter()
                            .map(|h| Hit {
                                time: api_time(&text(&h["timestamp"])),
                                severity: text(&h["severity"]).to_lowercase(),
                                title: text(&h["ruleTitle"]),
                                message: text(&h["message"]),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            render(StatusCode::OK, &page)
        }
        Err(failed) => page.failed(failed),
    }
}

/// `POST /ui/rules/save`: replaces a rule made over the API, or stores a
/// new one; the problems on the editor when it does not check out.
pub async fn save(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = posted(&headers, &analyst, &body) else {
        return super::csrf_refused();
    };
    let page = editor(&form, &analyst);
    let saved = if page.updates {
        console
            .graphql(&analyst, UPDATE, json!({"id": page.id, "yaml": page.yaml}))
            .await
    } else {
        console
            .graphql(&analyst, CREATE, json!({"yaml": page.yaml}))
            .await
    };
    match saved {
        Ok(data) => {
            let id = text(
                &data[if page.updates {
                    "updateRule"
                } else {
                    "createRule"
                }]["id"],
            );
            let path = form_urlencoded::byte_serialize(id.as_bytes())
                .collect::<String>()
                .replace('+', "%20");
            Redirect::to(&format!("/ui/rules/{path}?done=saved")).into_response()
        }
        Err(failed) => page.failed(failed),
    }
}
