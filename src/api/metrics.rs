//! `/metrics` in the Prometheus text format. Always behind a credential:
//! the configured metrics token (`METRICS_TOKEN`, what Prometheus is given),
//! or an access token or API key whose role may read. Rate limited per
//! source address like the API.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use super::guard;
use crate::auth::{Auth, CanRead};
use crate::config::Secret;
use crate::store::indexer::Progress;
use crate::telemetry::metric;

#[derive(Clone)]
struct MetricsState {
    handle: &'static PrometheusHandle,
    token: Option<Secret>,
    auth: Arc<Auth>,
    progress: watch::Receiver<Option<Arc<Progress>>>,
}

pub fn router(
    handle: &'static PrometheusHandle,
    token: Option<Secret>,
    auth: Arc<Auth>,
    progress: watch::Receiver<Option<Arc<Progress>>>,
) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .layer(axum::middleware::from_fn(|req, next| {
            super::track("metrics", req, next)
        }))
        .with_state(MetricsState {
            handle,
            token,
            auth,
            progress,
        })
}

async fn render(
    State(state): State<MetricsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (trusted, header) = state.auth.trusted_proxies();
    let ip = guard::client_ip(peer.ip(), &headers, trusted, header);
    if let Err(wait) = state.auth.requests.check_ip(ip) {
        return guard::too_many("metrics", "ip", wait);
    }
    match allowed(&state, &headers).await {
        Ok(name) => {
            if let Err(wait) = state.auth.requests.check_principal(&name) {
                return guard::too_many("metrics", "principal", wait);
            }
        }
        Err(StatusCode::FORBIDDEN) => {
            return guard::error(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this role may not read metrics",
            );
        }
        Err(_) => {
            ::metrics::counter!(metric::UNAUTHENTICATED, "server" => "metrics").increment(1);
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need a bearer token: the metrics token, an access token or an API key\n",
            )
                .into_response();
        }
    }
    if let Some(p) = state.progress.borrow().as_ref() {
        metrics::gauge!(metric::INDEX_LAG).set(p.index_lag() as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.handle.render(),
    )
        .into_response()
}

/// Who may read the metrics: the metrics token, or a principal that may
/// read (else 401, or 403 for a principal that may not); the name its
/// requests are rate limited under.
async fn allowed(state: &MetricsState, headers: &HeaderMap) -> Result<String, StatusCode> {
    let given = guard::credential(headers).ok_or(StatusCode::UNAUTHORIZED)?;
    if let Some(token) = &state.token
        && super::constant_time_eq(given.as_bytes(), token.expose().as_bytes())
    {
        return Ok("metrics-token".to_owned());
    }
    let principal = state
        .auth
        .authenticate_async(given)
        .await
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    principal
        .grant::<CanRead>(None)
        .map(|_| principal.display_name())
        .map_err(|_| StatusCode::FORBIDDEN)
}
