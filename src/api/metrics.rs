//! `/metrics` in the Prometheus text format, behind a bearer token when one
//! is configured.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::config::Secret;
use crate::store::indexer::Progress;
use crate::telemetry::metric;

#[derive(Clone)]
struct MetricsState {
    handle: &'static PrometheusHandle,
    token: Option<Secret>,
    progress: watch::Receiver<Option<Arc<Progress>>>,
}

pub fn router(
    handle: &'static PrometheusHandle,
    token: Option<Secret>,
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
            progress,
        })
}

async fn render(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !super::constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need a bearer token\n",
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
