//! The monitoring assets against a real node: the Prometheus rules and their
//! unit tests pass promtool, the scrape config loads, every metric the rules
//! and the Grafana dashboards query is one the node exports, and every
//! dashboard is well formed. (fleet.json's SQL runs in tests/replication.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{Node, config_with_rule, eventually, keyword_rule};
use secmon::config::{Channel, Config};
use serde_json::{Value, json};

const RULE_ID: &str = "5d0f3c1e-7a2b-4c8d-9e6f-0a1b2c3d4e5f";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A node with every part that exports metrics switched on: syslog over
/// UDP, a rule raising a high alert on `obs-marker`, a webhook channel,
/// active response (dry run), retention.
fn node_config(dir: &Path, webhook: &str) -> Config {
    let mut cfg = config_with_rule(
        dir,
        &keyword_rule("Observability Marker", RULE_ID, "obs-marker", "high"),
    );
    cfg.ports.syslog_udp = Some(0);
    cfg.ingest.max_message_bytes = 256;
    cfg.notifications.channels = serde_saphyr::from_str::<Vec<Channel>>(&format!(
        "- {{name: ops, kind: webhook, url: '{webhook}'}}\n"
    ))
    .unwrap();
    cfg.response = serde_saphyr::from_str(&format!(
        "enabled: true\ndry_run: true\nactions:\n- {{name: ticket, kind: command, command: ['true'], rules: ['{RULE_ID}']}}\n"
    ))
    .unwrap();
    cfg.retention =
        serde_saphyr::from_str("events_max_age: 3650d\ncheck_interval_seconds: 1\n").unwrap();
    // An archive and scheduled backups, in directories of the test.
    cfg.export.archive_url = Some(format!("file://{}", dir.join("archive").display()));
    cfg.export.archive_flush_seconds = 1;
    let backups = dir.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    cfg.backup =
        serde_saphyr::from_str(&format!("schedule: 1h\ntarget: {}\n", backups.display())).unwrap();
    cfg
}

/// A webhook receiver that accepts everything.
async fn webhook_receiver() -> String {
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::OK });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The metric names of a scrape (sample lines, so `_bucket`, `_sum` and
/// `_count` for histograms), and the declared type of each family.
fn scraped(text: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut names = BTreeSet::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_owned(), kind.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    (names, types)
}

/// `secmon_*` metric names in a PromQL expression; recording rule names
/// (`instance:secmon_x:ratio`) are not metrics and are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"(^|[^a-zA-Z0-9_:])(secmon_[a-z_]+)").unwrap();
    re.captures_iter(expr)
        .filter(|c| {
            let end = c.get(2).unwrap().end();
            !expr[end..].starts_with(':')
        })
        .map(|c| c[2].to_owned())
        .collect()
}

/// Whether a name from a query is on the scrape: as is (a counter, a
/// gauge, a histogram's `_bucket`/`_sum`/`_count` series), and a
/// `_bucket`/`_sum`/`_count` name only for a family declared a histogram.
fn exported(name: &str, names: &BTreeSet<String>, types: &BTreeMap<String, String>) -> bool {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(family) = name.strip_suffix(suffix)
            && types.get(family).is_some_and(|t| t == "histogram")
        {
            return names.contains(name);
        }
    }
    names.contains(name) && types.get(name).is_none_or(|t| t != "histogram")
}

/// Every `expr` in the rule file.
fn rule_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("deploy/prometheus/rules/secmon.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            out.push((name.to_owned(), rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// The Prometheus dashboards (not fleet.json, which reads Postgres).
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo("deploy/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let dashboard: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            out.push((name, dashboard));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every PromQL query of a Prometheus dashboard: the panels' targets and
/// the template variables', each with where it is.
fn dashboard_exprs(name: &str, dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((format!("{name}: {}", panel["title"]), expr.to_owned()));
            }
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let query = &var["query"];
        if let Some(q) = query["query"].as_str().or(query.as_str())
            && var["type"] == "query"
        {
            out.push((format!("{name}: variable {}", var["name"]), q.to_owned()));
        }
    }
    out
}

/// A dashboard query as Prometheus would get it: Grafana's variables filled in.
fn as_prometheus_gets_it(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace("$instance", ".*")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// promtool from PATH; required when scripts/test.sh runs the tests.
fn promtool() -> Option<PathBuf> {
    let found = which("promtool");
    if std::env::var_os("SECMON_REQUIRE_PROMTOOL").is_some() {
        assert!(
            found.is_some(),
            "promtool is not on PATH (scripts/test.sh fetches it)"
        );
    }
    found
}

fn run_promtool(promtool: &Path, args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboards_query_metrics_a_node_exports() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = webhook_receiver().await;
    let node = Node::start(node_config(dir.path(), &webhook)).await;

    // Events over HTTP (one malformed, two raising an alert) and syslog
    // over UDP (a line sshd's parser knows, one cut to max_message_bytes).
    let body = format!(
        "{}\n{}\nnot json\n{}\n",
        json!({"message": "obs-marker one", "source.ip": "10.7.0.1"}),
        json!({"message": "obs-marker two", "source.ip": "10.7.0.2"}),
        json!({"message": "quiet"}),
    );
    let (status, resp) = node.ingest(body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["accepted"], 3, "{resp}");
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let syslog = node.app.addrs().syslog_udp.expect("syslog over UDP is on");
    let long = "x".repeat(400);
    for line in [
        "<38>Mar  1 10:00:00 host1 sshd[1]: Failed password for root from 10.0.0.1 port 22 ssh2"
            .to_owned(),
        format!("<38>Mar  1 10:00:00 host1 app: {long}"),
    ] {
        udp.send_to(line.as_bytes(), syslog).await.unwrap();
    }
    node.wait_stored(5).await;
    node.wait_indexed().await;
    // A search (the page cache) and an analyst's change to an alert.
    assert_eq!(node.search_total("\"obs-marker\"").await, 2);
    let v = node
        .graphql("{ alerts(first: 10) { edges { node { id } } } }", json!({}))
        .await;
    let id = v["data"]["alerts"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no alert: {v}"))
        .to_owned();
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

    // What the rules and the dashboards query.
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (rule, expr) in rule_exprs() {
        for name in metric_names(&expr) {
            wanted
                .entry(name)
                .or_default()
                .push(format!("secmon.yml: {rule}"));
        }
    }
    let boards = dashboards();
    let mut dashboard_queries = Vec::new();
    for (file, board) in boards.iter().filter(|(f, _)| f != "fleet.json") {
        for (place, expr) in dashboard_exprs(file, board) {
            for name in metric_names(&expr) {
                wanted.entry(name).or_default().push(place.clone());
            }
            // Template variables are Grafana's label_values(), not PromQL.
            if !place.contains(": variable ") {
                dashboard_queries.push((place, expr));
            }
        }
    }
    assert!(wanted.len() > 30, "too few metrics found: {wanted:?}");

    // Every one of them on the node's /metrics (some appear only once the
    // notification is sent and the retention task has run).
    let missing = eventually("every queried metric exported", || async {
        let text = node.metrics().await;
        let (names, types) = scraped(&text);
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(name, _)| !exported(name, &names, &types))
            .map(|(name, used)| format!("{name} (used in {})", used.join(", ")))
            .collect();
        (missing.is_empty(), (missing, text))
    })
    .await;
    assert!(missing.0.is_empty());

    let text = node.metrics().await;
    let value = |sample: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {sample} in\n{text}"))
    };
    // The gauges added for the rules hold what they say.
    assert_eq!(
        value(&format!(
            "secmon_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    let (free, total) = (
        value("secmon_disk_free_bytes"),
        value("secmon_disk_total_bytes"),
    );
    assert!(0.0 < free && free <= total, "free {free} of {total}");
    assert!(value("secmon_storage_bytes{part=\"store\"}") > 0.0);
    assert_eq!(value("secmon_write_queue_capacity_batches"), 64.0);
    assert!(value("secmon_events_parsed_total{source=\"syslog_udp\"}") >= 1.0);
    assert!(value("secmon_events_truncated_total{source=\"syslog_udp\"}") >= 1.0);
    // Counters an alert watches exist before their first increase.
    assert_eq!(
        value("secmon_events_dropped_total{source=\"syslog_udp\"}"),
        0.0
    );
    assert_eq!(value("secmon_ingest_throttled_total{source=\"http\"}"), 0.0);
    assert!(text.contains("secmon_notification_failures_total{channel=\"ops\"}"));
    assert!(text.contains("secmon_response_errors_total{action=\"command\"}"));
    node.app.stop().await;

    // Dashboards: JSON, unique uid and title, a target on every panel,
    // Prometheus queries through the datasource and node variables.
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for (file, board) in &boards {
        let uid = board["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        let title = board["title"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no title"));
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} twice");
        assert!(
            titles.insert(title.to_owned()),
            "{file}: title {title} twice"
        );
        let panels = board["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{file}: no panels");
        let mut ids = BTreeSet::new();
        for panel in panels {
            let at = format!("{file}: {}", panel["title"]);
            assert!(ids.insert(panel["id"].as_u64().unwrap()), "{at}: id twice");
            let targets = panel["targets"].as_array();
            assert!(targets.is_some_and(|t| !t.is_empty()), "{at}: no target");
            if file == "fleet.json" {
                continue;
            }
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{at}");
            for target in targets.unwrap() {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{at}");
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: no expr"));
                assert!(
                    expr.contains("instance=~\"$instance\""),
                    "{at}: {expr} ignores the node variable"
                );
            }
        }
        if file != "fleet.json" {
            let vars: Vec<&str> = board["templating"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap())
                .collect();
            assert_eq!(vars, ["datasource", "instance"], "{file}");
        }
    }
    for expected in [
        "ingest.json",
        "detection.json",
        "storage.json",
        "replication.json",
    ] {
        assert!(
            boards.iter().any(|(f, _)| f == expected),
            "{expected} is missing"
        );
    }

    // promtool: the rules, their unit tests, the dashboards' PromQL (as
    // recording rules), and the scrape config with its secrets in place.
    let Some(promtool) = promtool() else { return };
    let rules_dir = repo("deploy/prometheus/rules");
    let out = run_promtool(&promtool, &["check", "rules", "secmon.yml"], &rules_dir);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_promtool(&promtool, &["test", "rules", "secmon.test.yml"], &rules_dir);
    assert!(out.contains("SUCCESS"), "{out}");

    let rules: Vec<Value> = dashboard_queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("dashboard:query_{i}"), "expr": as_prometheus_gets_it(expr)}))
        .collect();
    let file = dir.path().join("dashboards.rules.yml");
    // JSON is YAML.
    std::fs::write(
        &file,
        json!({"groups": [{"name": "dashboards", "rules": rules}]}).to_string(),
    )
    .unwrap();
    run_promtool(
        &promtool,
        &["check", "rules", file.to_str().unwrap()],
        dir.path(),
    );

    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("metrics_token"), "token").unwrap();
    std::fs::write(secrets.join("ca.crt"), "").unwrap();
    let scrape = std::fs::read_to_string(repo("deploy/prometheus/prometheus.yml")).unwrap();
    for path in [
        "/etc/prometheus/secrets/metrics_token",
        "/etc/prometheus/secrets/ca.crt",
        "rules/secmon.yml",
    ] {
        assert!(
            scrape.contains(path),
            "prometheus.yml no longer names {path}"
        );
    }
    let scrape = scrape
        .replace("/etc/prometheus/secrets", secrets.to_str().unwrap())
        .replace(
            "rules/secmon.yml",
            rules_dir.join("secmon.yml").to_str().unwrap(),
        );
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, scrape).unwrap();
    let out = run_promtool(
        &promtool,
        &["check", "config", file.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
}
