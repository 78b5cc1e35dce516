//! Detection end to end: real logs in through a real source, Sigma rules
//! (the built-in pack) evaluated before the commit, alerts out through
//! GraphQL; and `secmon rules check` over the SigmaHQ folders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Node, config, shared_data};
use serde_json::{Value, json};

const BRUTE_FORCE: &str = "443f2c4e-156b-49bf-a0a7-b193b705812c";
const FAILURE: &[&str] = &[
    "ssh_login",
    "ssh_invalid_user",
    "ssh_user_not_allowed",
    "ssh_preauth_disconnect",
    "ssh_connection_reset",
];

async fn alerts(node: &Node, rule: &str) -> Vec<Value> {
    let v = node
        .graphql(
            "query($r: String) { alerts(ruleId: $r, first: 1000) { edges { node {
                id ruleId ruleTitle severity status count firstSeen lastSeen groupKey sourceIp
                correlation tags eventsQuery events { seq message sourceIp } } } } }",
            json!({ "r": rule }),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    v["data"]["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// The brute-force correlation (>= 6 failures per source IP within 60 s,
/// firing once and starting over) computed here from the stored events:
/// firings per IP.
fn expected_firings(events: &[(i64, String)]) -> BTreeMap<String, u64> {
    let mut windows: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut firings = BTreeMap::new();
    for (t, ip) in events {
        let w = windows.entry(ip).or_default();
        w.retain(|s| t - s < 60);
        w.push(*t);
        if w.len() >= 6 {
            *firings.entry(ip.clone()).or_default() += 1;
            w.clear();
        }
    }
    firings
}

#[tokio::test]
async fn loghub_openssh_raises_brute_force_alerts_for_every_source_over_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let log = shared_data("loghub/OpenSSH/OpenSSH_2k.log");
    let raw = std::fs::read_to_string(&log).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    // Complete lines only: the tail waits for a last line's newline.
    std::fs::write(logs.join("auth.log"), format!("{}\n", raw.trim_end())).unwrap();
    let mut cfg = config(&dir.path().join("data"));
    cfg.ingest.files.paths = vec![logs.join("auth.log").display().to_string()];
    cfg.ingest.files.poll_interval_ms = 20;
    let node = Node::start(cfg).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = node.graphql("{ system { eventsStored } }", json!({})).await;
        if v["data"]["system"]["eventsStored"] == 2000 {
            break;
        }
        assert!(Instant::now() < deadline, "the log was not stored: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.wait_indexed().await;

    // The failures, as the base rule selects them, in event order.
    let mut failures = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let v = node
            .graphql(
                "query($after: String) { events(query: \"event.dataset:sshd AND event.outcome:failure AND event.category:authentication\", first: 1000, after: $after) {
                    edges { node { seq timestamp sourceIp action } } pageInfo { hasNextPage endCursor } } }",
                json!({ "after": after }),
            )
            .await;
        let page = &v["data"]["events"];
        for e in page["edges"].as_array().unwrap() {
            let e = &e["node"];
            if FAILURE.contains(&e["action"].as_str().unwrap_or("")) && e["sourceIp"].is_string() {
                let t = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap())
                    .unwrap()
                    .timestamp();
                failures.push((
                    e["seq"].as_u64().unwrap(),
                    t,
                    e["sourceIp"].as_str().unwrap().to_owned(),
                ));
            }
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    failures.sort();
    // Independent of our parser: the raw lines of the loudest source.
    let raw_183 = raw
        .lines()
        .filter(|l| {
            l.contains("183.62.140.253")
                && (l.contains("Failed password for") || l.contains("Invalid user"))
        })
        .count();
    let parsed_183 = failures.iter().filter(|f| f.2 == "183.62.140.253").count();
    assert!(
        parsed_183 >= raw_183,
        "{parsed_183} failures parsed for 183.62.140.253, {raw_183} failure lines"
    );

    let expected = expected_firings(
        &failures
            .iter()
            .map(|(_, t, ip)| (*t, ip.clone()))
            .collect::<Vec<_>>(),
    );
    let raised = alerts(&node, BRUTE_FORCE).await;
    // One alert per source IP and dedup window (1 h): a source that comes
    // back later gets a second alert; the firings add up.
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for a in &raised {
        assert_eq!(a["correlation"], true, "{a}");
        assert_eq!(a["severity"], "MEDIUM");
        assert_eq!(a["status"], "OPEN");
        let ip = a["sourceIp"].as_str().unwrap_or_else(|| panic!("{a}"));
        assert_eq!(a["groupKey"], json!({ "source.ip": ip }));
        assert_eq!(a["eventsQuery"], format!("source.ip:\"{ip}\""));
        let events = a["events"].as_array().unwrap();
        assert!(
            !events.is_empty() && events.iter().all(|e| e["sourceIp"] == ip),
            "{a}"
        );
        *got.entry(ip.to_owned()).or_default() += a["count"].as_u64().unwrap();
    }
    println!("brute force alerts (ip -> firings): {got:?}");
    assert!(got.contains_key("183.62.140.253"), "{got:?}");
    assert_eq!(got, expected, "alerts against the independent count");
    node.app.stop().await;
}

fn secmon(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_secmon"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap()
}

#[test]
fn rules_check_loads_sigmahq_and_rejects_the_old_aggregation_syntax_with_reasons() {
    for (dir, n) in [
        ("sigma/rules/linux", 210),
        ("sigma/rules-threat-hunting/linux", 4),
        ("sigma/rules/web", 16),
    ] {
        let path = shared_data(dir);
        let out = secmon(&["rules", "check", path.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{dir}: {text}");
        assert!(
            text.contains(&format!(
                "{n} files: {n} rules, 0 correlations, 0 filters loaded; 0 rejected"
            )),
            "{dir}: {text}"
        );
    }
    let unsupported = shared_data("sigma/unsupported");
    let out = secmon(&["rules", "check", unsupported.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let rejected: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("rejected: "))
        .collect();
    assert_eq!(rejected.len(), 7, "{text}");
    for line in rejected {
        // file:line: reason
        let (file, reason) = line.split_once(".yml:").unwrap();
        assert!(file.contains("/unsupported/"), "{line}");
        let (line_no, reason) = reason.split_once(": ").unwrap();
        assert!(line_no.parse::<usize>().is_ok(), "{line}");
        assert!(
            reason.contains("old Sigma aggregation syntax"),
            "every unsupported rule says why: {line}"
        );
    }
    let builtin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/builtin");
    let out = secmon(&["rules", "check", builtin.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The built-in pack flags the sources CrowdSec's own scenario tests expect
/// (`Sources["IP"]` in their scenario.assert), run through `secmon rules test`.
#[test]
fn the_builtin_pack_flags_the_sources_crowdsec_scenarios_expect() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/builtin");
    for (test, log, file, rule) in [
        ("ssh-bf", "ssh-bf.log", "ssh_bruteforce.yml", BRUTE_FORCE),
        (
            "ssh-slow-bf",
            "ssh-slow-bf.log",
            "ssh_bruteforce.yml",
            "70a53d23-a571-44c5-a374-5514eb521702",
        ),
        (
            "iptables-scan-multi-port",
            "iptables-scan-multi-port.log",
            "firewall_port_scan.yml",
            "0a65e3a3-c289-4fec-9ea1-47bba68cb3f5",
        ),
        (
            "apache-http-probing",
            "apache-http-probing.log",
            "web_scanning.yml",
            "b6641147-a162-4fd5-ae5e-e28d744e061f",
        ),
        (
            "nginx-http-malformed",
            "nginx_http-logs.log",
            "web_scanning.yml",
            "b6641147-a162-4fd5-ae5e-e28d744e061f",
        ),
    ] {
        let dir = shared_data(&format!("crowdsec-hub/.tests/{test}"));
        let assert = std::fs::read_to_string(dir.join("scenario.assert")).unwrap();
        let mut expected: Vec<String> = assert
            .split("Sources[\"")
            .skip(1)
            .filter_map(|s| s.split_once('"').map(|(ip, _)| ip.to_owned()))
            .collect();
        expected.sort();
        expected.dedup();
        let out = secmon(&[
            "rules",
            "test",
            rules.join(file).to_str().unwrap(),
            "--events",
            dir.join(log).to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut flagged: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|h| h["rule_id"] == rule)
            .filter_map(|h| h["group_key"]["source.ip"].as_str().map(str::to_owned))
            .collect();
        flagged.sort();
        flagged.dedup();
        assert_eq!(flagged, expected, "{test}");
    }
}
