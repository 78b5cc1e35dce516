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
    node.wait_stored(2000).await;
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

/// On Loghub's OpenSSH sample, the built-in pack flags every source that
/// fail2ban's default sshd jail bans and CrowdSec's default ssh scenarios
/// flag: the peers' verdicts were recorded by running them
/// (`scripts/peers.sh --write`, Debian's fail2ban 1.0.2 and CrowdSec 1.4.6).
#[test]
fn the_builtin_pack_flags_every_source_fail2ban_and_crowdsec_flag() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/peers/openssh_2k.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut peers: Vec<String> = fixture["fail2ban"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip.as_str().unwrap().to_owned())
        .chain(fixture["crowdsec"].as_object().unwrap().keys().cloned())
        .collect();
    peers.sort();
    peers.dedup();
    assert!(peers.len() >= 12, "{peers:?}");
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/builtin/ssh_bruteforce.yml");
    let log = shared_data("loghub/OpenSSH/OpenSSH_2k.log");
    let out = secmon(&[
        "rules",
        "test",
        rules.to_str().unwrap(),
        "--events",
        log.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flagged: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|h| h["correlation"] == true)
        .filter_map(|h| h["group_key"]["source.ip"].as_str().map(str::to_owned))
        .collect();
    let missed: Vec<&String> = peers.iter().filter(|ip| !flagged.contains(*ip)).collect();
    assert!(
        missed.is_empty(),
        "flagged by a peer, not by secmon: {missed:?}"
    );
}

/// A base rule for the spec examples: matches `labels.kind: <kind>`.
fn base_rule(id: &str, name: &str, kind: &str) -> String {
    format!(
        "title: base {name}\nid: {id}\nname: {name}\nlogsource:\n    product: linux\n\
         detection:\n    selection:\n        labels.kind: {kind}\n    condition: selection\nlevel: low\n"
    )
}

/// The correlation examples of the Sigma specification
/// (`tests/schema/correlation/*.yml`), loaded unchanged next to base rules
/// made for them, fed events through the detector as the writer does.
#[test]
fn the_specification_correlation_examples_fire_as_specified() {
    use secmon::detect::Detector;
    use secmon::detect::rules::{self, FieldMapping, Source};

    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    // Each event arrives at its own time, as from a live sender.
    let event = |secs: i64, fields: Value| {
        let at = t0 + chrono::Duration::seconds(secs);
        let mut v = fields;
        v["@timestamp"] = json!(at.to_rfc3339());
        secmon::model::Event::from_json(v, at).unwrap()
    };
    // Fires(correlation title) per event fed.
    let run = |example: &str, bases: &[(&str, &str, &str)], events: Vec<secmon::model::Event>| {
        let dir = shared_data("sigma-specification/tests/schema/correlation");
        let spec = std::fs::read_to_string(dir.join(example)).unwrap();
        let mut sources = vec![Source {
            name: example.into(),
            text: spec,
        }];
        for (id, name, kind) in bases {
            sources.push(Source {
                name: format!("{name}.yml"),
                text: base_rule(id, name, kind),
            });
        }
        let mapping = FieldMapping::shipped(&Default::default()).unwrap();
        let pipeline = mapping.pipeline(&Default::default()).unwrap();
        let set = rules::load(&sources, &mapping, &pipeline);
        assert!(set.rejected.is_empty(), "{example}: {:?}", set.rejected);
        assert_eq!(set.correlations.len(), 1, "{example}");
        let title = set.correlations[0].rule.title.clone();
        let mut d = Detector::new(&set).unwrap();
        let mut fired = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let hits = d.evaluate(std::slice::from_ref(e));
            if hits.iter().any(|h| h.correlation && h.rule_title == title) {
                fired.push(i);
            }
        }
        fired
    };
    const FAILED: &str = "5638f7c0-ac70-491d-8465-2a65075e0d86";

    // event_count: the 100th failure of one computer within 1h fires.
    let events = (0..100)
        .map(|i| event(i, json!({"labels": {"kind": "failed"}, "host.name": "pc1"})))
        .chain([event(
            200,
            json!({"labels": {"kind": "failed"}, "host.name": "pc2"}),
        )])
        .collect();
    assert_eq!(
        run(
            "event_count.yml",
            &[(FAILED, "failed_login", "failed")],
            events
        ),
        [99]
    );

    // value_count: 100 distinct users of one workstation within a day.
    let events = (0..100)
        .map(|i| {
            event(
                i * 60,
                json!({"labels": {"kind": "failed"}, "host.name": "pc1", "WorkstationName": "ws1",
                       "user.name": format!("u{}", i)}),
            )
        })
        .collect();
    assert_eq!(
        run(
            "value_count.yml",
            &[(FAILED, "failed_login", "failed")],
            events
        ),
        [99]
    );

    // temporal: all three recon commands of one user and computer within
    // 5 min, in any order (not on the first one, as rsigma alone would).
    let recon = [
        ("a1a1a1a1-0000-4000-8000-000000000001", "recon_cmd_a", "a"),
        ("a1a1a1a1-0000-4000-8000-000000000002", "recon_cmd_b", "b"),
        ("a1a1a1a1-0000-4000-8000-000000000003", "recon_cmd_c", "c"),
    ];
    let cmd = |secs, kind| {
        event(
            secs,
            json!({"labels": {"kind": kind}, "host.name": "pc1", "user.name": "eve"}),
        )
    };
    assert_eq!(
        run(
            "temporal.yml",
            &recon,
            vec![cmd(0, "c"), cmd(10, "a"), cmd(20, "b")]
        ),
        [2]
    );
    assert!(
        run(
            "temporal.yml",
            &recon,
            vec![cmd(0, "c"), cmd(400, "a"), cmd(410, "b")]
        )
        .is_empty()
    );

    // temporal_ordered: a, b, c in that order only.
    assert_eq!(
        run(
            "temporal_ordered.yml",
            &recon,
            vec![cmd(0, "a"), cmd(10, "b"), cmd(20, "c")]
        ),
        [2]
    );
    assert!(
        run(
            "temporal_ordered.yml",
            &recon,
            vec![cmd(0, "c"), cmd(10, "b"), cmd(20, "a")]
        )
        .is_empty()
    );

    // value_sum: over 1 MB sent by one source and user within an hour.
    let web = [(
        "b2b2b2b2-0000-4000-8000-000000000001",
        "website_access",
        "web",
    )];
    let events = (0..3)
        .map(|i| event(i * 60, json!({"labels": {"kind": "web"}, "SourceIP": "10.0.0.1", "user.name": "bob", "bytes_sent": 400_000})))
        .collect();
    assert_eq!(run("value_sum.yml", &web, events), [2]);

    // value_avg: average BytesOut over 500 for one source and user.
    let rule_a = [("c3c3c3c3-0000-4000-8000-000000000001", "rule_a_id", "net")];
    let events = [100, 2000]
        .into_iter()
        .enumerate()
        .map(|(i, b)| event(i as i64, json!({"labels": {"kind": "net"}, "SourceIP": "10.0.0.2", "user.name": "bob", "BytesOut": b})))
        .collect();
    assert_eq!(run("value_avg.yml", &rule_a, events), [1]);
}

/// Rule files reload when they change, and correlation windows survive the
/// reload: three failures before it and three after make a brute force.
#[tokio::test]
async fn rules_reload_on_change_and_keep_correlation_windows() {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    let custom = |title: &str, word: &str| {
        format!(
            "title: {title}\nid: 7e1d0c2a-5b8e-4c1e-9f3a-2d6b8a4c0e11\nlogsource:\n    product: linux\n\
             detection:\n    keywords:\n        - {word}\n    condition: keywords\nlevel: high\n"
        )
    };
    std::fs::write(
        rules_dir.join("custom.yml"),
        custom("Marker One", "marker-one"),
    )
    .unwrap();
    let mut cfg = config(&dir.path().join("data"));
    cfg.detection.rules = vec![rules_dir.clone()];
    cfg.detection.watch_interval_seconds = 1;
    let node = Node::start(cfg).await;
    let now = chrono::Utc::now().to_rfc3339();
    let failure = json!({"event.dataset": "sshd", "event.category": "authentication",
        "event.outcome": "failure", "event.action": "ssh_login", "source.ip": "10.5.5.5",
        "message": "Failed password for root from 10.5.5.5", "@timestamp": now});
    let send = |events: Vec<Value>| {
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        async { assert_eq!(node.ingest(body).await.0, 200) }
    };
    send(vec![
        failure.clone(),
        failure.clone(),
        failure.clone(),
        json!({"message": "a marker-one here"}),
    ])
    .await;
    let custom_alerts = alerts(&node, "7e1d0c2a-5b8e-4c1e-9f3a-2d6b8a4c0e11").await;
    assert_eq!(custom_alerts.len(), 1);
    assert_eq!(custom_alerts[0]["ruleTitle"], "Marker One");

    std::fs::write(
        rules_dir.join("custom.yml"),
        custom("Marker Two", "marker-two"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        send(vec![json!({"message": "a marker-two here"})]).await;
        // The same rule id and group: the firing counts on the alert.
        let found = alerts(&node, "7e1d0c2a-5b8e-4c1e-9f3a-2d6b8a4c0e11").await;
        if found[0]["count"].as_u64() >= Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the changed rule was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(alerts(&node, BRUTE_FORCE).await.is_empty());
    send(vec![failure.clone(), failure.clone(), failure]).await;
    let bf = alerts(&node, BRUTE_FORCE).await;
    assert_eq!(
        bf.len(),
        1,
        "3 failures before the reload + 3 after: {bf:?}"
    );
    assert_eq!(bf[0]["sourceIp"], "10.5.5.5");
    node.app.stop().await;
}

/// Triage over GraphQL: each change is checked against the lifecycle,
/// stamped with who and when, and a closed alert takes no more repeats.
#[tokio::test]
async fn alerts_go_through_the_lifecycle_with_who_and_when() {
    const ROOT_LOGIN: &str = "045518a7-693f-4f27-82e8-c64d66a9b2fb";
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(&dir.path().join("data"))).await;
    let root_login = |ip: &str| {
        json!({"event.dataset": "sshd", "event.category": "authentication",
            "event.outcome": "success", "event.action": "ssh_login", "user.name": "root",
            "source.ip": ip, "message": format!("Accepted password for root from {ip}"),
            "@timestamp": chrono::Utc::now().to_rfc3339()})
        .to_string()
            + "\n"
    };
    let body: String = ["10.9.0.1", "10.9.0.2", "10.9.0.3"]
        .iter()
        .map(|ip| root_login(ip))
        .collect();
    assert_eq!(node.ingest(body).await.0, 200);
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for a in alerts(&node, ROOT_LOGIN).await {
        ids.insert(
            a["sourceIp"].as_str().unwrap().to_owned(),
            a["id"].as_str().unwrap().to_owned(),
        );
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
    let first = ids["10.9.0.1"].clone();

    const FIELDS: &str = "id status assignee count history { at actor action status assignee comment } comments { actor comment }";
    let mutate = |op: &str, args: &str| {
        format!("mutation($id: ID!) {{ {op}(id: $id{args}) {{ {FIELDS} }} }}")
    };
    let ok = |v: Value, op: &str| -> Value {
        assert!(v["errors"].is_null(), "{op}: {v}");
        v["data"][op].clone()
    };
    let id = json!({ "id": first });
    let a = ok(
        node.graphql(&mutate("assignAlert", ", username: \"alice\""), id.clone())
            .await,
        "assignAlert",
    );
    assert_eq!(
        (a["status"].as_str(), a["assignee"].as_str()),
        (Some("OPEN"), Some("alice"))
    );
    let a = ok(
        node.graphql(
            &mutate("acknowledgeAlert", ", comment: \"looking\""),
            id.clone(),
        )
        .await,
        "acknowledgeAlert",
    );
    assert_eq!(a["status"], "ACKNOWLEDGED");
    ok(
        node.graphql(
            &mutate("commentAlert", ", text: \"a known admin host\""),
            id.clone(),
        )
        .await,
        "commentAlert",
    );

    // The lifecycle refuses what it does not allow, with a stable code.
    let v = node
        .graphql(&mutate("acknowledgeAlert", ""), id.clone())
        .await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "INVALID_TRANSITION",
        "{v}"
    );
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cannot acknowledge an alert that is acknowledged"),
        "{v}"
    );
    let v = node
        .graphql(&mutate("resolveAlert", ""), json!({ "id": "999999" }))
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "NOT_FOUND", "{v}");
    let v = node
        .graphql(&mutate("commentAlert", ", text: \"\""), id.clone())
        .await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "INVALID_TRANSITION",
        "{v}"
    );

    let a = ok(
        node.graphql(
            &mutate("markFalsePositive", ", comment: \"admin\""),
            id.clone(),
        )
        .await,
        "markFalsePositive",
    );
    assert_eq!(a["status"], "FALSE_POSITIVE");
    let history = a["history"].as_array().unwrap();
    let trail: Vec<(&str, &str, Option<&str>)> = history
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["comment"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("ASSIGN", "OPEN", None),
            ("ACKNOWLEDGE", "ACKNOWLEDGED", Some("looking")),
            ("COMMENT", "ACKNOWLEDGED", Some("a known admin host")),
            ("MARK_FALSE_POSITIVE", "FALSE_POSITIVE", Some("admin")),
        ]
    );
    for c in history {
        assert_eq!(c["actor"], "admin", "{c}");
        let at = chrono::DateTime::parse_from_rfc3339(c["at"].as_str().unwrap()).unwrap();
        assert!((chrono::Utc::now() - at.to_utc()).num_seconds() < 60, "{c}");
    }
    assert_eq!(a["comments"].as_array().unwrap().len(), 3);

    // A closed alert takes no repeats: the same login opens a new alert.
    assert_eq!(node.ingest(root_login("10.9.0.1")).await.0, 200);
    let raised = alerts(&node, ROOT_LOGIN).await;
    let for_ip: Vec<&Value> = raised
        .iter()
        .filter(|a| a["sourceIp"] == "10.9.0.1")
        .collect();
    assert_eq!(for_ip.len(), 2, "{raised:?}");
    assert!(
        for_ip
            .iter()
            .any(|a| a["status"] == "OPEN" && a["count"] == 1)
    );

    // Bulk: all or nothing.
    let bulk = "mutation($ids: [ID!]!) { setAlertsStatus(ids: $ids, status: RESOLVED, comment: \"closed\") { id status } }";
    let v = node
        .graphql(bulk, json!({ "ids": [ids["10.9.0.2"], first] }))
        .await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "INVALID_TRANSITION",
        "{v}"
    );
    let v = node.graphql(&mutate("reopenAlert", ""), id.clone()).await;
    assert_eq!(ok(v, "reopenAlert")["status"], "OPEN");
    let v = node
        .graphql(
            bulk,
            json!({ "ids": [ids["10.9.0.2"], ids["10.9.0.3"], first] }),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    let v = node
        .graphql(
            "{ alerts(status: RESOLVED, first: 10) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["alerts"]["edges"].as_array().unwrap().len(),
        3,
        "{v}"
    );

    // Counted by action: the bulk resolve changed 3 alerts at once.
    let metrics = node.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "secmon_alert_changes_total{action=\"resolve\"} 3"),
        "{metrics}"
    );
    node.app.stop().await;
}
