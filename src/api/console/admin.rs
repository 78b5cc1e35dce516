//! Administration (admins only): users (create, role, disable, reset the
//! password), API keys (create, shown once; revoke), notification
//! channels (their state; send a test), and the audit log with the
//! verification of its hash chain. Every change runs the API's own
//! mutation as the admin ([`Console::graphql`]), so it is checked and
//! audited exactly as over GraphQL.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::Analyst;
use super::{Console, Frame, api_time as when, posted, problem, render, text};
use crate::auth::CanAdminister;

const PAGE: &str = "query($after: String) {
  users { username role disabled createdAt createdBy }
  apiKeys { id name role createdAt createdBy revokedAt }
  notificationChannels { name kind minSeverity pending messagesSent failures lastSent lastError }
  auditLog(first: 50, after: $after) {
    edges { node { seq at actor sourceIp action target } }
    pageInfo { hasNextPage endCursor }
  }
}";

/// Roles offered, as the API names them.
const ROLES: [&str; 4] = ["VIEWER", "ANALYST", "ADMIN", "INGEST"];

/// What a change did, by the code in `?done=` (never text from the URL).
const DONE: [(&str, &str); 6] = [
    ("created", "The user was created."),
    ("role", "The role was changed; the user's sessions ended."),
    ("disabled", "The user was disabled; their sessions ended."),
    ("enabled", "The user was enabled."),
    (
        "reset",
        "The password was reset; the user's sessions ended.",
    ),
    ("revoked", "The key was revoked."),
];

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    done: Option<String>,
    /// `1`: verify the audit log's chain.
    #[serde(default)]
    verify: Option<String>,
}

#[derive(Template)]
#[template(path = "console/admin.html")]
struct AdminPage {
    frame: Frame,
    roles: &'static [&'static str],
    done: Option<&'static str>,
    /// A key just created: shown on this page only.
    created_key: Option<(String, String)>,
    /// A channel test: (channel, what happened).
    tested: Option<(String, String)>,
    users: Vec<User>,
    keys: Vec<Key>,
    channels: Vec<Channel>,
    audit: Vec<Entry>,
    older: Option<String>,
    /// The chain's verification, when asked.
    verified: Option<Result<String, String>>,
}

/// The rows of a list in the answer, each field as text.
fn rows<const N: usize>(list: &Value, fields: [&str; N]) -> Vec<[String; N]> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| fields.map(|f| text(&item[f])))
                .collect()
        })
        .unwrap_or_default()
}

struct User {
    name: String,
    role: String,
    disabled: bool,
    created: String,
}

struct Key {
    id: String,
    name: String,
    role: String,
    created: String,
    revoked: String,
}

struct Channel {
    name: String,
    kind: String,
    min_severity: String,
    pending: String,
    sent: String,
    failures: String,
    last_sent: String,
    last_error: String,
}

struct Entry {
    seq: String,
    at: String,
    actor: String,
    ip: String,
    action: String,
    target: String,
}

/// The page, with what the last action left to show.
async fn show(
    console: &Console,
    analyst: &Analyst,
    p: &Params,
    created_key: Option<(String, String)>,
    tested: Option<(String, String)>,
) -> Response {
    let data = match console
        .graphql(analyst, PAGE, json!({"after": p.after}))
        .await
    {
        Ok(data) => data,
        Err(failed) => return failed.page(),
    };
    let verified = if p.verify.as_deref() == Some("1") {
        let store = console.api.store.clone();
        Some(
            match tokio::task::spawn_blocking(move || store.verify_audit()).await {
                Ok(Ok(Ok(v))) => Ok(format!(
                    "{} entries, every link holds; head {}",
                    v.entries, v.head
                )),
                Ok(Ok(Err(broken))) => Err(broken.to_string()),
                Ok(Err(e)) => Err(format!("the log could not be read: {e}")),
                Err(_) => Err("the verification did not run".to_owned()),
            },
        )
    } else {
        None
    };
    let audit = &data["auditLog"];
    let edges = audit["edges"]
        .as_array()
        .map(|e| e.iter().map(|e| e["node"].clone()).collect());
    let page = AdminPage {
        frame: Frame::new(analyst, "admin"),
        roles: &ROLES,
        done: p.done.as_deref().and_then(|d| {
            DONE.iter()
                .find(|(code, _)| *code == d)
                .map(|(_, text)| *text)
        }),
        created_key,
        tested,
        users: rows(
            &data["users"],
            ["username", "role", "disabled", "createdAt", "createdBy"],
        )
        .into_iter()
        .map(|[name, role, disabled, at, by]| User {
            name,
            role: role.to_lowercase(),
            disabled: disabled == "true",
            created: format!("{} by {by}", when(&at)),
        })
        .collect(),
        keys: rows(
            &data["apiKeys"],
            ["id", "name", "role", "createdAt", "createdBy", "revokedAt"],
        )
        .into_iter()
        .map(|[id, name, role, at, by, revoked]| Key {
            id,
            name,
            role: role.to_lowercase(),
            created: format!("{} by {by}", when(&at)),
            revoked: when(&revoked),
        })
        .collect(),
        channels: rows(
            &data["notificationChannels"],
            [
                "name",
                "kind",
                "minSeverity",
                "pending",
                "messagesSent",
                "failures",
                "lastSent",
                "lastError",
            ],
        )
        .into_iter()
        .map(
            |[
                name,
                kind,
                min_severity,
                pending,
                sent,
                failures,
                last_sent,
                last_error,
            ]| Channel {
                name,
                kind,
                min_severity,
                pending,
                sent,
                failures,
                last_sent: when(&last_sent),
                last_error,
            },
        )
        .collect(),
        audit: rows(
            &edges.map(Value::Array).unwrap_or_default(),
            ["seq", "at", "actor", "sourceIp", "action", "target"],
        )
        .into_iter()
        .map(|[seq, at, actor, ip, action, target]| Entry {
            seq,
            at: when(&at),
            actor,
            ip,
            action,
            target,
        })
        .collect(),
        older: audit["pageInfo"]["hasNextPage"]
            .as_bool()
            .unwrap_or(false)
            .then(|| text(&audit["pageInfo"]["endCursor"])),
        verified,
    };
    render(StatusCode::OK, &page)
}

/// `GET /ui/admin`.
pub async fn page(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Query(p): Query<Params>,
) -> Response {
    if let Err(denied) = analyst.grant::<CanAdminister>() {
        return problem(StatusCode::FORBIDDEN, &denied.to_string());
    }
    show(&console, &analyst, &p, None, None).await
}

/// A posted field, trimmed; empty is none.
fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn role(form: &HashMap<String, String>) -> Option<&'static str> {
    field(form, "role").and_then(|r| ROLES.iter().copied().find(|x| *x == r))
}

/// `POST /ui/admin/users`: `op` is create, role, disable, enable or reset.
pub async fn users(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = posted(&headers, &analyst, &body) else {
        return super::csrf_refused();
    };
    let Some(username) = field(&form, "username") else {
        return problem(StatusCode::BAD_REQUEST, "give a user name");
    };
    let password = form.get("password").map(String::as_str).unwrap_or_default();
    let (document, variables, done) = match field(&form, "op") {
        Some("create") => (
            "mutation($u: String!, $p: String!, $r: Role!) { createUser(username: $u, password: $p, role: $r) { username } }",
            json!({"u": username, "p": password, "r": role(&form)}),
            "created",
        ),
        Some("role") => (
            "mutation($u: String!, $r: Role!) { setUserRole(username: $u, role: $r) { username } }",
            json!({"u": username, "r": role(&form)}),
            "role",
        ),
        Some(op @ ("disable" | "enable")) => (
            "mutation($u: String!, $d: Boolean!) { setUserDisabled(username: $u, disabled: $d) { username } }",
            json!({"u": username, "d": op == "disable"}),
            if op == "disable" {
                "disabled"
            } else {
                "enabled"
            },
        ),
        Some("reset") => (
            "mutation($u: String!, $p: String!) { resetPassword(username: $u, password: $p) { username } }",
            json!({"u": username, "p": password}),
            "reset",
        ),
        _ => return problem(StatusCode::BAD_REQUEST, "choose what to do with the user"),
    };
    if role(&form).is_none() && matches!(done, "created" | "role") {
        return problem(StatusCode::BAD_REQUEST, "choose a role");
    }
    match console.graphql(&analyst, document, variables).await {
        Ok(_) => Redirect::to(&format!("/ui/admin?done={done}")).into_response(),
        Err(failed) => failed.page(),
    }
}

/// `POST /ui/admin/keys`: `op` create (the key is shown on the answer,
/// once, never put in a URL) or revoke.
pub async fn keys(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = posted(&headers, &analyst, &body) else {
        return super::csrf_refused();
    };
    match field(&form, "op") {
        Some("create") => {
            let (Some(name), Some(role)) = (field(&form, "name"), role(&form)) else {
                return problem(StatusCode::BAD_REQUEST, "give the key a name and a role");
            };
            let created = console
                .graphql(
                    &analyst,
                    "mutation($n: String!, $r: Role!) { createApiKey(name: $n, role: $r) { key apiKey { name } } }",
                    json!({"n": name, "r": role}),
                )
                .await;
            match created {
                Ok(data) => {
                    let key = text(&data["createApiKey"]["key"]);
                    let name = text(&data["createApiKey"]["apiKey"]["name"]);
                    show(
                        &console,
                        &analyst,
                        &Params::default(),
                        Some((name, key)),
                        None,
                    )
                    .await
                }
                Err(failed) => failed.page(),
            }
        }
        Some("revoke") => {
            let Some(id) = field(&form, "id") else {
                return problem(StatusCode::BAD_REQUEST, "choose a key");
            };
            match console
                .graphql(
                    &analyst,
                    "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
                    json!({"id": id}),
                )
                .await
            {
                Ok(_) => Redirect::to("/ui/admin?done=revoked").into_response(),
                Err(failed) => failed.page(),
            }
        }
        _ => problem(StatusCode::BAD_REQUEST, "choose what to do with the key"),
    }
}

/// `POST /ui/admin/channels`: sends a test message through a channel and
/// shows what happened.
pub async fn channels(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = posted(&headers, &analyst, &body) else {
        return super::csrf_refused();
    };
    let Some(name) = field(&form, "name") else {
        return problem(StatusCode::BAD_REQUEST, "choose a channel");
    };
    let tested = console
        .graphql(
            &analyst,
            "mutation($n: String!) { testNotificationChannel(name: $n) { ok error } }",
            json!({"n": name}),
        )
        .await;
    let outcome = match tested {
        Ok(data) if data["testNotificationChannel"]["ok"] == true => {
            "the test message went out".to_owned()
        }
        Ok(data) => format!(
            "the test failed: {}",
            text(&data["testNotificationChannel"]["error"])
        ),
        Err(failed) => return failed.page(),
    };
    show(
        &console,
        &analyst,
        &Params::default(),
        None,
        Some((name.to_owned(), outcome)),
    )
    .await
}
