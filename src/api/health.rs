//! `/health` (liveness) and `/ready` (readiness per component) on the
//! health port: plain HTTP, no auth, no data. `/ready` shows states and
//! counts, never error text: a sink's or channel's error may name a host
//! and what it answered, which is for admins (GraphQL), not for whoever can
//! reach the health port.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use crate::replicate;
use crate::store::indexer::Progress;

/// Readiness as the app learns it: `None` until the store is open.
pub type ReadyState = watch::Receiver<Option<Arc<Progress>>>;

/// The notification dispatcher, once started (`None` while starting).
pub type NotifyState = watch::Receiver<Option<Arc<crate::notify::Notifier>>>;

pub fn router(
    ready: ReadyState,
    replication: Arc<replicate::Status>,
    notify: NotifyState,
) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready_handler))
        .layer(axum::middleware::from_fn(|req, next| {
            super::track("health", req, next)
        }))
        .with_state((ready, replication, notify))
}

async fn ready_handler(
    State((ready, replication, notify)): State<(ReadyState, Arc<replicate::Status>, NotifyState)>,
) -> (StatusCode, Json<serde_json::Value>) {
    let progress = ready.borrow().clone();
    let notifier = notify.borrow().clone();
    let (all, body) = readiness(progress.as_deref(), &replication, notifier.as_deref());
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Whether the node is ready, and `/ready`'s answer: states and counts
/// per component, never error text (the console's system page shows the
/// same).
pub fn readiness(
    progress: Option<&Progress>,
    replication: &replicate::Status,
    notifier: Option<&crate::notify::Notifier>,
) -> (bool, serde_json::Value) {
    let (store_ready, index_ready, lag) = match progress {
        None => (false, false, None),
        Some(p) => (
            true,
            p.index_ready.load(Ordering::Acquire),
            Some(p.index_lag()),
        ),
    };
    let replication_ready = replication.ready();
    let all = store_ready && index_ready && replication_ready;
    let mut components = json!({
        "store": { "ready": store_ready },
        "index": { "ready": index_ready, "lag_events": lag },
    });
    if replication.is_enabled() {
        let sinks: serde_json::Map<String, serde_json::Value> = replication
            .sinks()
            .map(|(name, state)| (name.to_owned(), state.ready_view()))
            .collect();
        components["replication"] = json!({ "ready": replication_ready, "sinks": sinks });
        if let Some(replica) = replication.read_replica() {
            // Reported, never making the node unready: the primary answers.
            components["replication"]["read_replica"] = json!(replica);
        }
    }
    let exports: serde_json::Map<String, serde_json::Value> = replication
        .exports()
        .map(|(name, state)| (name.to_owned(), state.export_view()))
        .collect();
    if !exports.is_empty() {
        // Reported, never making the node unready: a sink that is down
        // does not slow ingest, and retention keeps what it has not taken.
        components["export"] = json!({ "sinks": exports });
    }
    if let Some(notifier) = notifier {
        components["notifications"] = crate::notify::report(notifier);
    }
    let status_text = if all {
        "ready"
    } else if store_ready && index_ready {
        "replication lagging"
    } else {
        "starting"
    };
    (
        all,
        json!({ "status": status_text, "components": components }),
    )
}
