//! OpenTelemetry export (`--features otlp`): the daemon's request and batch
//! spans reach an OTLP/HTTP receiver that decodes them with the official
//! protobuf definitions (tests/peers/otlp_receiver.py, opentelemetry-proto).
//! Run by scripts/test.sh as `cargo nextest run --features otlp --test otlp`.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, admin_key};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_exported_over_otlp() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/otlp_receiver.py");
    let mut receiver = Command::new("python3")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let endpoint = format!("http://127.0.0.1:{port}");
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "secmon-edge-7"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let key = admin_key(dir.path());
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest", daemon.api))
        .bearer_auth(&key)
        .body("{\"message\":\"Failed password for root from 10.0.0.1 port 22 ssh2\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A graceful stop flushes what the batch processor still holds.
    let status = tokio::task::block_in_place(|| daemon.terminate());
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut spans: Vec<Value> = Vec::new();
    let found = |spans: &[Value]| {
        let ingest = spans.iter().find(|s| {
            s["name"] == "request"
                && s["attributes"]["route"] == "/api/v1/ingest"
                && s["attributes"]["status"] == "200"
        });
        let batch = spans
            .iter()
            // tracing-opentelemetry sends a u64 field as text.
            .find(|s| s["name"] == "batch" && s["attributes"]["events"] == "1");
        ingest.is_some() && batch.is_some()
    };
    while !found(&spans) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            spans.push(serde_json::from_str(&line).unwrap());
        }
    }
    let _ = receiver.kill();
    let _ = receiver.wait();
    assert!(
        found(&spans),
        "no ingest request and batch spans in {spans:#?}"
    );
    for span in &spans {
        assert!(span.get("error").is_none(), "{span}");
        assert_eq!(span["resource"]["service.name"], "secmon-edge-7", "{span}");
        assert_eq!(
            span["resource"]["service.version"],
            env!("CARGO_PKG_VERSION"),
            "{span}"
        );
        assert_eq!(span["trace_id"].as_str().unwrap().len(), 32, "{span}");
    }
}
