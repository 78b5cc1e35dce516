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
//!
//! Queries and mutations sent over the socket run as over HTTP
//! ([`graphql::execute`]: document size and nesting, cost, items, time
//! budget, one audit entry for refused mutations), each counted against
//! the address's and the principal's request rate. A connection holds at
//! most `api.max_subscriptions_per_connection` subscriptions at once, sends
//! at most `api.ws_messages_per_second` messages (`api.ws_message_burst`
//! at once; a connection over it is closed) and no message or frame over
//! `api.max_ws_message_bytes` (the connection is closed). At most
//! `api.max_ws_connections` connections are open at once, and
//! `api.max_ws_connections_per_address` from one address (an IPv6 /64):
//! past either an upgrade answers 429 `TOO_MANY_CONNECTIONS`, so one
//! client cannot hold every file descriptor of the port.

use std::any::TypeId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::futures_util::stream::{self, BoxStream, Stream, StreamExt};
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor, Request, Response as GraphqlResponse};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::Message;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use tokio_util::sync::CancellationToken;

use super::graphql::{self, ApiSchema, Session};
use super::{ApiState, guard};
use crate::auth::Auth;
use crate::config::Api;
use crate::telemetry::metric;

/// How long a connection may stay open without an accepted
/// `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct WsState {
    schema: ApiSchema,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
    open: Arc<Open>,
}

pub fn router(schema: ApiSchema, auth: Arc<Auth>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .with_state(WsState {
            schema,
            auth,
            shutdown,
            open: Arc::default(),
        })
}

/// The open connections, in all and per address key.
#[derive(Default)]
struct Open(Mutex<(usize, HashMap<IpAddr, usize>)>);

/// One open connection; dropping it (the connection ended, or its upgrade
/// never completed) frees its place.
struct Place {
    open: Arc<Open>,
    key: IpAddr,
}

impl Open {
    fn enter(self: &Arc<Self>, ip: IpAddr, limits: &Api) -> Option<Place> {
        let key = crate::auth::limit::address_key(ip);
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, by_address) = &mut *guard;
        let mine = by_address.entry(key).or_default();
        if *total >= limits.max_ws_connections || *mine >= limits.max_ws_connections_per_address {
            if *mine == 0 {
                by_address.remove(&key);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Place {
            open: self.clone(),
            key,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut guard = self
            .open
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, by_address) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = by_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                by_address.remove(&self.key);
            }
        }
    }
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
    let limits = graphql::api_state(&state.schema).map_or_else(Api::default, |a| a.limits.clone());
    let Some(place) = state.open.enter(session.ip, &limits) else {
        ::metrics::counter!(metric::GRAPHQL_REFUSED, "code" => "TOO_MANY_CONNECTIONS").increment(1);
        return guard::error(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_CONNECTIONS",
            "too many WebSocket connections from this address or in all: close one first",
        );
    };
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(limits.max_ws_message_bytes)
        .max_frame_size(limits.max_ws_message_bytes)
        .on_upgrade(move |socket| async move {
            let _place = place;
            let (accepted_tx, accepted) = tokio::sync::oneshot::channel::<String>();
            let auth = state.auth.clone();
            let (sink, input) = socket.split();
            let input = throttled(input, &limits, session.ip);
            let executor = Connection {
                schema: state.schema.clone(),
                api: graphql::api_state(&state.schema),
                subscriptions: Arc::new(AtomicUsize::new(0)),
            };
            let connection = GraphQLWebSocket::new_with_pair(sink, input, executor, protocol)
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

/// The socket's incoming messages, ending (which closes the connection)
/// once they come faster than `ws_messages_per_second`, after a burst of
/// `ws_message_burst`.
fn throttled<S>(
    input: S,
    limits: &Api,
    ip: std::net::IpAddr,
) -> impl Stream<Item = Result<Message, axum::Error>> + use<S>
where
    S: Stream<Item = Result<Message, axum::Error>>,
{
    let mut bucket = TokenBucket::new(limits.ws_messages_per_second, limits.ws_message_burst);
    input.take_while(move |_| {
        let allowed = bucket.take(Instant::now());
        if !allowed {
            ::metrics::counter!(metric::RATE_LIMITED, "server" => "websocket", "limit" => "connection")
                .increment(1);
            tracing::warn!(%ip, "WebSocket connection closed: over its message rate");
        }
        std::future::ready(allowed)
    })
}

/// `rate` tokens a second, at most `burst` saved up.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How one connection runs its operations: queries and mutations as over
/// HTTP, subscriptions up to the connection's cap, everything within the
/// address's and the principal's request rate.
#[derive(Clone)]
struct Connection {
    schema: ApiSchema,
    api: Option<Arc<ApiState>>,
    /// Subscriptions running now.
    subscriptions: Arc<AtomicUsize>,
}

/// One running subscription of a connection; dropped with its stream.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn one(response: GraphqlResponse) -> BoxStream<'static, GraphqlResponse> {
    stream::once(std::future::ready(response)).boxed()
}

impl Executor for Connection {
    /// Not used by the WebSocket protocols: every operation is a stream.
    async fn execute(&self, request: Request) -> GraphqlResponse {
        let mut responses = self.execute_stream(request, None);
        responses.next().await.unwrap_or_default()
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, GraphqlResponse> {
        let session = session_data
            .as_deref()
            .and_then(|d| d.get(&TypeId::of::<Session>()))
            .and_then(|s| s.downcast_ref::<Session>())
            .cloned();
        let (Some(api), Some(session)) = (self.api.clone(), session) else {
            return one(graphql::error_response(
                "UNAUTHENTICATED",
                "authentication required: send `authorization` in connection_init".to_owned(),
            ));
        };
        let limited = |limit: &'static str| {
            ::metrics::counter!(metric::RATE_LIMITED, "server" => "websocket", "limit" => limit)
                .increment(1);
            one(graphql::error_response(
                "RATE_LIMITED",
                "too many requests: slow down".to_owned(),
            ))
        };
        if api.auth.requests.check_ip(session.ip).is_err() {
            return limited("ip");
        }
        if let Some(p) = &session.principal
            && api
                .auth
                .requests
                .check_principal(&p.display_name())
                .is_err()
        {
            return limited("principal");
        }
        let kind = match graphql::prepare(&api.limits, &mut request) {
            Ok(kind) => kind,
            Err(refused) => return one(graphql::refusal(&refused)),
        };
        if kind != Some(OperationType::Subscription) {
            let schema = self.schema.clone();
            return stream::once(
                async move { graphql::run(&schema, &api, session, request).await },
            )
            .boxed();
        }
        let max = api.limits.max_subscriptions_per_connection;
        if self.subscriptions.fetch_add(1, Ordering::AcqRel) >= max {
            self.subscriptions.fetch_sub(1, Ordering::AcqRel);
            graphql::count_refused("TOO_MANY_SUBSCRIPTIONS");
            return one(graphql::error_response(
                "TOO_MANY_SUBSCRIPTIONS",
                format!("a connection holds at most {max} subscriptions: complete one first"),
            ));
        }
        let slot = Slot(self.subscriptions.clone());
        let responses = self
            .schema
            .execute_stream_with_session_data(request, session_data.unwrap_or_default());
        AssertUnwindSafe(responses)
            .catch_unwind()
            .map(move |item| {
                let _running = &slot;
                item.unwrap_or_else(|panic| graphql::panicked(panic.as_ref()))
            })
            .boxed()
    }
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
    fn the_message_rate_allows_a_burst_then_the_rate() {
        let mut b = TokenBucket::new(10, 5);
        let t0 = Instant::now();
        assert!((0..5).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        // Saved up to the burst, no more.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 5);
    }

    #[test]
    fn connections_are_capped_per_address_and_in_all_and_freed_on_drop() {
        let limits = Api {
            max_ws_connections: 3,
            max_ws_connections_per_address: 2,
            ..Api::default()
        };
        let open = Arc::new(Open::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a6: IpAddr = "2001:db8::1".parse().unwrap();
        let same64: IpAddr = "2001:db8::2".parse().unwrap();
        let (p1, p2) = (open.enter(a, &limits), open.enter(a, &limits));
        assert!(p1.is_some() && p2.is_some());
        assert!(open.enter(a, &limits).is_none(), "per address");
        let p3 = open.enter(a6, &limits);
        assert!(p3.is_some());
        assert!(open.enter(same64, &limits).is_none(), "in all");
        drop(p3);
        let p4 = open.enter(same64, &limits);
        assert!(p4.is_some());
        drop((p1, p2, p4));
        let state = open.0.lock().unwrap();
        assert_eq!(state.0, 0);
        assert!(state.1.is_empty(), "nothing left behind: {:?}", state.1);
    }

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
