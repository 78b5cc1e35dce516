//! Subscriptions over the WebSocket port with real clients: the
//! graphql-transport-ws protocol and the legacy graphql-ws one, live
//! alerts and a filtered live tail, authentication in `connection_init`,
//! and a slow subscriber that gets a lag notice without slowing ingest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::ws::{self, Ws};
use common::{Node, bearer_client, config};
use serde_json::{Value, json};

const ROOT_LOGIN: &str = "045518a7-693f-4f27-82e8-c64d66a9b2fb";

fn root_login(ip: &str) -> String {
    json!({"event.dataset": "sshd", "event.category": "authentication",
        "event.outcome": "success", "event.action": "ssh_login", "user.name": "root",
        "source.ip": ip, "host.name": "web-1",
        "message": format!("Accepted password for root from {ip}"),
        "@timestamp": chrono::Utc::now().to_rfc3339()})
    .to_string()
        + "\n"
}

fn failure(host: &str, n: usize) -> String {
    json!({"event.dataset": "sshd", "event.outcome": "failure", "host.name": host,
        "message": format!("Failed password for invalid user u{n} from 10.9.9.9")})
    .to_string()
        + "\n"
}

/// Messages for each subscription id, read for `within`.
async fn collect(ws: &mut Ws, within: Duration) -> HashMap<String, Vec<Value>> {
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Some(msg) = ws::next(ws, deadline - tokio::time::Instant::now()).await {
        let id = msg["id"].as_str().unwrap_or_default().to_owned();
        by_id.entry(id).or_default().push(msg);
    }
    by_id
}

async fn connected(node: &Node, protocol: &str) -> Ws {
    let (mut socket, chosen) = ws::connect(node.app.addrs().websocket, protocol).await;
    assert_eq!(chosen.as_deref(), Some(protocol));
    ws::init(
        &mut socket,
        json!({"authorization": format!("Bearer {}", node.token)}),
    )
    .await
    .unwrap();
    socket
}

#[tokio::test]
async fn alerts_events_and_status_arrive_live_over_graphql_transport_ws() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let mut socket = connected(&node, "graphql-transport-ws").await;
    ws::subscribe(
        &mut socket,
        false,
        "medium",
        "subscription { alerts(minSeverity: MEDIUM) { alert { id ruleId severity status } missed } }",
        json!({}),
    )
    .await;
    ws::subscribe(
        &mut socket,
        false,
        "high",
        "subscription { alerts(minSeverity: HIGH) { alert { id } missed } }",
        json!({}),
    )
    .await;
    ws::subscribe(
        &mut socket,
        false,
        "tail",
        "subscription($q: String) { events(query: $q) { events { message hostName outcome } missed } }",
        json!({"q": "event.outcome:failure host.name:web-1"}),
    )
    .await;
    ws::subscribe(
        &mut socket,
        false,
        "status",
        "subscription { systemStatus(intervalSeconds: 1) { eventsStored nodeId } }",
        json!({}),
    )
    .await;
    // The first status arrives at once: the subscriptions are in place.
    let first = ws::next(&mut socket, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first["id"], "status", "{first}");
    assert_eq!(first["type"], "next");

    let body: String = [
        failure("web-1", 1),
        failure("web-2", 2),
        root_login("192.0.2.44"),
        failure("web-1", 3),
    ]
    .concat();
    assert_eq!(node.ingest(body).await.0, 200);
    let got = collect(&mut socket, Duration::from_secs(3)).await;

    let alerts = &got["medium"];
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0]["payload"]["data"]["alerts"];
    assert_eq!(alert["alert"]["ruleId"], ROOT_LOGIN);
    assert_eq!(alert["alert"]["status"], "OPEN");
    assert_eq!(alert["missed"], 0);
    assert!(
        !got.contains_key("high"),
        "a medium alert reached minSeverity HIGH"
    );

    let tail: Vec<String> = got["tail"]
        .iter()
        .flat_map(|m| {
            m["payload"]["data"]["events"]["events"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        tail,
        [
            "Failed password for invalid user u1 from 10.9.9.9",
            "Failed password for invalid user u3 from 10.9.9.9"
        ]
    );
    let status = got["status"].last().unwrap();
    assert_eq!(
        status["payload"]["data"]["systemStatus"]["eventsStored"], 4,
        "{status}"
    );

    // A triage change is pushed too.
    let id = alert["alert"]["id"].as_str().unwrap();
    let v = node
        .graphql(
            "mutation($id: ID!) { acknowledgeAlert(id: $id) { status } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        v["data"]["acknowledgeAlert"]["status"], "ACKNOWLEDGED",
        "{v}"
    );
    let got = collect(&mut socket, Duration::from_millis(1500)).await;
    assert_eq!(
        got["medium"][0]["payload"]["data"]["alerts"]["alert"]["status"],
        "ACKNOWLEDGED"
    );

    // `complete` ends one subscription; the others go on.
    ws::send(&mut socket, json!({"type": "complete", "id": "status"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = collect(&mut socket, Duration::from_millis(200)).await;
    let got = collect(&mut socket, Duration::from_millis(2500)).await;
    assert!(!got.contains_key("status"), "{got:?}");

    // A bad filter is an error on that subscription only.
    ws::subscribe(
        &mut socket,
        false,
        "bad",
        "subscription { events(query: \"\\\"open\") { missed } }",
        json!({}),
    )
    .await;
    let msg = ws::next(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ws::error_code(&msg), Some("BAD_QUERY"), "{msg}");
    node.app.stop().await;
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_delivers_too() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let mut socket = connected(&node, "graphql-ws").await;
    ws::subscribe(
        &mut socket,
        true,
        "1",
        "subscription { alerts { alert { ruleId } missed } }",
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.ingest(root_login("192.0.2.45")).await.0, 200);
    let msg = ws::next(&mut socket, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(msg["type"], "data", "{msg}");
    assert_eq!(msg["id"], "1");
    assert_eq!(
        msg["payload"]["data"]["alerts"]["alert"]["ruleId"],
        ROOT_LOGIN
    );
    node.app.stop().await;
}

#[tokio::test]
async fn connections_authenticate_and_roles_apply_to_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let addrs = node.app.addrs();

    for (payload, why) in [
        (json!({}), "authentication required"),
        (
            json!({"authorization": "Bearer not.a.token"}),
            "the access token is not valid",
        ),
    ] {
        let (mut socket, _) = ws::connect(addrs.websocket, "graphql-transport-ws").await;
        let refused = ws::init(&mut socket, payload.clone()).await.unwrap_err();
        assert!(refused.contains(why), "{payload}: {refused}");
    }

    // An ingest key connects but may not read.
    let v = node
        .graphql(
            "mutation { createApiKey(name: \"shipper\", role: INGEST) { key } }",
            json!({}),
        )
        .await;
    let key = v["data"]["createApiKey"]["key"].as_str().unwrap();
    let (mut socket, _) = ws::connect(addrs.websocket, "graphql-transport-ws").await;
    ws::init(&mut socket, json!({"token": key})).await.unwrap();
    ws::subscribe(
        &mut socket,
        false,
        "x",
        "subscription { alerts { missed } }",
        json!({}),
    )
    .await;
    let msg = ws::next(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ws::error_code(&msg), Some("FORBIDDEN"), "{msg}");

    // The upgrade request's Authorization header is enough on its own.
    let tcp = tokio::net::TcpStream::connect(addrs.websocket)
        .await
        .unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/ws",
            addrs.websocket
        ))
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert(
        "authorization",
        format!("Bearer {}", node.token).parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    ws::init(&mut socket, json!({})).await.unwrap();

    // A connection that never sends connection_init is closed.
    let (mut idle, _) = ws::connect(addrs.websocket, "graphql-transport-ws").await;
    let started = std::time::Instant::now();
    assert!(ws::next(&mut idle, Duration::from_secs(20)).await.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "an idle connection stayed open {:?}",
        started.elapsed()
    );

    // Without credentials the upgrade itself is refused when they are bad.
    let resp = bearer_client("nonsense")
        .get(format!("http://{}/ws", addrs.websocket))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    node.app.stop().await;
}

#[tokio::test]
async fn a_slow_subscriber_gets_a_lag_notice_and_never_slows_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.detection.enabled = false;
    cfg.auth.rate_limit.per_ip_per_second = 100_000;
    cfg.auth.rate_limit.per_principal_per_second = 100_000;
    let node = Node::start(cfg).await;
    let mut socket = connected(&node, "graphql-transport-ws").await;
    ws::subscribe(
        &mut socket,
        false,
        "tail",
        "subscription { events { events { message } missed } }",
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The subscriber reads nothing while 1000 batches of 20 events of 1 KiB
    // are committed: far more than its buffer and the socket's hold. Every
    // request must still be acknowledged: the writer never waits for it.
    let padding = "x".repeat(1024);
    for batch in 0..1000 {
        let body: String = (0..20)
            .map(|i| json!({"message": format!("lag {batch}-{i} {padding}")}).to_string() + "\n")
            .collect();
        let (status, _) = node.ingest(body).await;
        assert_eq!(status, 200, "batch {batch} was not acknowledged");
    }
    let mut received = 0u64;
    let mut missed = 0u64;
    while let Some(msg) = ws::next(&mut socket, Duration::from_secs(3)).await {
        let feed = &msg["payload"]["data"]["events"];
        received += feed["events"].as_array().unwrap().len() as u64;
        missed += feed["missed"].as_u64().unwrap();
    }
    assert!(missed > 0, "no lag notice: received {received} events");
    assert!(received > 0 && received < 20_000, "received {received}");
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("secmon_subscription_lagged_total{feed=\"events\"}"),
        "{metrics}"
    );
    node.app.stop().await;
}

#[tokio::test]
async fn a_connection_ends_once_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.auth.access_token_ttl_seconds = 2;
    let node = Node::start(cfg).await;
    let mut socket = connected(&node, "graphql-transport-ws").await;
    ws::subscribe(
        &mut socket,
        false,
        "status",
        "subscription { systemStatus(intervalSeconds: 1) { uptimeSeconds } }",
        json!({}),
    )
    .await;
    assert!(
        ws::next(&mut socket, Duration::from_secs(5))
            .await
            .is_some()
    );
    let started = std::time::Instant::now();
    while ws::next(&mut socket, Duration::from_secs(10))
        .await
        .is_some()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the connection outlived its token"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    node.app.stop().await;
}

/// A third-party client, Python's `gql` (scripts/test.sh installs it), over
/// both subprotocols: alerts reach it as they are raised.
#[tokio::test]
async fn the_gql_python_client_receives_alerts_over_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gql_subscribe.py");
    for (i, subprotocol) in ["graphql-transport-ws", "graphql-ws"]
        .into_iter()
        .enumerate()
    {
        let mut child = tokio::process::Command::new("python3")
            .arg(&script)
            .arg(format!("ws://{}/ws", node.app.addrs().websocket))
            .arg(&node.token)
            .arg(subprotocol)
            .arg("subscription { alerts { alert { ruleId sourceIp } missed } }")
            .arg("1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The client subscribes in its own time: raise alerts until it has one.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let ip = format!("192.0.2.{}", 100 + i);
        let out = loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().await.unwrap();
                assert!(
                    status.success(),
                    "gql ({subprotocol}; needs `pip install gql[websockets]`, scripts/test.sh does): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                break out;
            }
            assert!(std::time::Instant::now() < deadline, "gql got no alert");
            assert_eq!(node.ingest(root_login(&ip)).await.0, 200);
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        assert_eq!(
            v["alerts"]["alert"]["ruleId"], ROOT_LOGIN,
            "{subprotocol}: {v}"
        );
        assert_eq!(v["alerts"]["alert"]["sourceIp"], ip.as_str());
    }
    node.app.stop().await;
}

/// Reads `socket` until the server closes it; false when it is still open
/// after `within`.
async fn closed_within(socket: &mut Ws, within: Duration) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// A connection that never sends `connection_init` keeps its place only
/// for the init timeout (10 s): silent upgrades cannot hold every place of
/// the port.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_init_timeout_and_frees_its_place() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.api.max_ws_connections_per_address = 2;
    let node = Node::start(cfg).await;
    let addr = node.app.addrs().websocket;
    let upgrade = || async move {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_tungstenite::client_async(request, tcp).await
    };
    let started = std::time::Instant::now();
    let (mut silent_a, _) = ws::connect(addr, "graphql-transport-ws").await;
    let (mut silent_b, _) = ws::connect(addr, "graphql-ws").await;
    // Both places of the address are taken.
    match upgrade().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429)
        }
        other => panic!("a third upgrade was not refused: {:?}", other.map(|_| ())),
    }
    for socket in [&mut silent_a, &mut silent_b] {
        assert!(
            closed_within(socket, Duration::from_secs(15)).await,
            "a connection that never authenticated is still open"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(14),
        "closed after {elapsed:?}, not the 10 s init timeout"
    );
    // Their places are free: two new connections authenticate and work.
    let mut a = connected(&node, "graphql-transport-ws").await;
    let _b = connected(&node, "graphql-ws").await;
    ws::subscribe(
        &mut a,
        false,
        "status",
        "subscription { systemStatus(intervalSeconds: 1) { uptimeSeconds } }",
        json!({}),
    )
    .await;
    assert!(ws::next(&mut a, Duration::from_secs(5)).await.is_some());
    node.app.stop().await;
}
