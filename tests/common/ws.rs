//! A GraphQL-over-WebSocket client: graphql-transport-ws, or the legacy
//! graphql-ws (subscriptions-transport-ws) protocol, over a real socket.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws<S = tokio::net::TcpStream> = WebSocketStream<S>;

/// Opens `ws://addr/ws` with `protocol`; the socket and the protocol the
/// server chose.
pub async fn connect(addr: SocketAddr, protocol: &str) -> (Ws, Option<String>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connect_over(tcp, &format!("ws://{addr}/ws"), protocol).await
}

/// The WebSocket handshake over an established stream (TCP or TLS).
pub async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    protocol: &str,
) -> (Ws<S>, Option<String>) {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, chosen)
}

/// `connection_init` with `payload`: Ok on `connection_ack`, Err with the
/// close reason when the server refuses.
pub async fn init<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    payload: Value,
) -> Result<(), String> {
    send(ws, json!({"type": "connection_init", "payload": payload})).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => return Err("no answer to connection_init".into()),
            Ok(None) => return Err("closed".into()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(frame.map_or("closed".into(), |f| format!("{} {}", f.code, f.reason)));
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                match v["type"].as_str() {
                    Some("connection_ack") => return Ok(()),
                    Some("ka") => continue,
                    _ => return Err(format!("unexpected {v}")),
                }
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, message: Value) {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// Starts a subscription: `subscribe` (graphql-transport-ws) or `start`
/// (legacy graphql-ws).
pub async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    legacy: bool,
    id: &str,
    query: &str,
    variables: Value,
) {
    let kind = if legacy { "start" } else { "subscribe" };
    send(
        ws,
        json!({"type": kind, "id": id, "payload": {"query": query, "variables": variables}}),
    )
    .await;
}

/// The next `next`/`data`/`error`/`complete` message within `within`,
/// answering pings and skipping keep-alives; `None` on timeout or close.
pub async fn next<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    within: Duration,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        let Message::Text(text) = msg else {
            if let Message::Close(_) = msg {
                return None;
            }
            continue;
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        match v["type"].as_str() {
            Some("ping") => send(ws, json!({"type": "pong"})).await,
            Some("ka" | "pong") => {}
            _ => return Some(v),
        }
    }
}

/// The code of the first error a subscription message carries: in a
/// `next`/`data` payload's `errors`, or in an `error` message's payload.
pub fn error_code(msg: &Value) -> Option<&str> {
    let errors = match msg["type"].as_str() {
        Some("error") => &msg["payload"],
        _ => &msg["payload"]["errors"],
    };
    errors[0]["extensions"]["code"].as_str()
}
