//! The foundation end to end: HTTP ingest -> redb -> tantivy -> GraphQL,
//! over real sockets, across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, config, log_as_ndjson, shared_data};
use serde_json::{Value, json};

const OPENSSH: &str = "loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log";

/// Independent count: lines of the file containing the phrase.
fn count_lines_with(path: &std::path::Path, phrase: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.contains(phrase))
        .count() as u64
}

#[tokio::test]
async fn openssh_sample_is_searchable_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = shared_data(OPENSSH);
    let (lines, body) = log_as_ndjson(&path);
    assert_eq!(lines, 2000);
    let failed = count_lines_with(&path, "Failed password");
    assert_eq!(failed, 520);

    let node = Node::start(config(dir.path())).await;
    let (status, resp) = node.ingest(body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp, json!({"accepted": 2000, "rejected": 0, "errors": []}));
    node.wait_indexed().await;
    assert_eq!(node.search_total("\"Failed password\"").await, failed);
    assert_eq!(node.search_total("").await, 2000);
    assert_eq!(
        node.search_total("183.62.140.253 \"Failed password\"")
            .await,
        count_both(&path)
    );
    node.app.stop().await;

    let node = Node::start(config(dir.path())).await;
    let sys = node
        .graphql("{ system { eventsStored indexLag nodeId } }", json!({}))
        .await;
    assert_eq!(sys["data"]["system"]["eventsStored"], 2000, "{sys}");
    assert_eq!(sys["data"]["system"]["indexLag"], 0, "{sys}");
    assert_eq!(node.search_total("\"Failed password\"").await, failed);
    node.app.stop().await;

    // A lost index is rebuilt from redb in the background; the API answers meanwhile.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let node = Node::start(config(dir.path())).await;
    let sys = node.graphql("{ system { eventsStored } }", json!({})).await;
    assert_eq!(sys["data"]["system"]["eventsStored"], 2000, "{sys}");
    node.wait_indexed().await;
    assert_eq!(node.search_total("\"Failed password\"").await, failed);
    node.app.stop().await;
}

fn count_both(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.contains("183.62.140.253") && l.contains("Failed password"))
        .count() as u64
}

#[tokio::test]
async fn events_page_newest_first_with_cursors_and_event_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let body: String = (0..25)
        .map(|i| {
            json!({"@timestamp": format!("2026-01-01T00:00:{i:02}Z"), "message": format!("login {i}"),
                   "user": {"name": "alice"}, "source.ip": "10.1.2.3", "kube": {"pod": "p1"}})
            .to_string()
                + "\n"
        })
        .collect();
    assert_eq!(node.ingest(body).await.0, 200);
    node.wait_indexed().await;

    let q = "query($after: String) { events(query: \"user.name:alice\", first: 10, after: $after) {
        totalCount edges { cursor node { id message timestamp userName sourceIp fields } }
        pageInfo { hasNextPage endCursor } } }";
    let mut after = Value::Null;
    let mut messages = Vec::new();
    loop {
        let v = node.graphql(q, json!({"after": after})).await;
        let events = &v["data"]["events"];
        assert_eq!(events["totalCount"], 25, "{v}");
        for edge in events["edges"].as_array().unwrap() {
            messages.push(edge["node"]["message"].as_str().unwrap().to_owned());
        }
        if events["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = events["pageInfo"]["endCursor"].clone();
    }
    let expected: Vec<_> = (0..25).rev().map(|i| format!("login {i}")).collect();
    assert_eq!(messages, expected);

    let v = node
        .graphql(
            "{ events(from: \"2026-01-01T00:00:10Z\", to: \"2026-01-01T00:00:12Z\") { totalCount edges { node { id message sourceIp fields } } } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["events"]["totalCount"], 2, "{v}");
    let first = &v["data"]["events"]["edges"][0]["node"];
    assert_eq!(first["message"], "login 11");
    assert_eq!(first["sourceIp"], "10.1.2.3");
    assert_eq!(first["fields"], json!({"kube": {"pod": "p1"}}));

    let id = first["id"].clone();
    let v = node
        .graphql(
            "query($id: ID!) { event(id: $id) { message } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(v["data"]["event"]["message"], "login 11", "{v}");
    let v = node
        .graphql(
            "{ event(id: \"01ARZ3NDEKTSV4RRFFQ69G5FAV\") { message } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["event"], Value::Null, "{v}");
    node.app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_precise_errors_and_the_rest_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ingest.max_body_bytes = 4096;
    let node = Node::start(cfg).await;

    let (status, resp) = node
        .ingest("{\"message\":\"ok\"}\nnot json\n{\"source.port\": -1}\n")
        .await;
    assert_eq!(status, 200);
    assert_eq!(resp["accepted"], 1);
    assert_eq!(resp["rejected"], 2);
    assert_eq!(resp["errors"][0]["line"], 2);
    assert_eq!(resp["errors"][1]["line"], 3);
    assert!(
        resp["errors"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("source.port"),
        "{resp}"
    );

    let (status, _) = node.ingest("x".repeat(5000)).await;
    assert_eq!(status, 413);

    let v = node
        .graphql(
            "{ events(query: \"nosuchfield:1\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_QUERY", "{v}");
    let v = node
        .graphql("{ events(first: 100000) { totalCount } }", json!({}))
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{v}");
    let v = node
        .graphql("{ events(after: \"garbage\") { totalCount } }", json!({}))
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{v}");
    let v = node.graphql("{ nope }", json!({})).await;
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("nope"),
        "{v}"
    );

    node.wait_indexed().await;
    assert_eq!(node.search_total("").await, 1);
    node.app.stop().await;
}

#[tokio::test]
async fn health_ready_metrics_and_graphiql() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let addrs = node.app.addrs();
    let get = |url: String| {
        let http = node.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };

    let resp = get(format!("http://{}/health", addrs.health)).await;
    assert_eq!(resp.status(), 200);
    let resp = get(format!("http://{}/ready", addrs.health)).await;
    assert_eq!(resp.status(), 200);
    let ready: Value = resp.json().await.unwrap();
    assert_eq!(ready["components"]["store"]["ready"], true, "{ready}");
    assert_eq!(ready["components"]["index"]["ready"], true, "{ready}");

    assert_eq!(node.ingest("{\"message\":\"m\"}\nbad\n").await.0, 200);
    node.wait_indexed().await;
    let text = get(format!("http://{}/metrics", addrs.metrics))
        .await
        .text()
        .await
        .unwrap();
    // The recorder is process-wide: under `cargo test` other tests of this
    // binary count too, so these are lower bounds (exact under nextest).
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(value("secmon_events_received_total{source=\"http\"}") >= 2.0);
    assert!(value("secmon_events_rejected_total{source=\"http\"}") >= 1.0);
    assert!(value("secmon_events_stored_total") >= 1.0);
    for needle in [
        "secmon_batch_commit_seconds_bucket",
        "secmon_index_lag_events",
        "secmon_http_requests_total{server=\"api\",route=\"/api/v1/ingest\",status=\"200\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // scripts/test.sh provides promtool and sets SECMON_REQUIRE_PROMTOOL.
    let promtool = which("promtool");
    if std::env::var_os("SECMON_REQUIRE_PROMTOOL").is_some() {
        assert!(
            promtool.is_ok(),
            "promtool is not on PATH (scripts/test.sh fetches it)"
        );
    }
    if let Ok(promtool) = promtool {
        let file = dir.path().join("metrics.txt");
        std::fs::write(&file, &text).unwrap();
        let out = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let resp = node.http.get(node.api("/graphql")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("graphiql"));
    let resp = node
        .http
        .get(node.api("/graphql?query=%7Bsystem%7BeventsStored%7D%7D"))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"]["system"]["eventsStored"], 1, "{v}");

    let ports: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ports.json")).unwrap()).unwrap();
    assert_eq!(ports["graphql"], addrs.graphql.port());
    assert_eq!(ports["health"], addrs.health.port());
    node.app.stop().await;
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
