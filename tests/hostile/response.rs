//! Active response as an attacker would steer it: syslog has no sender
//! authentication, so anyone who reaches a syslog port can write lines
//! that trip a block rule with any source address they like. The node runs
//! a block action in dry run (nothing reaches the host's firewall; a dry
//! run takes the same decisions as a real one, `response.dry_run` audit
//! entries being its blocks).
//!
//! - forged lines from an untrusted source block nothing, and the refusals
//!   are counted and audited in a bounded way;
//! - a flood of forged sources (with `require_trusted_sources: false`)
//!   gets at most its own rate of blocks, and a trusted source's block
//!   still happens;
//! - a rule firing on loopback, the node's own address, link-local or a
//!   trusted proxy blocks nothing, and an analyst cannot block them either.

use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::assert_serving;
use crate::common::daemon::{Daemon, http_client};

/// RSS bound for these attacks: the daemon idles at well under this.
const MAX_RSS_MIB: u64 = 600;

const RULE_ID: &str = "6f0b7f5e-2d8a-4c1b-9e3f-0a1b2c3d4e5f";

/// Starts the real binary with a syslog UDP listener open to anyone (its
/// events untrusted), one rule matching sshd's failed passwords, a block
/// action in dry run, `198.51.100.0/24` as trusted proxies, and `response`
/// settings from `extra` (YAML lines, indented by two spaces).
async fn start(dir: &Path, extra: &str) -> Daemon {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("brute.yml"),
        format!(
            "title: SSH Password Guess\nid: {RULE_ID}\nlogsource:\n    product: linux\n\
             detection:\n    keywords:\n        - Failed password\n    condition: keywords\n\
             level: high\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(
        dir.join("config/config.yaml"),
        format!(
            "detection:\n  builtin: false\n  rules: ['{}']\n\
             auth:\n  trusted_proxies: ['198.51.100.0/24']\n\
             response:\n  enabled: true\n  dry_run: true\n{extra}\
             \x20 actions:\n  - {{name: block-ssh, kind: block, rules: ['{RULE_ID}'], duration: 1h}}\n",
            rules.display()
        ),
    )
    .unwrap();
    Daemon::start_with(dir, &[("SYSLOG_UDP_PORT", "0")]).await
}

fn line(source: IpAddr) -> String {
    format!(
        "<38>Dec  3 16:00:00 web1 sshd[4242]: Failed password for root from {source} port 50022 ssh2"
    )
}

/// Sends one forged syslog line per source over UDP, from loopback, 50 at
/// a time, each group received before the next is sent (so the kernel's
/// socket buffer loses none: the point is the responder, not UDP loss).
async fn forge(daemon: &Daemon, sources: &[IpAddr]) {
    let port = daemon.ports["syslog_udp"].as_u64().unwrap() as u16;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = received(daemon).await;
    let mut sent = 0;
    for chunk in sources.chunks(50) {
        for source in chunk {
            socket
                .send_to(line(*source).as_bytes(), ("127.0.0.1", port))
                .unwrap();
        }
        sent += chunk.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(20);
        while received(daemon).await < before + sent {
            assert!(
                Instant::now() < deadline,
                "the syslog listener did not receive {sent} lines\n{}",
                daemon.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `secmon_events_received_total{source="syslog_udp"}`.
async fn received(daemon: &Daemon) -> u64 {
    sample(
        &metrics(daemon).await,
        "secmon_events_received_total{source=\"syslog_udp\"}",
    )
}

fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0) as u64
}

/// The same line, from a trusted source: the authenticated HTTP API.
async fn trusted(daemon: &Daemon, http: &reqwest::Client, sources: &[IpAddr]) {
    let body: String = sources
        .iter()
        .map(|s| {
            format!(
                "{}\n",
                json!({"message": line(*s), "source.ip": s.to_string()})
            )
        })
        .collect();
    let resp = http
        .post(format!("{}/api/v1/ingest", daemon.api))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

fn sources(first: u8, n: usize) -> Vec<IpAddr> {
    (0..n)
        .map(|i| {
            format!("10.{first}.{}.{}", i / 250, 1 + i % 250)
                .parse()
                .unwrap()
        })
        .collect()
}

async fn metrics(daemon: &Daemon) -> String {
    let http = http_client(daemon.dir(), Duration::from_secs(30));
    let url = format!("http://127.0.0.1:{}/metrics", daemon.ports["metrics"]);
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// `secmon_response_refused_total{reason="..."}`.
async fn refused(daemon: &Daemon, reason: &str) -> u64 {
    let series = format!("secmon_response_refused_total{{reason=\"{reason}\"}}");
    sample(&metrics(daemon).await, &series)
}

async fn wait_refused(daemon: &Daemon, reason: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = refused(daemon, reason).await;
        assert!(got <= n, "{reason}: {got} refusals, more than {n}");
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{reason}: {got} of {n} refusals\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The audit log, oldest first: (action, target, after).
async fn audit(daemon: &Daemon) -> Vec<(String, String, Value)> {
    let mut out: Vec<(String, String, Value)> = daemon
        .audit_log(1000)
        .await
        .iter()
        .map(|n| {
            (
                n["action"].as_str().unwrap().to_owned(),
                n["target"].as_str().unwrap_or_default().to_owned(),
                n["after"].clone(),
            )
        })
        .collect();
    out.reverse();
    out
}

/// Waits for the dry run's block of `ip`: every alert before it was
/// handled (the responder reads the outbox in order). The audit log then.
async fn wait_dry_run_block(daemon: &Daemon, ip: IpAddr) -> Vec<(String, String, Value)> {
    wait_audit(daemon, &format!("no dry-run block of {ip}"), |entries| {
        entries
            .iter()
            .any(|(action, target, _)| action == "response.dry_run" && *target == ip.to_string())
    })
    .await
}

/// The audit log once `done` holds for it; `missing` says what did not
/// come within 30 s.
async fn wait_audit(
    daemon: &Daemon,
    missing: &str,
    done: impl Fn(&[(String, String, Value)]) -> bool,
) -> Vec<(String, String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let entries = audit(daemon).await;
        if done(&entries) {
            return entries;
        }
        assert!(
            Instant::now() < deadline,
            "{missing}: {entries:?}\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dry run's blocks: (address, trusted).
fn blocks(entries: &[(String, String, Value)]) -> Vec<(String, bool)> {
    entries
        .iter()
        .filter(|(action, ..)| action == "response.dry_run")
        .map(|(_, target, after)| (target.clone(), after["trusted"].as_bool().unwrap()))
        .collect()
}

/// The `response.refused` entries for `reason`: one per minute at most.
fn refusal_entries<'a>(entries: &'a [(String, String, Value)], reason: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|(action, target, _)| action == "response.refused" && target == reason)
        .map(|(.., after)| after)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_syslog_lines_from_an_untrusted_source_block_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), "").await;
    let admin = http_client(dir.path(), Duration::from_secs(30));

    const FORGED: usize = 300;
    forge(&daemon, &sources(61, FORGED)).await;
    wait_refused(&daemon, "untrusted_source", FORGED as u64).await;
    // The same line from a trusted source is acted on.
    let real: IpAddr = "203.0.113.50".parse().unwrap();
    trusted(&daemon, &admin, &[real]).await;
    let entries = wait_dry_run_block(&daemon, real).await;

    assert_eq!(blocks(&entries), [(real.to_string(), true)]);
    let audited = refusal_entries(&entries, "untrusted_source");
    assert!(
        (1..=2).contains(&audited.len()),
        "{FORGED} refusals audited in {} entries, not one each: {audited:?}",
        audited.len()
    );
    let first = audited[0];
    assert!(first["count"].as_u64().unwrap() >= 1, "{first}");
    assert!(first["examples"].as_array().unwrap().len() <= 5, "{first}");
    assert_eq!(first["dry_run"], true);
    assert!(
        entries.len() < 20,
        "{} audit entries for {FORGED} forged lines",
        entries.len()
    );
    println!("rss {} MiB", super::rss_kib(daemon.pid()) / 1024);
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_sources_cannot_crowd_out_a_trusted_block() {
    let dir = tempfile::tempdir().unwrap();
    // The operator accepted the risk of untrusted sources, with a bound.
    let daemon = start(
        dir.path(),
        "  require_trusted_sources: false\n  max_new_blocks_per_minute: 5\n\
         \x20 max_new_untrusted_blocks_per_minute: 5\n",
    )
    .await;
    let started = Instant::now();
    let admin = http_client(dir.path(), Duration::from_secs(30));

    const FLOOD: usize = 1000;
    forge(&daemon, &sources(62, FLOOD)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (blocked, limited) = loop {
        let (blocked, limited) = (
            audit(&daemon)
                .await
                .iter()
                .filter(|(action, ..)| action == "response.dry_run")
                .count() as u64,
            refused(&daemon, "rate_limited").await,
        );
        if blocked + limited == FLOOD as u64 {
            break (blocked, limited);
        }
        assert!(
            Instant::now() < deadline,
            "{blocked} blocks and {limited} refusals of {FLOOD}\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // 5 at once, then one every 12 s.
    let bound = 5 + started.elapsed().as_secs() / 12 + 1;
    assert!(
        (5..=bound).contains(&blocked),
        "{blocked} blocks of {FLOOD} forged sources, bound {bound}"
    );
    println!("flood of {FLOOD}: {blocked} blocked, {limited} refused by the rate");

    // The real attacker, seen by a trusted source, is still blocked.
    let real: IpAddr = "203.0.113.51".parse().unwrap();
    trusted(&daemon, &admin, &[real]).await;
    let entries = wait_dry_run_block(&daemon, real).await;
    let all = blocks(&entries);
    assert_eq!(
        all.iter().filter(|(_, trusted)| !trusted).count() as u64,
        blocked
    );
    assert_eq!(all.last().unwrap(), &(real.to_string(), true));
    let audited = refusal_entries(&entries, "rate_limited");
    assert!(
        (1..=2).contains(&audited.len()),
        "{limited} refusals audited in {} entries: {audited:?}",
        audited.len()
    );
    println!("rss {} MiB", super::rss_kib(daemon.pid()) / 1024);
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

/// An IPv4 address of this machine (where the daemon runs), not loopback.
fn own_address() -> IpAddr {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("this machine has no global IPv4 address: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_firing_on_the_nodes_own_addresses_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Forged lines reach the protection check too.
    let daemon = start(dir.path(), "  require_trusted_sources: false\n").await;
    let admin = http_client(dir.path(), Duration::from_secs(30));
    let protected: Vec<IpAddr> = ["127.0.0.1", "::1", "169.254.169.254", "198.51.100.7"]
        .iter()
        .map(|s| s.parse().unwrap())
        .chain([own_address()])
        .collect();

    forge(&daemon, &protected).await;
    trusted(&daemon, &admin, &protected).await;
    let real: IpAddr = "203.0.113.52".parse().unwrap();
    trusted(&daemon, &admin, &[real]).await;
    let entries = wait_dry_run_block(&daemon, real).await;
    assert_eq!(
        blocks(&entries),
        [(real.to_string(), true)],
        "only the attacker: {entries:?}"
    );
    // Each line raised or repeated an alert: one refusal each, counted
    // (syslog's and HTTP's events may share an alert or not).
    let n = protected.len() as u64;
    let counted = refused(&daemon, "protected_address").await;
    assert!((n..=2 * n).contains(&counted), "{counted} refusals");
    // A batch's refusals are audited when it ends, which may be after
    // the block of its last alert.
    let entries = wait_audit(&daemon, "no protected_address refusal audited", |entries| {
        !refusal_entries(entries, "protected_address").is_empty()
    })
    .await;
    let audited = refusal_entries(&entries, "protected_address");
    assert_eq!(audited.len(), 1, "{audited:?}");

    // By hand: refused with a code that says why.
    for ip in &protected {
        let resp: Value = admin
            .post(format!("{}/graphql", daemon.api))
            .json(&json!({
                "query": "mutation($ip: String!) { addDecision(ip: $ip, reason: \"by hand\") { ip } }",
                "variables": {"ip": ip.to_string()},
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            resp["errors"][0]["extensions"]["code"], "PROTECTED_ADDRESS",
            "{ip}: {resp}"
        );
    }
    println!("rss {} MiB", super::rss_kib(daemon.pid()) / 1024);
    assert_serving(&daemon, MAX_RSS_MIB).await;
}
