//! The WebSocket port: GraphQL subscriptions at `/ws`, over
//! graphql-transport-ws or the legacy graphql-ws subprotocol.
//!
//! The connection authenticates with the upgrade request's `Authorization`
//! header, or in the `connection_init` payload: `{"authorization": "Bearer
//! <token or API key>"}` (also `Authorization`, `token`, `accessToken` or
//! `apiKey`, with or without `Bearer `). Without a valid credential the
//! server closes the connection before any subscription starts, and so it
//! does when no `connection_init` comes within 10 s.
//! The credential is checked again while the connection lasts (every
//! access-token lifetime, at most every 30 s): once it expires, or its user
//! is disabled, or its key revoked, the connection ends. At shutdown every
//! connection ends at once: a subscription never holds the node up.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use tokio_util::sync::CancellationToken;

use super::graphql::{ApiSchema, Session};
use super::guard;
use crate::auth::Auth;

/// How long a connection may stay open without an accepted
/// `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct WsState {
    schema: ApiSchema,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
}

pub fn router(schema: ApiSchema, auth: Arc<Auth>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .with_state(WsState {
            schema,
            auth,
            shutdown,
        })
}

async fn upgrade(
    State(state): State<WsState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    ws: WebSocketUpgrade,
) -> Response {
    // Checked by the guard already when present.
    let from_header = guard::credential(&headers);
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let (accepted_tx, accepted) = tokio::sync::oneshot::channel::<String>();
            let auth = state.auth.clone();
            let connection = GraphQLWebSocket::new(socket, state.schema, protocol)
                .on_connection_init(move |payload| async move {
                    let credential = from_header
                        .or_else(|| payload_credential(&payload))
                        .ok_or_else(|| {
                            async_graphql::Error::new(
                                "authentication required: send `authorization` in connection_init",
                            )
                        })?;
                    let principal = match session.principal {
                        Some(p) => p,
                        None => auth
                            .authenticate_async(credential.clone())
                            .await
                            .map_err(|e| async_graphql::Error::new(e.to_string()))?,
                    };
                    let _ = accepted_tx.send(credential);
                    let mut data = Data::default();
                    data.insert(Session {
                        principal: Some(principal),
                        ip: session.ip,
                    });
                    Ok(data)
                })
                .serve();
            tokio::select! {
                () = connection => {}
                () = state.shutdown.cancelled() => {}
                reason = still_valid(&state.auth, accepted) => {
                    tracing::info!(ip = %session.ip, reason, "subscription connection closed");
                }
            }
        })
}

/// Returns (why) once the connection must end: no `connection_init`
/// accepted within [`INIT_TIMEOUT`], or the credential it was accepted
/// with is no longer valid.
async fn still_valid(
    auth: &Arc<Auth>,
    accepted: tokio::sync::oneshot::Receiver<String>,
) -> &'static str {
    let Ok(Ok(credential)) = tokio::time::timeout(INIT_TIMEOUT, accepted).await else {
        return "not authenticated in time";
    };
    let every = auth
        .access_ttl()
        .clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        if auth.authenticate_async(credential.clone()).await.is_err() {
            return "its credential is no longer valid";
        }
    }
}

/// The credential of a `connection_init` payload.
fn payload_credential(payload: &serde_json::Value) -> Option<String> {
    [
        "authorization",
        "Authorization",
        "token",
        "accessToken",
        "apiKey",
    ]
    .iter()
    .find_map(|k| payload.get(k)?.as_str())
    .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned())
    .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_credential_comes_from_the_usual_payload_keys() {
        let c = |v| payload_credential(&v);
        assert_eq!(
            c(json!({"authorization": "Bearer a.b.c"})).unwrap(),
            "a.b.c"
        );
        assert_eq!(c(json!({"Authorization": "smk_x_y"})).unwrap(), "smk_x_y");
        assert_eq!(c(json!({"token": "a.b.c"})).unwrap(), "a.b.c");
        assert_eq!(c(json!({"accessToken": "a.b.c"})).unwrap(), "a.b.c");
        assert_eq!(c(json!({})), None);
        assert_eq!(c(json!({"token": ""})), None);
        assert_eq!(c(json!(null)), None);
    }
}
