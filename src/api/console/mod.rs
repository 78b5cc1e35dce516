//! The analyst console (docs/CONSOLE.md): server-rendered pages under
//! `/ui/` on the API port, same origin as GraphQL, over TLS when the API
//! is. Templates (askama) and assets are compiled into the binary: no
//! CDN, nothing fetched at run time, no build step outside cargo.
//!
//! Pages read the store directly with the signed-in analyst's
//! capabilities ([`session::Analyst::grant`]), as the GraphQL resolvers
//! do, or run GraphQL documents of their own as the analyst through the
//! API's one path ([`Console::graphql`]: the same limits, checks and
//! audit); what a role may not do is not offered, and refused if asked.
//! Every answer carries a strict Content-Security-Policy (scripts and
//! styles from this origin only, none inline, no framing).

mod admin;
mod alert;
mod alerts;
mod assets;
mod decisions;
mod rules;
mod search;
mod session;
mod system;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::ApiState;
use crate::auth::{AuthError, CanAdminister};
use session::Analyst;

/// Largest form a console page posts (a bulk change of 1000 ids with a
/// comment of 10 000 bytes fits).
const MAX_FORM_BYTES: usize = 64 * 1024;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub struct Console {
    api: Arc<ApiState>,
    /// The API's schema, for [`Console::graphql`].
    schema: super::graphql::ApiSchema,
    /// Replication and export state, for the system page.
    replication: Arc<crate::replicate::Status>,
    /// (when, last seq) as the system page saw them: its ingest rate.
    ingest_samples: std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, u64)>>,
    /// The API speaks TLS: cookies are `Secure`, HSTS is sent.
    tls: bool,
    /// Live queues open ([`alerts::MAX_LIVE`] at most).
    live_streams: Arc<tokio::sync::Semaphore>,
    /// Ends the live queues when the node stops.
    shutdown: tokio_util::sync::CancellationToken,
}

/// The console's routes, to merge into the API router (behind its guard:
/// address rate limits, and no `Authorization` that does not check out).
pub fn router(
    api: Arc<ApiState>,
    schema: super::graphql::ApiSchema,
    replication: Arc<crate::replicate::Status>,
    tls: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> Router {
    let console = Arc::new(Console {
        api,
        schema,
        replication,
        ingest_samples: Default::default(),
        tls,
        live_streams: Arc::new(tokio::sync::Semaphore::new(alerts::MAX_LIVE)),
        shutdown,
    });
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/alerts") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/alerts") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/alerts", get(alerts::queue))
        .route("/ui/alerts/triage", post(alerts::triage))
        .route("/ui/alerts/live", get(alerts::live))
        .route("/ui/alerts/{id}", get(alert::page))
        .route("/ui/search", get(search::page))
        .route("/ui/search/export", get(search::export))
        .route("/ui/search/tail", get(search::tail))
        .route("/ui/decisions", get(decisions::page))
        .route("/ui/decisions/block", post(decisions::block))
        .route("/ui/decisions/lift", post(decisions::lift))
        .route("/ui/rules", get(rules::list))
        .route("/ui/rules/new", get(rules::new))
        .route("/ui/rules/enable", post(rules::enable))
        .route("/ui/rules/check", post(rules::check))
        .route("/ui/rules/save", post(rules::save))
        .route("/ui/rules/{id}", get(rules::page))
        .route("/ui/system", get(system::page))
        .route("/ui/admin", get(admin::page))
        .route("/ui/admin/users", post(admin::users))
        .route("/ui/admin/keys", post(admin::keys))
        .route("/ui/admin/channels", post(admin::channels))
        .route("/ui/assets/{file}", get(assets::serve))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such page") })
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(tls, headers))
        .with_state(console)
}

/// A GraphQL error, for a page: the status it answers with, the API's
/// message (it says what to do), and the problems of an invalid rule
/// (`{message, line, column}`).
pub struct Failed {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub problems: Vec<serde_json::Value>,
}

impl Failed {
    fn page(&self) -> Response {
        problem(self.status, &self.message)
    }
}

impl Console {
    /// Runs `document` (one of the console's own: only `variables` come
    /// from the browser) as the analyst, through the API's one path
    /// ([`super::graphql::execute`]): the same limits, capability checks
    /// and audit as a request to `/graphql`. Its data, or its first error.
    async fn graphql(
        &self,
        analyst: &Analyst,
        document: &'static str,
        variables: serde_json::Value,
    ) -> Result<serde_json::Value, Failed> {
        let session = super::guard::Session {
            principal: Some(analyst.principal.clone()),
            ip: analyst.ip,
        };
        let request = async_graphql::Request::new(document)
            .variables(async_graphql::Variables::from_json(variables));
        let response = super::graphql::execute(&self.schema, session, request).await;
        let Some(error) = response.errors.first() else {
            return Ok(response.data.into_json().unwrap_or_default());
        };
        let error = serde_json::to_value(error).unwrap_or_default();
        let code = error["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let status = match code.as_str() {
            "FORBIDDEN" | "UNAUTHENTICATED" => StatusCode::FORBIDDEN,
            "NOT_FOUND" => StatusCode::NOT_FOUND,
            "UNAVAILABLE" | "NOT_CONFIGURED" | "TIMEOUT" | "INTERNAL" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
            "CONFLICT" | "RULE_EXISTS" | "RULE_READ_ONLY" => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        Err(Failed {
            status,
            message: error["message"]
                .as_str()
                .unwrap_or("the request failed")
                .to_owned(),
            problems: error["extensions"]["problems"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            code,
        })
    }
}

/// A JSON value of a GraphQL answer as page text (`""` for null).
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A time of the API as pages show it (UTC, to the second).
fn api_time(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| at.to_owned())
}

/// The fields of a form a console page posted (the last of a name wins),
/// once its CSRF token and origin check out (none: answer
/// [`csrf_refused`]).
fn posted(
    headers: &HeaderMap,
    analyst: &Analyst,
    body: &[u8],
) -> Option<std::collections::HashMap<String, String>> {
    let fields: std::collections::HashMap<String, String> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    session::check_csrf(headers, analyst, fields.get("csrf").map(String::as_str)).then_some(fields)
}

/// Security headers on every console answer.
async fn headers(State(tls): State<bool>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Middleware of the API router: a browser's `GET /` (it accepts HTML and
/// sends no credential) goes to the console; Elasticsearch clients' `GET /`
/// keeps its cluster answer.
pub async fn browser_root(req: Request, next: Next) -> Response {
    let browser = req.method() == axum::http::Method::GET
        && req.uri().path() == "/"
        && !req.headers().contains_key(header::AUTHORIZATION)
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    if browser {
        return Redirect::to("/ui/").into_response();
    }
    next.run(req).await
}

/// What every page's frame shows: who is signed in, what they may open.
pub struct Frame {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    /// The page in the navigation.
    pub page: &'static str,
    pub admin: bool,
    pub assets: &'static assets::Links,
    /// The theme the analyst chose (`light`, `dark`); none: the system's.
    pub theme: Option<&'static str>,
}

impl Frame {
    fn new(analyst: &Analyst, page: &'static str) -> Frame {
        Frame {
            user: analyst.principal.name.clone(),
            role: analyst.principal.role.as_str(),
            csrf: analyst.csrf.clone(),
            page,
            admin: analyst.may::<CanAdminister>(),
            assets: assets::links(),
            theme: analyst.theme,
        }
    }
}

/// A rendered template, or the error page when it does not render.
fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page does not render");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this page could not be shown",
            )
        }
    }
}

#[derive(Template)]
#[template(path = "console/problem.html")]
struct ProblemPage<'a> {
    status: u16,
    message: &'a str,
    assets: &'static assets::Links,
}

/// An error page: what went wrong, in words.
pub fn problem(status: StatusCode, message: &str) -> Response {
    let page = ProblemPage {
        status: status.as_u16(),
        message,
        assets: assets::links(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    next: &'a str,
    error: Option<String>,
    assets: &'static assets::Links,
}

#[derive(Deserialize)]
struct Next_ {
    next: Option<String>,
}

/// Where to go after signing in: a console page, never another site.
fn after_login(next: Option<&str>) -> &str {
    next.filter(|n| {
        n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\') && n.len() <= 2048
    })
    .unwrap_or("/ui/alerts")
}

async fn login_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<Next_>,
) -> Response {
    let next = after_login(q.next.as_deref());
    if let Some(secret) = session::secret(&headers)
        && console
            .api
            .auth
            .console_principal_async(secret)
            .await
            .is_ok()
    {
        return Redirect::to(next).into_response();
    }
    render(
        StatusCode::OK,
        &LoginPage {
            next,
            error: None,
            assets: assets::links(),
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login(
    State(console): State<Arc<Console>>,
    axum::Extension(session): axum::Extension<super::guard::Session>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let next = after_login(form.next.as_deref()).to_owned();
    if !session::same_origin(&headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "this sign-in did not come from the console's own page",
        );
    }
    let failed = |status, error: String| {
        render(
            status,
            &LoginPage {
                next: &next,
                error: Some(error),
                assets: assets::links(),
            },
        )
    };
    match console
        .api
        .auth
        .console_login_async(form.username, form.password, session.ip)
        .await
    {
        Ok(login) => {
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                session::cookie(console.tls, Some(&login.secret)),
            );
            response
        }
        Err(e @ AuthError::Unauthenticated(_)) => failed(StatusCode::UNAUTHORIZED, e.to_string()),
        Err(e @ (AuthError::Locked(_) | AuthError::Busy(_))) => {
            failed(StatusCode::TOO_MANY_REQUESTS, e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "a console sign-in failed");
            failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "signing in is not possible right now: try again, or see the node's log".to_owned(),
            )
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if !session::check_csrf(&headers, &analyst, form.csrf.as_deref()) {
        return csrf_refused();
    }
    if let Some(secret) = session::secret(&headers) {
        let (auth, ip) = (console.api.auth.clone(), analyst.ip);
        let ended = tokio::task::spawn_blocking(move || auth.console_logout(&secret, ip)).await;
        if !matches!(ended, Ok(Ok(()))) {
            tracing::error!("a console sign-out was not recorded");
        }
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::cookie(console.tls, None));
    response
}

fn csrf_refused() -> Response {
    ::metrics::counter!(crate::telemetry::metric::CONSOLE_REFUSED, "code" => "CSRF").increment(1);
    problem(
        StatusCode::FORBIDDEN,
        "this request did not come from a console page of this session: reload the page and try again",
    )
}
