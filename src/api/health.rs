//! `/health` (liveness) and `/ready` (readiness per component) on the
//! health port: plain HTTP, no auth, no data.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use crate::store::indexer::Progress;

/// Readiness as the app learns it: `None` until the store is open.
pub type ReadyState = watch::Receiver<Option<Arc<Progress>>>;

pub fn router(ready: ReadyState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready_handler))
        .layer(axum::middleware::from_fn(|req, next| {
            super::track("health", req, next)
        }))
        .with_state(ready)
}

async fn ready_handler(State(ready): State<ReadyState>) -> (StatusCode, Json<serde_json::Value>) {
    let progress = ready.borrow().clone();
    let (store_ready, index_ready, lag) = match &progress {
        None => (false, false, None),
        Some(p) => (
            true,
            p.index_ready.load(Ordering::Acquire),
            Some(p.index_lag()),
        ),
    };
    let all = store_ready && index_ready;
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if all { "ready" } else { "starting" },
        "components": {
            "store": { "ready": store_ready },
            "index": { "ready": index_ready, "lag_events": lag },
        }
    });
    (status, Json(body))
}
