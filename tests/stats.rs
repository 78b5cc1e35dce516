//! `eventStats` and `eventHistogram` end to end: the real App on port 0,
//! the OpenSSH sample ingested over HTTP, counts checked against counts
//! made independently from the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, Utc};
use common::{Node, config, shared_data};
use serde_json::{Value, json};

const OPENSSH: &str = "loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log";

/// `Dec 10 06:55:46 ...` as a time in 2024 (the sample has no year).
fn line_time(line: &str) -> DateTime<Utc> {
    let stamp = format!("2024 {}", &line[..15]);
    NaiveDateTime::parse_from_str(&stamp, "%Y %b %d %H:%M:%S")
        .unwrap_or_else(|e| panic!("{line}: {e}"))
        .and_utc()
}

/// The address in `from <ip> port` (the sshd parser does not exist yet).
fn line_source_ip(line: &str) -> Option<IpAddr> {
    let (_, rest) = line.split_once(" from ")?;
    let (ip, _) = rest.split_once(" port ")?;
    ip.parse().ok()
}

fn openssh_lines() -> Vec<String> {
    std::fs::read_to_string(shared_data(OPENSSH))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Each line as an event with `@timestamp` and, where present, `source.ip`.
fn openssh_ndjson(lines: &[String]) -> String {
    lines
        .iter()
        .map(|line| {
            let mut doc = json!({ "message": line, "@timestamp": line_time(line).to_rfc3339() });
            if let Some(ip) = line_source_ip(line) {
                doc["source.ip"] = json!(ip.to_string());
            }
            doc.to_string() + "\n"
        })
        .collect()
}

async fn openssh_node(dir: &std::path::Path, lines: &[String]) -> Node {
    let node = Node::start(config(dir)).await;
    let (status, resp) = node.ingest(openssh_ndjson(lines)).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["accepted"], lines.len(), "{resp}");
    node.wait_indexed().await;
    node
}

#[tokio::test]
async fn failed_passwords_by_source_ip() {
    let dir = tempfile::tempdir().unwrap();
    let lines = openssh_lines();
    assert_eq!(lines.len(), 2000);
    let node = openssh_node(dir.path(), &lines).await;

    let v = node
        .graphql(
            r#"{ eventStats(query: "\"Failed password\"", groupBy: "source.ip", top: 3) { key count } }"#,
            json!({}),
        )
        .await;
    let got = v["data"]["eventStats"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));

    // Independently: lines with both the phrase and the address.
    let top_ip = "183.62.140.253";
    let top_count = lines
        .iter()
        .filter(|l| l.contains("Failed password") && l.contains(top_ip))
        .count();
    assert_eq!(top_count, 286);
    assert_eq!(got[0], json!({"key": top_ip, "count": top_count}), "{v}");

    // The whole top 3, from the file: count desc, then address.
    let mut by_ip: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.contains("Failed password")) {
        if let Some(ip) = line_source_ip(line) {
            *by_ip.entry(ip.to_string()).or_default() += 1;
        }
    }
    let mut expected: Vec<(String, u64)> = by_ip.into_iter().collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let expected: Vec<Value> = expected[..3]
        .iter()
        .map(|(ip, n)| json!({"key": ip, "count": n}))
        .collect();
    assert_eq!(got, &expected, "{v}");

    // `top` defaults to 10; numbers group too.
    let v = node
        .graphql(r#"{ eventStats(groupBy: "source.ip") { key } }"#, json!({}))
        .await;
    assert_eq!(v["data"]["eventStats"].as_array().unwrap().len(), 10, "{v}");
    node.app.stop().await;
}

#[tokio::test]
async fn histogram_of_the_sample_has_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let lines = openssh_lines();
    let node = openssh_node(dir.path(), &lines).await;

    let q = "query($q: String, $from: DateTime, $to: DateTime, $interval: String!) {
        eventHistogram(query: $q, from: $from, to: $to, interval: $interval) { start count } }";
    let histogram = |vars: Value| {
        let node = &node;
        async move {
            let v = node.graphql(q, vars).await;
            v["data"]["eventHistogram"]
                .as_array()
                .unwrap_or_else(|| panic!("{v}"))
                .iter()
                .map(|b| {
                    let start = b["start"]
                        .as_str()
                        .unwrap()
                        .parse::<DateTime<Utc>>()
                        .unwrap();
                    (start, b["count"].as_u64().unwrap())
                })
                .collect::<Vec<_>>()
        }
    };

    // Independently: per 5-minute slot of the file's times, zero-filled.
    let times: Vec<i64> = lines.iter().map(|l| line_time(l).timestamp()).collect();
    let slot = |t: i64| t.div_euclid(300) * 300;
    let (first, last) = (
        slot(*times.iter().min().unwrap()),
        slot(*times.iter().max().unwrap()),
    );
    let mut expected: BTreeMap<i64, u64> = (first..=last).step_by(300).map(|s| (s, 0)).collect();
    for t in &times {
        *expected.get_mut(&slot(*t)).unwrap() += 1;
    }
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(s, n)| (DateTime::from_timestamp(s, 0).unwrap(), n))
        .collect();

    let got = histogram(json!({"interval": "5m"})).await;
    assert_eq!(got.iter().map(|b| b.1).sum::<u64>(), 2000);
    // 06:55 to 11:00 in 5-minute steps.
    assert_eq!(got.len() as i64, (last - first) / 300 + 1);
    assert_eq!(got.len(), 50);
    assert_eq!(got, expected);

    // A time range and a query narrow it; hours start on the hour.
    let got = histogram(json!({
        "q": "\"Failed password\"",
        "from": "2024-12-10T07:00:00Z",
        "to": "2024-12-10T09:00:00Z",
        "interval": "1h",
    }))
    .await;
    let in_hour = |h: u32| {
        lines
            .iter()
            .filter(|l| l.contains("Failed password"))
            .filter(|l| l[7..9].parse::<u32>().unwrap() == h)
            .count() as u64
    };
    let hour = |h: u32| {
        format!("2024-12-10T{h:02}:00:00Z")
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    let want: Vec<_> = [7, 8]
        .into_iter()
        .map(|h| (hour(h), in_hour(h)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    node.app.stop().await;
}

#[tokio::test]
async fn bad_group_by_interval_top_and_query_are_coded_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    assert_eq!(node.ingest("{\"message\":\"m\"}\n").await.0, 200);
    node.wait_indexed().await;

    let code = |v: &Value| v["errors"][0]["extensions"]["code"].clone();
    let message = |v: &Value| v["errors"][0]["message"].as_str().unwrap_or("").to_owned();

    let v = node
        .graphql(r#"{ eventStats(groupBy: "message") { key } }"#, json!({}))
        .await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    assert!(message(&v).contains("source.ip"), "{v}");
    for top in [0, -1, 1001] {
        let v = node
            .graphql(
                "query($top: Int) { eventStats(groupBy: \"user.name\", top: $top) { key } }",
                json!({"top": top}),
            )
            .await;
        assert_eq!(code(&v), "BAD_REQUEST", "top {top}: {v}");
    }
    let v = node
        .graphql(
            r#"{ eventStats(query: "nosuchfield:x", groupBy: "user.name") { key } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&v), "BAD_QUERY", "{v}");

    for interval in ["1w", "0s", "5", ""] {
        let v = node
            .graphql(
                "query($i: String!) { eventHistogram(interval: $i) { start } }",
                json!({"i": interval}),
            )
            .await;
        assert_eq!(code(&v), "BAD_REQUEST", "{interval:?}: {v}");
        assert!(message(&v).contains("30s"), "{v}");
    }
    let v = node
        .graphql(
            r#"{ eventHistogram(query: "nosuchfield:x", interval: "1m") { start } }"#,
            json!({}),
        )
        .await;
    assert_eq!(code(&v), "BAD_QUERY", "{v}");
    node.app.stop().await;
}
