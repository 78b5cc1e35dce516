//! Accounts, roles and abuse resistance over the real API: the whole
//! role × operation matrix, nothing answering without credentials, login
//! limits, token rotation and expiry, rate limits, and the audit log with
//! `secmon audit verify` catching tampering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ADMIN_PASSWORD, Node, bearer_client, config};
use serde_json::{Value, json};

/// Runs `query` with `http`; the response body, whatever the status.
async fn gql(node: &Node, http: &reqwest::Client, query: &str, variables: Value) -> (u16, Value) {
    let resp = http
        .post(node.api("/graphql"))
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The first error code of a GraphQL answer, or "OK".
fn code(v: &Value) -> String {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("OK")
        .to_owned()
}

async fn create_user(node: &Node, name: &str, role: &str) -> reqwest::Client {
    let password = format!("{name}-password-123");
    let v = node
        .graphql(
            "mutation($u: String!, $p: String!, $r: Role!) { createUser(username: $u, password: $p, role: $r) { username role } }",
            json!({"u": name, "p": password, "r": role}),
        )
        .await;
    assert_eq!(v["data"]["createUser"]["role"], role, "{v}");
    node.client_for(name, &password).await
}

async fn create_key(node: &Node, name: &str, role: &str) -> String {
    let v = node
        .graphql(
            "mutation($n: String!, $r: Role!) { createApiKey(name: $n, role: $r) { key apiKey { id name role } } }",
            json!({"n": name, "r": role}),
        )
        .await;
    v["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

/// One operation of the matrix: a GraphQL document or an HTTP route.
enum Op {
    Graphql(&'static str),
    /// Method, path (on the API port), body.
    Http(&'static str, &'static str, &'static str),
    Metrics,
}

/// Every operation, and for each principal (anonymous, admin, analyst,
/// viewer, ingest key, viewer key) whether it is allowed. Written out by
/// hand from the role definitions in the docs, not derived from the code.
fn matrix() -> Vec<(&'static str, Op, [bool; 6])> {
    use Op::*;
    const ALL: [bool; 6] = [false, true, true, true, true, true];
    const READ: [bool; 6] = [false, true, true, true, false, true];
    const TRIAGE: [bool; 6] = [false, true, true, false, false, false];
    const ADMIN: [bool; 6] = [false, true, false, false, false, false];
    const INGEST: [bool; 6] = [false, true, false, false, true, false];
    const RULES: [bool; 6] = TRIAGE;
    vec![
        ("me", Graphql("{ me { name role } }"), ALL),
        (
            "events",
            Graphql("{ events(first: 1) { totalCount } }"),
            READ,
        ),
        (
            "event",
            Graphql("{ event(id: \"01ARZ3NDEKTSV4RRFFQ69G5FAV\") { id } }"),
            READ,
        ),
        (
            "eventStats",
            Graphql("{ eventStats(groupBy: \"host.name\") { key count } }"),
            READ,
        ),
        (
            "eventHistogram",
            Graphql("{ eventHistogram(interval: \"1h\") { count } }"),
            READ,
        ),
        (
            "alerts",
            Graphql("{ alerts(first: 1) { edges { node { id } } } }"),
            READ,
        ),
        ("alert", Graphql("{ alert(id: \"1\") { id } }"), READ),
        ("system", Graphql("{ system { version } }"), READ),
        // No DATABASE_URL here: allowed means NOT_CONFIGURED, not a refusal.
        ("fleet", Graphql("{ fleet { nodes { id } } }"), READ),
        (
            "notifications",
            Graphql("{ notifications(first: 1) { edges { node { channel } } } }"),
            READ,
        ),
        ("decisions", Graphql("{ decisions { ip } }"), READ),
        (
            "addDecision",
            Graphql("mutation { addDecision(ip: \"192.0.2.1\", reason: \"x\") { ip } }"),
            TRIAGE,
        ),
        (
            "deleteDecision",
            Graphql("mutation { deleteDecision(ip: \"192.0.2.1\") }"),
            TRIAGE,
        ),
        (
            "notificationChannels",
            Graphql("{ notificationChannels { name } }"),
            ADMIN,
        ),
        (
            "setNotificationChannel",
            Graphql("mutation { setNotificationChannel(channel: {name: \"x\"}) }"),
            ADMIN,
        ),
        (
            "deleteNotificationChannel",
            Graphql("mutation { deleteNotificationChannel(name: \"none\") }"),
            ADMIN,
        ),
        (
            "testNotificationChannel",
            Graphql("mutation { testNotificationChannel(name: \"none\") { ok } }"),
            ADMIN,
        ),
        ("rules", Graphql("{ rules(first: 1) { totalCount } }"), READ),
        ("rule", Graphql("{ rule(id: \"nope\") { id } }"), READ),
        (
            "backtestRule",
            Graphql(
                "{ backtestRule(yaml: \"title: x\", from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") { count } }",
            ),
            RULES,
        ),
        (
            "createRule",
            Graphql("mutation { createRule(yaml: \"title: no id\") { id } }"),
            RULES,
        ),
        (
            "updateRule",
            Graphql("mutation { updateRule(id: \"nope\", yaml: \"title: no id\") { id } }"),
            RULES,
        ),
        (
            "setRuleEnabled",
            Graphql("mutation { setRuleEnabled(id: \"nope\", enabled: false) { id } }"),
            RULES,
        ),
        (
            "deleteRule",
            Graphql("mutation { deleteRule(id: \"nope\") }"),
            RULES,
        ),
        ("users", Graphql("{ users { username } }"), ADMIN),
        ("apiKeys", Graphql("{ apiKeys { id } }"), ADMIN),
        (
            "auditLog",
            Graphql("{ auditLog(first: 1) { edges { node { seq } } } }"),
            ADMIN,
        ),
        (
            "acknowledgeAlert",
            Graphql("mutation { acknowledgeAlert(id: \"999\") { id } }"),
            TRIAGE,
        ),
        (
            "resolveAlert",
            Graphql("mutation { resolveAlert(id: \"999\") { id } }"),
            TRIAGE,
        ),
        (
            "markFalsePositive",
            Graphql("mutation { markFalsePositive(id: \"999\") { id } }"),
            TRIAGE,
        ),
        (
            "reopenAlert",
            Graphql("mutation { reopenAlert(id: \"999\") { id } }"),
            TRIAGE,
        ),
        (
            "assignAlert",
            Graphql("mutation { assignAlert(id: \"999\", username: \"x\") { id } }"),
            TRIAGE,
        ),
        (
            "commentAlert",
            Graphql("mutation { commentAlert(id: \"999\", text: \"x\") { id } }"),
            TRIAGE,
        ),
        (
            "setAlertsStatus",
            Graphql("mutation { setAlertsStatus(ids: [\"999\"], status: RESOLVED) { id } }"),
            TRIAGE,
        ),
        (
            "createUser",
            Graphql(
                "mutation { createUser(username: \"ADMIN is not a valid name\", password: \"x\", role: VIEWER) { username } }",
            ),
            ADMIN,
        ),
        (
            "setUserRole",
            Graphql("mutation { setUserRole(username: \"nobody\", role: VIEWER) { username } }"),
            ADMIN,
        ),
        (
            "setUserDisabled",
            Graphql(
                "mutation { setUserDisabled(username: \"nobody\", disabled: true) { username } }",
            ),
            ADMIN,
        ),
        (
            "resetPassword",
            Graphql(
                "mutation { resetPassword(username: \"nobody\", password: \"long-enough-password\") { username } }",
            ),
            ADMIN,
        ),
        (
            "createApiKey",
            Graphql("mutation { createApiKey(name: \"\", role: VIEWER) { key } }"),
            ADMIN,
        ),
        (
            "revokeApiKey",
            Graphql("mutation { revokeApiKey(id: \"nope\") { id } }"),
            ADMIN,
        ),
        (
            "ingestEvents",
            Graphql("mutation { ingestEvents(events: [{message: \"via graphql\"}]) { accepted } }"),
            INGEST,
        ),
        (
            "POST /api/v1/ingest",
            Http("POST", "/api/v1/ingest", "{\"message\":\"via http\"}\n"),
            INGEST,
        ),
        (
            "POST /_bulk",
            Http(
                "POST",
                "/_bulk",
                "{\"index\":{}}\n{\"message\":\"via bulk\"}\n",
            ),
            INGEST,
        ),
        (
            "POST /logs/_bulk",
            Http(
                "POST",
                "/logs/_bulk",
                "{\"index\":{}}\n{\"message\":\"via bulk\"}\n",
            ),
            INGEST,
        ),
        ("GET / (Elasticsearch info)", Http("GET", "/", ""), INGEST),
        ("GET /metrics", Metrics, READ),
    ]
}

/// Allowed means the guard let the request through: a GraphQL answer may
/// still carry a domain error (NOT_FOUND, BAD_REQUEST) from the operation.
fn verdict(status: u16, body: &Value) -> Result<(), String> {
    match (status, code(body).as_str()) {
        (401, _) | (_, "UNAUTHENTICATED") => Err("UNAUTHENTICATED".into()),
        (403, _) | (_, "FORBIDDEN") => Err("FORBIDDEN".into()),
        (200..=299, _) => Ok(()),
        (s, c) => Err(format!("status {s}, code {c}: {body}")),
    }
}

#[tokio::test]
async fn every_role_gets_exactly_its_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Every operation for every principal, all from 127.0.0.1: more than
    // the default burst per address.
    cfg.auth.rate_limit.burst = 1_000;
    let node = Node::start(cfg).await;
    let analyst = create_user(&node, "alice", "ANALYST").await;
    let viewer = create_user(&node, "victor", "VIEWER").await;
    let ingest = bearer_client(&create_key(&node, "shipper", "INGEST").await);
    let viewer_key = bearer_client(&create_key(&node, "dashboard", "VIEWER").await);
    let principals = [
        ("anonymous", node.anon.clone()),
        ("admin", node.http.clone()),
        ("analyst", analyst),
        ("viewer", viewer),
        ("ingest key", ingest),
        ("viewer key", viewer_key),
    ];
    let mut wrong = Vec::new();
    for (name, op, allowed) in matrix() {
        for ((who, http), allowed) in principals.iter().zip(allowed) {
            let (status, body) = match &op {
                Op::Graphql(q) => gql(&node, http, q, json!({})).await,
                Op::Http(method, path, body) => {
                    let req = match *method {
                        "GET" => http.get(node.api(path)),
                        _ => http.post(node.api(path)).body(*body),
                    };
                    let resp = req.send().await.unwrap();
                    let status = resp.status().as_u16();
                    (status, resp.json().await.unwrap_or(Value::Null))
                }
                Op::Metrics => {
                    let resp = http
                        .get(format!("http://{}/metrics", node.app.addrs().metrics))
                        .send()
                        .await
                        .unwrap();
                    (resp.status().as_u16(), Value::Null)
                }
            };
            let got = verdict(status, &body);
            let expected_refusal = if *who == "anonymous" {
                "UNAUTHENTICATED"
            } else {
                "FORBIDDEN"
            };
            let ok = match (&got, allowed) {
                (Ok(()), true) => true,
                (Err(e), false) => e == expected_refusal,
                _ => false,
            };
            if !ok {
                wrong.push(format!(
                    "{name} as {who}: expected allowed={allowed}, got {got:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Refused mutations are audited.
    let v = node
        .graphql(
            "{ auditLog(first: 200) { edges { node { action actor target after } } } }",
            json!({}),
        )
        .await;
    let denied: Vec<&Value> = v["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .filter(|n| n["action"] == "access.denied")
        .collect();
    assert!(
        denied
            .iter()
            .any(|n| n["actor"] == "victor" && n["target"] == "createUser"),
        "{denied:?}"
    );
    assert!(
        denied
            .iter()
            .any(|n| n["actor"] == "apikey:shipper" && n["target"] == "acknowledgeAlert"),
        "{denied:?}"
    );
    node.app.stop().await;
}

#[tokio::test]
async fn nothing_but_health_and_ready_answers_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let addrs = node.app.addrs();
    let anon = &node.anon;
    assert_eq!(node.ingest("{\"message\":\"secret\"}\n").await.0, 200);

    // Health and readiness answer, and hold no data.
    for path in ["/health", "/ready"] {
        let resp = anon
            .get(format!("http://{}{path}", addrs.health))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(!resp.text().await.unwrap().contains("secret"));
    }

    // GraphQL: every query field refuses; so does introspection.
    for query in [
        "{ events(first: 5) { edges { node { message } } } }",
        "{ system { eventsStored } }",
        "{ alerts { edges { node { id } } } }",
        "{ me { name } }",
    ] {
        let (status, v) = gql(&node, anon, query, json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(code(&v), "UNAUTHENTICATED", "{query}: {v}");
        assert!(v["data"].is_null(), "{v}");
    }
    let (_, v) = gql(&node, anon, "{ __schema { types { name } } }", json!({})).await;
    assert!(v["data"]["__schema"].is_null(), "{v}");
    let resp = anon
        .get(node.api("/graphql?query=%7Bsystem%7BeventsStored%7D%7D"))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(code(&v), "UNAUTHENTICATED", "{v}");

    // A credential that does not check out is 401 at once.
    for bad in [
        "Bearer nonsense",
        "Bearer a.b.c",
        "Bearer smk_nope_nope",
        "Basic Zm9vOmJhcg==",
    ] {
        let resp = anon
            .post(node.api("/graphql"))
            .header("authorization", bad)
            .json(&json!({"query": "{ me { name } }"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(code(&v), "UNAUTHENTICATED");
    }

    // Ingest routes and metrics: 401.
    for (method, url) in [
        ("POST", node.api("/api/v1/ingest")),
        ("POST", node.api("/_bulk")),
        ("PUT", node.api("/idx/_bulk")),
        ("GET", node.api("/")),
        ("GET", format!("http://{}/metrics", addrs.metrics)),
    ] {
        let resp = anon
            .request(method.parse().unwrap(), &url)
            .body("{\"message\":\"x\"}\n")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{method} {url}");
    }

    // The WebSocket port: no subscription without credentials.
    let (mut ws, _) = common::ws::connect(addrs.websocket, "graphql-transport-ws").await;
    let closed = common::ws::init(&mut ws, json!({})).await;
    assert!(
        closed.is_err(),
        "connection_init without a credential was acknowledged"
    );

    // Login still works without credentials (it is how one gets them).
    let (_, v) = gql(
        &node,
        anon,
        "mutation($p: String!) { login(username: \"admin\", password: $p) { accessToken } }",
        json!({"p": ADMIN_PASSWORD}),
    )
    .await;
    assert!(v["data"]["login"]["accessToken"].is_string(), "{v}");
    node.app.stop().await;
}

#[tokio::test]
async fn failed_logins_look_alike_and_lock_out_for_growing_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.auth.login.max_failures_per_account = 3;
    cfg.auth.login.max_failures_per_ip = 100;
    let node = Node::start(cfg).await;
    let login = |user: &'static str, password: &'static str| {
        let node = &node;
        async move {
            gql(
                node,
                &node.anon,
                "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }",
                json!({"u": user, "p": password}),
            )
            .await
            .1
        }
    };
    let unknown = login("nobody", "wrong-password-1").await;
    let wrong = login("admin", "wrong-password-1").await;
    assert_eq!(code(&unknown), "UNAUTHENTICATED");
    assert_eq!(
        unknown["errors"][0]["message"], wrong["errors"][0]["message"],
        "unknown user and wrong password must not be told apart"
    );
    login("admin", "wrong-password-2").await;
    login("admin", "wrong-password-3").await;
    // Three failures are free; the fourth locks the account.
    assert_eq!(
        code(&login("admin", "wrong-password-4").await),
        "UNAUTHENTICATED"
    );
    // Locked now, even with the right password.
    let locked = login("admin", ADMIN_PASSWORD).await;
    assert_eq!(code(&locked), "RATE_LIMITED", "{locked}");
    let message = locked["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("too many failed logins: try again in"),
        "{message}"
    );
    // An unknown name locks the same way: a lockout says nothing about existence.
    for _ in 0..4 {
        login("nobody", "wrong-password-1").await;
    }
    assert_eq!(code(&login("nobody", "x").await), "RATE_LIMITED");
    // The first lock is 1 s; after it the right password works and clears the count.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ok = login("admin", ADMIN_PASSWORD).await;
    assert!(ok["data"]["login"]["accessToken"].is_string(), "{ok}");

    // Every attempt is in the audit log, with the source address.
    let v = node
        .graphql(
            "{ auditLog(first: 50) { edges { node { action actor sourceIp } } } }",
            json!({}),
        )
        .await;
    let entries: Vec<&Value> = v["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    let failed = entries
        .iter()
        .filter(|e| e["action"] == "login.failed" && e["actor"] == "admin")
        .count();
    assert_eq!(failed, 4, "{entries:?}");
    assert!(
        entries
            .iter()
            .all(|e| e["action"] != "login" || e["sourceIp"] == "127.0.0.1")
    );
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("secmon_logins_total{result=\"locked\"}"),
        "{metrics}"
    );
    node.app.stop().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replayed_one_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let login = gql(
        &node,
        &node.anon,
        "mutation($p: String!) { login(username: \"admin\", password: $p) { accessToken refreshToken expiresAt me { name role capabilities } } }",
        json!({"p": ADMIN_PASSWORD}),
    )
    .await
    .1;
    let payload = &login["data"]["login"];
    assert_eq!(payload["me"]["role"], "ADMIN");
    assert_eq!(payload["me"]["capabilities"].as_array().unwrap().len(), 5);
    let expires =
        chrono::DateTime::parse_from_rfc3339(payload["expiresAt"].as_str().unwrap()).unwrap();
    let ttl = expires.to_utc() - chrono::Utc::now();
    assert!(ttl <= chrono::Duration::minutes(15) && ttl > chrono::Duration::minutes(14));

    let refresh = |token: String| {
        let node = &node;
        async move {
            gql(
                node,
                &node.anon,
                "mutation($t: String!) { refresh(refreshToken: $t) { accessToken refreshToken } }",
                json!({"t": token}),
            )
            .await
            .1
        }
    };
    let first = payload["refreshToken"].as_str().unwrap().to_owned();
    let second = refresh(first.clone()).await;
    let second_refresh = second["data"]["refresh"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let access = second["data"]["refresh"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, me) = gql(&node, &bearer_client(&access), "{ me { name } }", json!({})).await;
    assert_eq!(me["data"]["me"]["name"], "admin");
    // The spent token replayed: refused, and the whole family with it.
    assert_eq!(code(&refresh(first).await), "UNAUTHENTICATED");
    assert_eq!(code(&refresh(second_refresh).await), "UNAUTHENTICATED");

    // logout revokes; changePassword ends every session at once.
    let fresh = |node: &Node| {
        let (anon, api) = (node.anon.clone(), node.app.addrs().graphql);
        async move { common::login_pair(&anon, api, "admin", ADMIN_PASSWORD).await }
    };
    let (_, refresh_token) = fresh(&node).await;
    let (_, v) = gql(
        &node,
        &node.anon,
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({"t": refresh_token}),
    )
    .await;
    assert_eq!(v["data"]["logout"], true, "{v}");
    assert_eq!(code(&refresh(refresh_token).await), "UNAUTHENTICATED");

    let (access, refresh_token) = fresh(&node).await;
    let admin = bearer_client(&access);
    let (_, v) = gql(
        &node,
        &admin,
        "mutation($o: String!) { changePassword(currentPassword: $o, newPassword: \"short\") }",
        json!({"o": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(code(&v), "BAD_REQUEST", "a short password is refused: {v}");
    let (_, v) = gql(
        &node,
        &admin,
        "mutation($o: String!) { changePassword(currentPassword: $o, newPassword: \"a-new-long-password\") }",
        json!({"o": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(v["data"]["changePassword"], true, "{v}");
    let (status, _) = gql(&node, &admin, "{ me { name } }", json!({})).await;
    assert_eq!(status, 401, "the old access token ends with the password");
    assert_eq!(code(&refresh(refresh_token).await), "UNAUTHENTICATED");
    let token = common::login(
        &node.anon,
        node.app.addrs().graphql,
        "admin",
        "a-new-long-password",
    )
    .await;
    assert!(!token.is_empty());
    node.app.stop().await;
}

#[tokio::test]
async fn access_tokens_expire_and_disabled_users_are_out_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.auth.access_token_ttl_seconds = 1;
    let node = Node::start(cfg).await;
    let viewer = create_user(&node, "victor", "VIEWER").await;
    let (_, v) = gql(&node, &viewer, "{ me { name } }", json!({})).await;
    assert_eq!(v["data"]["me"]["name"], "victor");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = viewer
        .post(node.api("/graphql"))
        .json(&json!({"query": "{ me { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{v}"
    );

    // A disabled user's fresh token stops working at once.
    let viewer = node.client_for("victor", "victor-password-123").await;
    let admin = node.client_for("admin", ADMIN_PASSWORD).await;
    let (_, v) = gql(
        &node,
        &admin,
        "mutation { setUserDisabled(username: \"victor\", disabled: true) { disabled } }",
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["setUserDisabled"]["disabled"], true, "{v}");
    let (status, _) = gql(&node, &viewer, "{ me { name } }", json!({})).await;
    assert_eq!(status, 401);
    let (_, v) = gql(
        &node,
        &node.anon,
        "mutation { login(username: \"victor\", password: \"victor-password-123\") { accessToken } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "UNAUTHENTICATED");

    // A revoked API key is refused at once.
    let (_, v) = gql(
        &node,
        &admin,
        "mutation { createApiKey(name: \"temp\", role: VIEWER) { key } }",
        json!({}),
    )
    .await;
    let key = v["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = key.split('_').nth(1).unwrap().to_owned();
    let keyed = bearer_client(&key);
    let (status, _) = gql(&node, &keyed, "{ me { name } }", json!({})).await;
    assert_eq!(status, 200);
    let (_, v) = gql(
        &node,
        &admin,
        "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
        json!({"id": id}),
    )
    .await;
    assert!(v["data"]["revokeApiKey"]["revokedAt"].is_string(), "{v}");
    let (status, _) = gql(&node, &keyed, "{ me { name } }", json!({})).await;
    assert_eq!(status, 401);
    node.app.stop().await;
}

#[tokio::test]
async fn request_rates_are_limited_per_address_and_per_principal_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.auth.rate_limit.per_ip_per_second = 5;
    cfg.auth.rate_limit.per_principal_per_second = 5;
    cfg.auth.rate_limit.burst = 10;
    let node = Node::start(cfg).await;
    let addrs = node.app.addrs();
    // Let the bucket refill after the login.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (what, url) in [
        ("api", node.api("/graphql?query=%7Bme%7Bname%7D%7D")),
        ("metrics", format!("http://{}/metrics", addrs.metrics)),
        ("websocket", format!("http://{}/ws", addrs.websocket)),
    ] {
        let mut limited = None;
        for i in 0..40 {
            let resp = node.http.get(&url).send().await.unwrap();
            if resp.status() == 429 {
                limited = Some((i, resp));
                break;
            }
        }
        let (i, resp) = limited.unwrap_or_else(|| panic!("{what}: never limited"));
        assert!(
            i >= 5,
            "{what}: limited after {i} requests, below the burst"
        );
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "{what}: Retry-After {retry}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(code(&v), "RATE_LIMITED", "{what}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("secmon_rate_limited_total{server=\"api\""),
        "{metrics}"
    );
    node.app.stop().await;
}

#[tokio::test]
async fn the_audit_log_chains_every_change_and_verify_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = Node::start(config(&data)).await;
    let analyst = create_user(&node, "alice", "ANALYST").await;
    // An alert to triage: a root login raises one.
    let now = chrono::Utc::now().to_rfc3339();
    let event = json!({"event.dataset": "sshd", "event.category": "authentication",
        "event.outcome": "success", "event.action": "ssh_login", "user.name": "root",
        "source.ip": "192.0.2.7", "message": "Accepted password for root from 192.0.2.7",
        "@timestamp": now});
    assert_eq!(node.ingest(format!("{event}\n")).await.0, 200);
    let v = node
        .graphql("{ alerts(first: 1) { edges { node { id } } } }", json!({}))
        .await;
    let id = v["data"]["alerts"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, v) = gql(
        &node,
        &analyst,
        "mutation($id: ID!) { acknowledgeAlert(id: $id, comment: \"on it\") { status } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        v["data"]["acknowledgeAlert"]["status"], "ACKNOWLEDGED",
        "{v}"
    );
    create_key(&node, "shipper", "INGEST").await;

    // Newest first, paginated, with before and after.
    let page = |after: Option<String>| {
        let node = &node;
        async move {
            node.graphql(
                "query($a: String) { auditLog(first: 2, after: $a) { pageInfo { hasNextPage endCursor } edges { node { seq action actor sourceIp target before after prev } } } }",
                json!({"a": after}),
            )
            .await
        }
    };
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let v = page(after).await;
        let log = &v["data"]["auditLog"];
        entries.extend(
            log["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"].clone()),
        );
        if log["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = log["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "apikey.create",
            "alert.acknowledge",
            "login",
            "user.create",
            "login",
            "user.create"
        ],
        "{entries:?}"
    );
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [6, 5, 4, 3, 2, 1]);
    let ack = &entries[1];
    assert_eq!(ack["actor"], "alice");
    assert_eq!(ack["sourceIp"], "127.0.0.1");
    assert_eq!(ack["target"], id);
    assert_eq!(ack["before"][0]["status"], "open");
    assert_eq!(ack["after"]["alerts"][0]["status"], "acknowledged");
    assert_eq!(ack["after"]["comment"], "on it");
    assert_eq!(
        entries[5]["actor"].as_str().unwrap().split(':').next(),
        Some("local")
    );
    node.app.stop().await;

    let verify = || {
        std::process::Command::new(common::daemon::BIN)
            .args(["audit", "verify", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("audit log intact: 6 entries, head "),
        "{stdout}"
    );

    // Edit entry 5 (the acknowledgement) and verification names it.
    let store = secmon::store::Store::open(&data).unwrap();
    store
        .tamper_audit(5, |v| {
            let at = v.windows(5).position(|w| w == b"alice").unwrap();
            v[at..at + 5].copy_from_slice(b"bobby");
        })
        .unwrap();
    drop(store);
    let out = verify();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("audit entry 5 was changed"), "{stderr}");
}

/// The audit actions of the newest entries, newest first.
async fn audit_actions(node: &Node) -> Vec<(String, String)> {
    let v = node
        .graphql(
            "{ auditLog(first: 200) { edges { node { action actor } } } }",
            json!({}),
        )
        .await;
    v["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["action"].as_str().unwrap().to_owned(),
                e["node"]["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_wrong_current_password_counts_like_a_failed_login_and_refreshes_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let carol = create_user(&node, "carol", "VIEWER").await;
    let change = "mutation($o: String!) { changePassword(currentPassword: $o, newPassword: \"a-new-long-password\") }";
    // 5 free failures, the 6th locks: then carol is refused before any
    // check, for changePassword and login alike.
    for i in 0..6 {
        let (_, v) = gql(&node, &carol, change, json!({"o": format!("wrong-{i}")})).await;
        assert_eq!(code(&v), "UNAUTHENTICATED", "{v}");
    }
    let (_, v) = gql(&node, &carol, change, json!({"o": "carol-password-123"})).await;
    assert_eq!(code(&v), "RATE_LIMITED", "{v}");
    let (_, v) = gql(
        &node,
        &node.anon,
        "mutation { login(username: \"carol\", password: \"carol-password-123\") { accessToken } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "RATE_LIMITED", "{v}");
    let actions = audit_actions(&node).await;
    let count = |action: &str| actions.iter().filter(|(a, _)| a == action).count();
    assert_eq!(count("user.change_password.failed"), 6, "{actions:?}");
    assert_eq!(count("user.change_password.locked"), 1, "{actions:?}");
    // The same lockout period: the login refusal is counted, not written.
    assert_eq!(count("login.locked"), 0, "{actions:?}");

    // Refresh: success, a replay, and a token nobody was issued.
    let refresh = |token: String| {
        let node = &node;
        async move {
            gql(
                node,
                &node.anon,
                "mutation($t: String!) { refresh(refreshToken: $t) { refreshToken } }",
                json!({"t": token}),
            )
            .await
            .1
        }
    };
    let (_, first) = common::login_pair(
        &node.anon,
        node.app.addrs().graphql,
        "admin",
        ADMIN_PASSWORD,
    )
    .await;
    assert_eq!(code(&refresh(first.clone()).await), "OK");
    assert_eq!(code(&refresh(first).await), "UNAUTHENTICATED");
    assert_eq!(
        code(&refresh("smr_not-a-token-anyone-was-given".into()).await),
        "UNAUTHENTICATED"
    );
    let actions = audit_actions(&node).await;
    assert_eq!(
        actions[0],
        ("token.refresh.failed".into(), "anonymous".into())
    );
    assert_eq!(actions[1], ("token.reuse_revoked".into(), "admin".into()));
    assert_eq!(actions[2], ("token.refresh".into(), "admin".into()));
    let metrics = node.metrics().await;
    for series in [
        "secmon_password_changes_total{result=\"failure\"} 6",
        "secmon_password_changes_total{result=\"locked\"} 1",
        "secmon_token_refreshes_total{result=\"success\"} 1",
        "secmon_token_refreshes_total{result=\"reused\"} 1",
        "secmon_token_refreshes_total{result=\"unknown\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}
