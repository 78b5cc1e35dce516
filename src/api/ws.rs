//! The WebSocket port: GraphQL subscriptions at `/ws`, over
//! graphql-transport-ws or the legacy graphql-ws subprotocol.
//!
//! The connection authenticates with the upgrade request's `Authorization`
//! header, or in the `connection_init` payload: `{"authorization": "Bearer
//! <token or API key>"}` (also `Authorization`, `token`, `accessToken` or
//! `apiKey`, with or without `Bearer `). Without a valid credential the
//! server closes the connection (4403) before any subscription starts.
//! At shutdown every connection ends at once: a subscription never holds
//! the node up.

use std::sync::Arc;

use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use tokio_util::sync::CancellationToken;

use super::graphql::{ApiSchema, Session};
use crate::auth::Auth;

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
    protocol: GraphQLProtocol,
    ws: WebSocketUpgrade,
) -> Response {
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let auth = state.auth.clone();
            let connection = GraphQLWebSocket::new(socket, state.schema, protocol)
                .on_connection_init(move |payload| async move {
                    let principal = match session.principal {
                        Some(p) => p,
                        None => {
                            let credential = payload_credential(&payload).ok_or_else(|| {
                                async_graphql::Error::new(
                                    "authentication required: send `authorization` in connection_init",
                                )
                            })?;
                            auth.authenticate(&credential)
                                .map_err(|e| async_graphql::Error::new(e.to_string()))?
                        }
                    };
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
            }
        })
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
