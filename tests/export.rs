//! Event export against real servers: a nats-server with JetStream of each
//! test's own (stopped and restarted mid-stream), read back with async-nats
//! and with nats-py; the Parquet archive in a local directory and in a moto
//! S3 server, read back with DuckDB; secmon killed with SIGKILL mid-export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::daemon::{Daemon, http_client};
use common::{Node, config_with_rule, eventually, free_port, keyword_rule};
use futures_util::StreamExt;
use secmon::config::{Config, Secret};
use serde_json::{Value, json};

const RULE_ID: &str = "0b6a3c1e-7d2f-4a8b-9c5e-1f2a3b4c5d6e";

/// A server process of the test's own, killed when dropped.
struct Server {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    program: &'static str,
}

impl Server {
    fn spawn(program: &'static str, args: Vec<String>, port: u16) -> Server {
        let mut server = Server {
            child: None,
            port,
            args,
            program,
        };
        server.start();
        server
    }

    /// A nats-server with JetStream storing in `dir`.
    fn nats(dir: &Path) -> Server {
        let port = free_port();
        let program = if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let store = dir.join("jetstream").display().to_string();
        let args = [
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-js",
            "-sd",
            &store,
        ];
        Server::spawn(program, args.map(str::to_owned).to_vec(), port)
    }

    /// moto's S3 server (PyPI moto[server]).
    fn moto() -> Server {
        let port = free_port();
        let args = ["-p", &port.to_string(), "-H", "127.0.0.1"];
        Server::spawn("moto_server", args.map(str::to_owned).to_vec(), port)
    }

    fn start(&mut self) {
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (scripts/test.sh installs it)", self.program));
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} does not listen on {}", self.program, self.port);
    }

    /// SIGTERM and wait.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The stream's messages: (subject, Nats-Msg-Id, payload), in stream order.
async fn stream_messages(url: &str, stream: &str) -> Vec<(String, String, Value)> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let mut stream = js.get_stream(stream).await.unwrap();
    let total = stream.info().await.unwrap().state.messages as usize;
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap().take(total);
    let mut out = Vec::with_capacity(total);
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("the stream's messages arrive")
    {
        let message = message.unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let payload = serde_json::from_slice(&message.payload).unwrap();
        out.push((message.subject.to_string(), id, payload));
    }
    out
}

/// How many messages the stream holds (0 while it does not exist).
async fn stream_count(url: &str, stream: &str) -> u64 {
    let Ok(client) = async_nats::connect(url).await else {
        return 0;
    };
    let js = async_nats::jetstream::new(client);
    match js.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// `n` NDJSON events numbered from `first`; every tenth carries the rule's
/// keyword (an alert per source address).
fn events(first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| {
            let message = if i % 10 == 0 {
                format!("export-alert {i}")
            } else {
                format!("export-event {i}")
            };
            let json = json!({"message": message, "event.dataset": if i % 2 == 0 { "even" } else { "odd.set" },
                "source.ip": format!("10.0.{}.{}", i / 256 % 256, i % 256), "user.name": format!("u{}", i % 7),
                "@timestamp": format!("2026-11-{:02}T10:00:00Z", 1 + i % 3)});
            format!("{json}\n")
        })
        .collect()
}

fn node_config(dir: &Path) -> Config {
    let mut cfg = config_with_rule(
        dir,
        &keyword_rule("Export Marker", RULE_ID, "export-alert", "high"),
    );
    cfg.replication.retry_initial_ms = 50;
    cfg.replication.retry_max_seconds = 1;
    cfg
}

/// The node's `/ready` component of an export sink.
async fn export_ready(health: &str, sink: &str) -> Value {
    let v: Value = reqwest::get(format!("{health}/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["components"]["export"]["sinks"][sink].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_and_alerts_reach_jetstream_once_through_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Server::nats(dir.path());
    let mut cfg = node_config(dir.path());
    cfg.export.nats_url = Some(Secret::new(nats.url("nats")));
    cfg.export.nats_batch_size = 50;
    let node = Node::start(cfg).await;
    let node_id = node.app.node_id().to_string();
    let url = nats.url("nats");
    let health = format!("http://{}", node.app.addrs().health);

    let (status, body) = node.ingest(events(1, 1000)).await;
    assert_eq!(status, 200, "{body}");
    eventually("some events in the stream", || async {
        let n = stream_count(&url, "SECMON_EVENTS").await;
        (n > 0, n)
    })
    .await;
    // The sink has recorded a batch (its status starts disconnected, which
    // the check below would otherwise take for the server being gone).
    eventually("the sink reports a batch exported", || async {
        let ready = export_ready(&health, "nats").await;
        (ready["connected"] == true, ready)
    })
    .await;
    // Mid-stream: the server goes away, ingest goes on, the server returns.
    nats.stop();
    let (status, body) = node.ingest(events(1001, 1000)).await;
    assert_eq!(status, 200, "{body}");
    node.wait_stored(2000).await;
    let down = eventually("the sink notices the server is gone", || async {
        let ready = export_ready(&health, "nats").await;
        (
            ready["failing"] == true || ready["connected"] == false,
            ready,
        )
    })
    .await;
    assert!(down["lag_events"].as_u64().unwrap() > 0, "{down}");
    nats.start();

    let ready = eventually("every event exported", || async {
        let ready = export_ready(&health, "nats").await;
        (ready["exported"] == 2000 && ready["lag_events"] == 0, ready)
    })
    .await;
    assert_eq!(ready["failing"], false, "{ready}");
    // Alerts go out on their own schedule beside the events' batches.
    eventually("every alert exported", || async {
        let n = stream_count(&url, "SECMON_EVENTS").await;
        (n >= 2200, n)
    })
    .await;

    let messages = stream_messages(&url, "SECMON_EVENTS").await;
    let mut ids = BTreeSet::new();
    let mut alerts = 0;
    for (subject, id, payload) in &messages {
        if subject.starts_with("secmon.alerts.") {
            assert_eq!(subject, &format!("secmon.alerts.{node_id}"));
            assert!(id.starts_with(&format!("{node_id}/alert/")), "{id}");
            assert_eq!(payload["rule_id"], RULE_ID);
            alerts += 1;
            continue;
        }
        let seq = payload["event.sequence"].as_u64().unwrap();
        assert_eq!(id, &format!("{node_id}/{seq}"));
        let dataset = if seq % 2 == 0 { "even" } else { "odd_set" };
        assert_eq!(subject, &format!("secmon.events.{node_id}.{dataset}"));
        assert!(ids.insert(seq), "event {seq} twice in the stream");
    }
    assert_eq!(ids, (1..=2000).collect(), "every event exactly once");
    assert_eq!(alerts, 200, "one message per alert raised");

    // Another client reads the same stream back.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/nats_consumer.py");
    let out = Command::new("python3")
        .args([script, &url, "SECMON_EVENTS"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nats-py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(read.len(), messages.len());
    let events_read: BTreeSet<u64> = read
        .iter()
        .filter(|m| m["subject"].as_str().unwrap().contains(".events."))
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(events_read, ids);

    let metrics = node.metrics().await;
    assert!(
        metrics.contains("secmon_export_lag_events{sink=\"nats\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("secmon_export_events_total{sink=\"nats\"} 2000"));
    node.app.stop().await;
}

/// A batch larger than what the client lets wait for acknowledgements
/// (5000 by default), published while the alert sink publishes on the same
/// connection: it once waited forever for a permit the other held.
#[tokio::test(flavor = "multi_thread")]
async fn batches_larger_than_the_ack_window_go_out_beside_the_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Server::nats(dir.path());
    let mut cfg = node_config(dir.path());
    cfg.export.nats_url = Some(Secret::new(nats.url("nats")));
    cfg.export.nats_batch_size = 6000;
    let node = Node::start(cfg).await;
    let health = format!("http://{}", node.app.addrs().health);
    let (status, body) = node.ingest(events(1, 12_000)).await;
    assert_eq!(status, 200, "{body}");
    let ready = eventually("every event exported", || async {
        let ready = export_ready(&health, "nats").await;
        (
            ready["exported"] == 12_000 && ready["lag_events"] == 0,
            ready,
        )
    })
    .await;
    assert_eq!(ready["failing"], false, "{ready}");
    let url = nats.url("nats");
    let all = eventually("every event and alert in the stream", || async {
        let n = stream_count(&url, "SECMON_EVENTS").await;
        (n == 12_000 + 1_200, n)
    })
    .await;
    assert_eq!(all, 13_200);
    node.app.stop().await;
}

/// Ingests `chunks` requests of `per_chunk` events in the background; the
/// requests cut short by a kill fail, which is expected.
fn ingest_in_background(daemon: &Daemon, chunks: u64, per_chunk: u64) {
    let http = http_client(daemon.dir(), Duration::from_secs(60));
    let api = daemon.api.clone();
    tokio::spawn(async move {
        for chunk in 0..chunks {
            let sent = http
                .post(format!("{api}/api/v1/ingest"))
                .body(events(1 + chunk * per_chunk, per_chunk))
                .send()
                .await;
            if sent.is_err() {
                return;
            }
        }
    });
}

/// The highest seq the daemon stored.
async fn last_seq(daemon: &Daemon) -> u64 {
    let http = http_client(daemon.dir(), Duration::from_secs(30));
    daemon.system(&http).await["lastSeq"].as_u64().unwrap()
}

/// `config/config.yaml` holding `yaml` in `dir`, where the daemon runs.
fn write_config(dir: &Path, yaml: &str) {
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/config.yaml"), yaml).unwrap();
}

/// The S3 client's variables for a moto server (it takes any key).
fn s3_env<'a>(endpoint: &'a str, secret: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_mid_export_neither_loses_nor_duplicates_events() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Server::nats(dir.path());
    let url = nats.url("nats");
    // Small batches, so the kill lands in the middle of one.
    write_config(dir.path(), "export:\n  nats_batch_size: 20\n");
    let env = [("NATS_URL", url.as_str())];
    let daemon = Daemon::start_with(dir.path(), &env).await;
    ingest_in_background(&daemon, 20, 2000);
    let exported = eventually("the export under way", || async {
        let n = stream_count(&url, "SECMON_EVENTS").await;
        (n > 1000, n)
    })
    .await;
    daemon.kill9();
    println!("killed with {exported} events in the stream");

    let daemon = Daemon::start_with(dir.path(), &env).await;
    let stored = last_seq(&daemon).await;
    eventually("every stored event exported after the restart", || async {
        let ready = export_ready(&daemon.health, "nats").await;
        (ready["exported"] == stored, ready)
    })
    .await;
    let messages = stream_messages(&url, "SECMON_EVENTS").await;
    let mut seqs: BTreeMap<u64, usize> = BTreeMap::new();
    for (subject, _, payload) in &messages {
        if subject.contains(".events.") {
            *seqs
                .entry(payload["event.sequence"].as_u64().unwrap())
                .or_default() += 1;
        }
    }
    assert_eq!(
        seqs.keys().copied().collect::<Vec<_>>(),
        (1..=stored).collect::<Vec<_>>(),
        "every stored event, none lost"
    );
    assert!(
        seqs.values().all(|&n| n == 1),
        "no event twice: {:?}",
        seqs.iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    daemon.terminate();
}

/// Runs tests/peers/archive.py; its JSON lines.
fn archive_py(args: &[&str]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/archive.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "archive.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn query(root: &Path, sql: &str) -> Vec<Value> {
    archive_py(&["query", &root.display().to_string(), sql])
}

/// What DuckDB finds in the archive under `root` equals what the node holds.
async fn assert_archive_matches(node: &Node, root: &Path, n: u64) {
    let rows = query(
        root,
        "SELECT count(*) AS n, count(DISTINCT seq) AS seqs, min(seq) AS lo, max(seq) AS hi FROM events",
    );
    assert_eq!(rows[0], json!({"n": n, "seqs": n, "lo": 1, "hi": n}));
    for (dataset, query_text) in [
        ("even", "event.dataset:even"),
        ("odd.set", "event.dataset:\"odd.set\""),
    ] {
        let rows = query(
            root,
            &format!("SELECT count(*) AS n FROM events WHERE dataset = '{dataset}'"),
        );
        assert_eq!(
            rows[0]["n"],
            node.search_total(query_text).await,
            "{dataset}"
        );
    }
    let day = query(
        root,
        "SELECT count(*) AS n, min(date) AS date FROM events WHERE timestamp >= TIMESTAMPTZ '2026-11-02 00:00:00+00' AND timestamp < TIMESTAMPTZ '2026-11-03 00:00:00+00'",
    );
    assert_eq!(
        day[0]["date"], "2026-11-02",
        "partitioned by the event's date"
    );
    let v = node
        .graphql(
            "{ events(from: \"2026-11-02T00:00:00Z\", to: \"2026-11-03T00:00:00Z\", first: 1) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(day[0]["n"], v["data"]["events"]["totalCount"], "{v}");
    let rows = query(
        root,
        "SELECT user_name, source_ip, labels, message FROM events WHERE seq = 10",
    );
    assert_eq!(
        rows[0],
        json!({"user_name": "u3", "source_ip": "10.0.0.10", "labels": null, "message": "export-alert 10"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_archive_in_a_directory_holds_every_event_once_for_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let mut cfg = node_config(dir.path());
    cfg.export.archive_url = Some(format!("file://{}", root.display()));
    cfg.export.archive_max_rows = 700;
    cfg.export.archive_flush_seconds = 1;
    let node = Node::start(cfg).await;
    let (status, body) = node.ingest(events(1, 3000)).await;
    assert_eq!(status, 200, "{body}");
    let health = format!("http://{}", node.app.addrs().health);
    eventually("every event archived", || async {
        let ready = export_ready(&health, "archive").await;
        (ready["exported"] == 3000, ready)
    })
    .await;
    node.wait_indexed().await;
    let node_id = node.app.node_id().to_string();
    let partition = root.join(format!("events/node={node_id}/date=2026-11-01"));
    let files: Vec<PathBuf> = std::fs::read_dir(&partition)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files.iter().all(|f| {
            let name = f.file_name().unwrap().to_str().unwrap();
            let (first, last) = name
                .strip_suffix(".parquet")
                .unwrap()
                .split_once('-')
                .unwrap();
            first.parse::<u64>().unwrap() <= last.parse::<u64>().unwrap()
        }),
        "<first seq>-<last seq>.parquet: {files:?}"
    );
    assert_archive_matches(&node, &root, 3000).await;
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_archive_in_s3_survives_a_kill_9_mid_upload() {
    const SECRET: &str = "moto-secret-never-logged";
    let dir = tempfile::tempdir().unwrap();
    let s3 = Server::moto();
    let endpoint = s3.url("http");
    archive_py(&["bucket", &endpoint, "archive"]);
    write_config(dir.path(), "export:\n  archive_max_rows: 500\n");
    let mut env = s3_env(&endpoint, SECRET);
    env.extend([
        ("ARCHIVE_URL", "s3://archive/site-a"),
        ("ARCHIVE_FLUSH_SECONDS", "1"),
    ]);
    let daemon = Daemon::start_with(dir.path(), &env).await;
    ingest_in_background(&daemon, 20, 1000);
    let exported = eventually("the archive under way", || async {
        let ready = export_ready(&daemon.health, "archive").await;
        let n = ready["exported"].as_u64().unwrap_or(0);
        (n > 0, n)
    })
    .await;
    daemon.kill9();
    println!("killed with {exported} events archived");

    let daemon = Daemon::start_with(dir.path(), &env).await;
    let stored = last_seq(&daemon).await;
    eventually("every stored event archived after the restart", || async {
        let ready = export_ready(&daemon.health, "archive").await;
        (ready["exported"] == stored, ready)
    })
    .await;
    assert!(!daemon.log().contains(SECRET), "no credential in the log");
    let copy = dir.path().join("downloaded");
    archive_py(&[
        "download",
        &endpoint,
        "archive",
        &copy.display().to_string(),
    ]);
    let rows = query(
        &copy,
        "SELECT count(*) AS n, count(DISTINCT seq) AS seqs, min(seq) AS lo, max(seq) AS hi FROM events",
    );
    assert_eq!(
        rows[0],
        json!({"n": stored, "seqs": stored, "lo": 1, "hi": stored}),
        "no gap, no duplicate row"
    );
    daemon.terminate();
}

/// `secmon ARGS` in `dir` with `env`, to completion.
fn secmon(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(common::daemon::BIN)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_go_to_s3_verified_on_schedule_and_by_hand_and_come_back() {
    const SECRET: &str = "moto-backup-secret-never-logged";
    let dir = tempfile::tempdir().unwrap();
    let s3 = Server::moto();
    let endpoint = s3.url("http");
    archive_py(&["bucket", &endpoint, "backups"]);
    write_config(
        dir.path(),
        "backup:\n  schedule: 2s\n  target: s3://backups/site-a/\n  keep: 2\n",
    );
    let env = s3_env(&endpoint, SECRET);
    let daemon = Daemon::start_with(dir.path(), &env).await;
    let http = http_client(dir.path(), Duration::from_secs(30));
    let resp = http
        .post(format!("{}/api/v1/ingest", daemon.api))
        .body(events(1, 500))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // By hand, through the running daemon.
    let out = secmon(dir.path(), &["backup", "s3://backups/manual/"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["verified"], true, "{made}");
    assert_eq!(made["events"], 500, "{made}");
    let target = made["target"].as_str().unwrap().to_owned();
    assert!(
        target.starts_with("s3://backups/manual/secmon-"),
        "{target}"
    );
    assert!(
        std::fs::read_dir(dir.path().join("data/backups"))
            .unwrap()
            .next()
            .is_none(),
        "nothing left in the staging directory"
    );

    // On schedule: every 2 s, the two newest kept with their checksums.
    let keys = eventually("three scheduled backups, two kept", || async {
        let keys: Vec<String> = archive_py(&["list", &endpoint, "backups"])
            .iter()
            .map(|o| o["key"].as_str().unwrap().to_owned())
            .filter(|k| k.starts_with("site-a/"))
            .collect();
        let audited = daemon
            .audit_log(100)
            .await
            .iter()
            .filter(|e| e["action"] == "backup.create" && e["actor"] == "backup.schedule")
            .count();
        (audited >= 3 && keys.len() == 4, (audited, keys))
    })
    .await
    .1;
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".redb.sha256")).count(),
        2,
        "{keys:?}"
    );
    let metrics = http
        .get(format!(
            "http://127.0.0.1:{}/metrics",
            daemon.ports["metrics"]
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("secmon_backup_last_success_timestamp_seconds "),
        "{metrics}"
    );
    assert!(!daemon.log().contains(SECRET), "no credential in the log");
    daemon.terminate();

    // Back into a new data dir, checksum checked first.
    let restored = tempfile::tempdir().unwrap();
    let data = restored.path().join("data").display().to_string();
    let out = secmon(
        restored.path(),
        &["restore", &target, "--data-dir", &data],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 500, "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SHA-256 checked"));

    // A damaged object is refused before anything is touched.
    let key = target.strip_prefix("s3://backups/").unwrap();
    archive_py(&["tamper", &endpoint, "backups", key]);
    let other = tempfile::tempdir().unwrap();
    let data = other.path().join("data").display().to_string();
    let out = secmon(
        other.path(),
        &["restore", &target, "--data-dir", &data],
        &env,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match its checksum"), "{stderr}");
    assert!(!stderr.contains(SECRET));
    assert!(!other.path().join("data/secmon.redb").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn tiered_retention_deletes_locally_only_what_the_archive_holds() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = Server::moto();
    let endpoint = s3.url("http");
    let mut cfg = node_config(dir.path());
    cfg.export.archive_url = Some("s3://tiered/events".to_owned());
    cfg.export.archive_flush_seconds = 1;
    cfg.s3.endpoint_url = Some(endpoint.clone());
    cfg.s3.allow_http = true;
    cfg.s3.region = Some("us-east-1".to_owned());
    cfg.s3.access_key_id = Some(Secret::new("test"));
    cfg.s3.secret_access_key = Some(Secret::new("test"));
    cfg.retention.events_max_age = Some("1s".parse().unwrap());
    cfg.retention.check_interval_seconds = 1;
    let node = Node::start(cfg).await;
    let health = format!("http://{}", node.app.addrs().health);
    let (status, body) = node.ingest(events(1, 2000)).await;
    assert_eq!(status, 200, "{body}");

    // The bucket does not exist yet: nothing archived, so nothing deleted,
    // however old the events get.
    let failing = eventually("the archive failing", || async {
        let ready = export_ready(&health, "archive").await;
        (ready["failing"] == true, ready)
    })
    .await;
    assert_eq!(failing["exported"], 0, "{failing}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = |v: Value| v["data"]["system"]["eventsStored"].as_u64().unwrap();
    let system = node.graphql("{ system { eventsStored } }", json!({})).await;
    assert_eq!(stored(system), 2000, "retention waits for the archive");

    archive_py(&["bucket", &endpoint, "tiered"]);
    eventually("archived, then deleted here", || async {
        let system = node.graphql("{ system { eventsStored } }", json!({})).await;
        let n = stored(system);
        (n == 0, n)
    })
    .await;
    let search = |from: Option<String>| {
        let node = &node;
        async move {
            node.graphql(
                "query($from: DateTime) { events(from: $from, first: 1) { totalCount localSince beyondLocal } }",
                json!({"from": from}),
            )
            .await["data"]["events"]
                .clone()
        }
    };
    let all = search(None).await;
    assert_eq!(all["beyondLocal"], true, "{all}");
    assert!(all["localSince"].is_string(), "{all}");
    let recent = search(Some("2100-01-01T00:00:00Z".to_owned())).await;
    assert_eq!(recent["beyondLocal"], false, "{recent}");

    let copy = dir.path().join("downloaded");
    archive_py(&["download", &endpoint, "tiered", &copy.display().to_string()]);
    let rows = query(&copy, "SELECT count(DISTINCT seq) AS n FROM events");
    assert_eq!(
        rows[0]["n"], 2000,
        "the archive holds what was deleted here"
    );
    node.app.stop().await;
}
