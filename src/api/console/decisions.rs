//! Active response in the console: the blocks in force and those that
//! expired, who and why, time left; block an address, lift a block early.
//! The same rules as the API's `addDecision` / `deleteDecision` (protected
//! addresses, doubling for repeat offenders, the bounds, the audit log).

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::session::{self, Analyst};
use super::{Console, Frame, problem, render};
use crate::auth::{CanRead, CanTriage, Capability};
use crate::respond::{BlockRefused, Origin};
use crate::store::decisions::BlockError;

/// Most decisions listed.
const SHOWN: usize = 500;
/// Longest reason kept, in bytes.
const MAX_REASON: usize = 512;
/// Block durations offered: (value, label, seconds).
const DURATIONS: [(&str, &str, i64); 4] = [
    ("1h", "1 hour", 3600),
    ("24h", "24 hours", 86_400),
    ("7d", "7 days", 7 * 86_400),
    ("30d", "30 days", 30 * 86_400),
];

pub struct Row {
    ip: String,
    reason: String,
    by: String,
    origin: String,
    alert_id: Option<u64>,
    created: String,
    expires: String,
    /// Time left, in words; empty once expired.
    left: String,
    active: bool,
    offence: u64,
}

#[derive(Template)]
#[template(path = "console/decisions.html")]
struct DecisionsPage {
    frame: Frame,
    enabled: bool,
    rows: Vec<Row>,
    can_triage: bool,
    durations: Vec<(&'static str, &'static str)>,
    done: Option<String>,
    active_only: bool,
}

#[derive(Deserialize, Default)]
pub struct Shown {
    #[serde(default)]
    all: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// `3h 20m left`.
fn left(seconds: i64) -> String {
    let (d, h, m) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (d, h) {
        (0, 0) => format!("{}m", m.max(1)),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

pub async fn page(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Query(shown): Query<Shown>,
) -> Response {
    let _read: CanRead = match analyst.grant() {
        Ok(cap) => cap,
        Err(denied) => return problem(StatusCode::FORBIDDEN, &denied.to_string()),
    };
    let active_only = shown.all.is_none();
    let store = console.api.store.clone();
    let decisions = match tokio::task::spawn_blocking(move || store.decisions(active_only)).await {
        Ok(Ok(d)) => d,
        _ => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the decisions cannot be read right now",
            );
        }
    };
    let now = Utc::now();
    let rows = decisions
        .into_iter()
        .take(SHOWN)
        .map(|d| {
            let active = d.active(now);
            Row {
                ip: d.ip.to_string(),
                reason: d.reason,
                by: d.by,
                origin: d.origin,
                alert_id: d.alert_id,
                created: d.created_at.format("%Y-%m-%d %H:%M").to_string(),
                expires: d.expires_at.format("%Y-%m-%d %H:%M").to_string(),
                left: if active {
                    left((d.expires_at - now).num_seconds())
                } else {
                    String::new()
                },
                active,
                offence: d.offence,
            }
        })
        .collect();
    let page = DecisionsPage {
        enabled: console.api.firewall.is_some(),
        can_triage: analyst.may::<CanTriage>(),
        frame: Frame::new(&analyst, "decisions"),
        rows,
        durations: DURATIONS.iter().map(|(v, l, _)| (*v, *l)).collect(),
        done: shown.done.as_deref().and_then(done_message),
        active_only,
    };
    render(StatusCode::OK, &page)
}

fn done_message(done: &str) -> Option<String> {
    match done {
        "blocked" => Some("The address is blocked.".to_owned()),
        "lifted" => Some("The block is lifted.".to_owned()),
        "none" => Some("That address was not blocked.".to_owned()),
        _ => None,
    }
}

/// The fields of a decision form.
#[derive(Default)]
struct Form {
    csrf: Option<String>,
    ip: Option<String>,
    reason: Option<String>,
    duration: Option<String>,
    back: Option<String>,
}

fn form(body: &[u8]) -> Form {
    let mut f = Form::default();
    for (key, v) in form_urlencoded::parse(body) {
        let slot = match key.as_ref() {
            "csrf" => &mut f.csrf,
            "ip" => &mut f.ip,
            "reason" => &mut f.reason,
            "duration" => &mut f.duration,
            "back" => &mut f.back,
            _ => continue,
        };
        *slot = Some(v.into_owned());
    }
    f
}

/// Where a decision form goes back to: a console page, or the list.
fn back(f: &Form, done: &str) -> Response {
    let back = f
        .back
        .as_deref()
        .filter(|b| b.starts_with("/ui/") && !b.contains("//") && !b.contains('?'))
        .unwrap_or("/ui/decisions");
    Redirect::to(&format!("{back}?done={done}")).into_response()
}

/// A decision form that passed the checks.
struct Checked {
    form: Form,
    cap: CanTriage,
    ip: std::net::IpAddr,
    firewall: Arc<crate::respond::Firewall>,
}

/// Reads a form and checks what every decision change needs; the refusal
/// page otherwise.
fn checked(
    console: &Console,
    analyst: &Analyst,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Checked, Box<Response>> {
    let form = form(body);
    if !session::check_csrf(headers, analyst, form.csrf.as_deref()) {
        return Err(Box::new(super::csrf_refused()));
    }
    let refuse = |status, message: &str| Box::new(problem(status, message));
    let cap: CanTriage = analyst
        .grant()
        .map_err(|denied| refuse(StatusCode::FORBIDDEN, &denied.to_string()))?;
    let firewall = console.api.firewall.clone().ok_or_else(|| {
        refuse(
            StatusCode::CONFLICT,
            "active response is off on this node: set response.enabled (docs/RESPONSE.md)",
        )
    })?;
    let ip = form
        .ip
        .as_deref()
        .and_then(|ip| ip.trim().parse().ok())
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "give an IP address"))?;
    Ok(Checked {
        form,
        cap,
        ip,
        firewall,
    })
}

/// `POST /ui/decisions/block`.
pub async fn block(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Checked {
        form: f,
        cap,
        ip,
        firewall,
    } = match checked(&console, &analyst, &headers, &body) {
        Ok(checked) => checked,
        Err(refused) => return *refused,
    };
    let Some(seconds) = DURATIONS
        .iter()
        .find(|(v, _, _)| Some(*v) == f.duration.as_deref())
        .map(|(_, _, s)| *s)
    else {
        return problem(StatusCode::BAD_REQUEST, "choose how long to block");
    };
    let reason = f.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "say why the address is blocked");
    }
    if reason.len() > MAX_REASON {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("a reason is at most {MAX_REASON} bytes"),
        );
    }
    let duration = chrono::Duration::seconds(seconds);
    match firewall
        .block(cap.actor(), ip, reason, Origin::Manual, duration)
        .await
    {
        Ok(b) if b.dry_run => problem(
            StatusCode::CONFLICT,
            &format!(
                "response.dry_run is on: nothing was blocked; a real run would block {} until {}",
                b.decision.ip, b.decision.expires_at
            ),
        ),
        Ok(_) => back(&f, "blocked"),
        Err(e @ BlockRefused::Protected { .. }) => problem(StatusCode::FORBIDDEN, &e.to_string()),
        Err(
            e @ BlockRefused::Block(
                BlockError::Active(..) | BlockError::Full(_) | BlockError::FullUntrusted(_),
            ),
        ) => problem(StatusCode::CONFLICT, &e.to_string()),
        Err(BlockRefused::Apply(e)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("recorded, but the firewall refused it (applied at the next start): {e}"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "a console block failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the address could not be blocked: see the node's log",
            )
        }
    }
}

/// `POST /ui/decisions/lift`.
pub async fn lift(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Checked {
        form: f,
        cap,
        ip,
        firewall,
    } = match checked(&console, &analyst, &headers, &body) {
        Ok(checked) => checked,
        Err(refused) => return *refused,
    };
    match firewall.unblock(cap.actor(), ip).await {
        Ok(Some(_)) => back(&f, "lifted"),
        Ok(None) => back(&f, "none"),
        Err(e) => {
            tracing::error!(error = %e, "a console unblock failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the block could not be lifted: see the node's log",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_like_a_person_wrote_it() {
        assert_eq!(left(30), "1m");
        assert_eq!(left(3600 * 3 + 20 * 60), "3h 20m");
        assert_eq!(left(86_400 * 2 + 3600 * 5), "2d 5h");
    }
}
