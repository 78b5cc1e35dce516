//! The GraphQL API of an in-memory node: a real `App` (temp data dir,
//! loopback ports) started once per process, with a few stored events and
//! an alert, and an analyst API key (analysts read, triage and edit rules;
//! they cannot make the node call out, so no input sends traffic anywhere
//! but loopback). Every input is a request over HTTP, through the guard
//! and the request limits like any client's.
//!
//! A finding: no answer (the node died or hung past the time budget), a
//! 5xx other than 503, a body that is not JSON, or an `INTERNAL` error
//! (what a caught panic becomes).

use std::sync::LazyLock;
use std::time::Duration;

use secmon::App;
use secmon::config::{Config, Secret};
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "fuzz-admin-password";

struct Node {
    /// Kept (not leaked) so LeakSanitizer sees it reachable.
    _app: std::sync::Mutex<App>,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
}

#[allow(clippy::unwrap_used, clippy::expect_used)]
static NODE: LazyLock<Node> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap().keep();
    let mut cfg = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    cfg.ports.graphql = 0;
    cfg.ports.websocket = 0;
    cfg.ports.metrics = 0;
    cfg.ports.health = 0;
    cfg.ports.syslog_udp = None;
    cfg.ports.syslog_tcp = None;
    cfg.ports.syslog_tls = None;
    cfg.index.commit_interval_ms = 50;
    cfg.auth.admin_password = Some(Secret::new(ADMIN_PASSWORD));
    // The fuzzer is one client sending as fast as it can: rate limits
    // would answer nearly every input with 429 and hide the API.
    cfg.auth.rate_limit.per_ip_per_second = 1_000_000;
    cfg.auth.rate_limit.per_principal_per_second = 1_000_000;
    let (app, url, key) = rt.block_on(async {
        let app = App::start(cfg).await.expect("the fuzz node starts");
        let url = format!("http://{}", app.addrs().graphql);
        let anon = reqwest::Client::new();
        let login = post(
            &anon,
            &url,
            json!({"query": "mutation($p: String!) { login(username: \"admin\", password: $p) { accessToken } }",
                   "variables": {"p": ADMIN_PASSWORD}}),
        )
        .await;
        let admin = bearer(login["data"]["login"]["accessToken"].as_str().unwrap());
        let created = post(
            &admin,
            &url,
            json!({"query": "mutation { createApiKey(name: \"fuzz\", role: ANALYST) { key } }"}),
        )
        .await;
        let key = created["data"]["createApiKey"]["key"].as_str().unwrap().to_owned();
        let lines = [
            "<38>Jan  5 10:00:00 web-1 sshd[42]: Failed password for root from 10.0.0.5 port 22 ssh2",
            "<38>Jan  5 10:00:01 web-1 sshd[42]: Accepted password for root from 10.0.0.5 port 22 ssh2",
            "<86>Jan  5 10:00:02 db-1 sudo: alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/sh",
        ];
        let body: String = lines
            .iter()
            .map(|l| json!({"message": l, "labels": {"env": "fuzz"}}).to_string() + "\n")
            .collect();
        admin
            .post(format!("{url}/api/v1/ingest"))
            .body(body)
            .send()
            .await
            .unwrap();
        (app, url, key)
    });
    Node {
        _app: std::sync::Mutex::new(app),
        rt,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .default_headers(auth_header(&key))
            .build()
            .unwrap(),
        url,
    }
});

fn auth_header(credential: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(value) = format!("Bearer {credential}").parse() {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    headers
}

fn bearer(credential: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(auth_header(credential))
        .build()
        .unwrap_or_default()
}

#[allow(clippy::unwrap_used)]
async fn post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    http.post(format!("{url}/graphql"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sends a raw `/graphql` POST body and checks the answer (see the module docs).
fn send(body: Vec<u8>) {
    let node = &*NODE;
    node.rt.block_on(async {
        let response = node
            .http
            .post(format!("{}/graphql", node.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the node did not answer: {e}"));
        let status = response.status();
        assert!(
            !status.is_server_error() || status.as_u16() == 503,
            "the node answered {status}"
        );
        let bytes = response.bytes().await.unwrap_or_default();
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            // 4xx refusals before GraphQL (body too large, bad JSON) may be plain text.
            assert!(
                status.is_client_error(),
                "a {status} answer that is not JSON"
            );
            return;
        };
        for answer in v.as_array().map_or(std::slice::from_ref(&v), Vec::as_slice) {
            for error in answer["errors"].as_array().into_iter().flatten() {
                assert_ne!(
                    error["extensions"]["code"], "INTERNAL",
                    "an internal error: {error}"
                );
            }
        }
    });
}

/// A GraphQL request: the document, then (after a 0x00 byte) the
/// variables as JSON. Input that starts with `{` or `[` is sent as the
/// whole request body instead (batches, odd shapes, deep JSON).
pub fn graphql(data: &[u8]) {
    if matches!(data.first(), Some(b'{' | b'[')) {
        return send(data.to_vec());
    }
    let (document, variables) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let variables = serde_json::from_slice::<Value>(variables).unwrap_or(Value::Null);
    let body = json!({"query": String::from_utf8_lossy(document), "variables": variables});
    send(body.to_string().into_bytes());
}

/// A search query string, as `events(query:)`, `eventStats` and
/// `eventHistogram` take it.
pub fn search_query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let body = json!({
        "query": "query($q: String) { events(query: $q, first: 5) { totalCount edges { node { id } } } \
                  eventStats(query: $q, groupBy: \"host.name\") { key count } \
                  eventHistogram(query: $q, interval: \"1h\") { count } }",
        "variables": {"q": query},
    });
    send(body.to_string().into_bytes());
}

/// A paging cursor, as `events(after:)` takes it.
pub fn cursor(data: &[u8]) {
    let cursor = String::from_utf8_lossy(data);
    let body = json!({
        "query": "query($c: String) { events(first: 2, after: $c) { totalCount edges { cursor node { id } } } }",
        "variables": {"c": cursor},
    });
    send(body.to_string().into_bytes());
}
