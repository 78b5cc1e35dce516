//! The Elasticsearch `_bulk` surface, driven by the official Python client
//! (`elasticsearch` package, installed by scripts/test.sh).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, config};
use serde_json::{Value, json};

#[tokio::test]
async fn the_python_bulk_helper_stores_parsed_events() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    let url = format!("http://{}", node.app.addrs().graphql);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/es_bulk.py");
    let url2 = url.clone();
    // A shipper gets an ingest-only key.
    let v = node
        .graphql(
            "mutation { createApiKey(name: \"filebeat\", role: INGEST) { key } }",
            json!({}),
        )
        .await;
    let key = v["data"]["createApiKey"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(url2)
            .arg("300")
            .arg(key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result,
        json!({"cluster": "secmon", "ok": 300, "errors": []})
    );

    node.wait_indexed().await;
    let v = node
        .graphql(
            "{ events(query: \"event.dataset:sshd AND host.name:edge-1\", first: 1) { totalCount edges { node { userName sourceIp outcome labels fields } } } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["events"]["totalCount"], 300, "{v}");
    let e = &v["data"]["events"]["edges"][0]["node"];
    assert_eq!(e["userName"], "root");
    assert_eq!(e["outcome"], "failure");
    assert_eq!(e["labels"]["index"], "filebeat-test");
    assert_eq!(e["fields"]["agent"]["type"], "filebeat");

    // Unsupported actions are refused per item, the rest stored.
    let body = "{\"delete\":{\"_id\":\"x\"}}\n{\"index\":{}}\n{\"message\":\"kept\"}\n";
    let resp = node
        .http
        .post(format!("{url}/logs/_bulk"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-elastic-product"], "Elasticsearch");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["errors"], true);
    assert_eq!(v["items"][0]["delete"]["status"], 400);
    assert_eq!(v["items"][1]["index"]["status"], 201);
    assert_eq!(v["items"][1]["index"]["_index"], "logs");
    node.wait_indexed().await;
    assert_eq!(node.search_total("kept").await, 1);
    node.app.stop().await;
}
