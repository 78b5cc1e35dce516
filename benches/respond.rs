//! Time from an attack to its block: a real node (`App`) with a block
//! action takes one event per new source address over its HTTP ingest API;
//! the rule fires, the alert commits, the responder reads it from the
//! outbox, records the decision and adds the address to the nftables set.
//! `nft monitor` in the namespace timestamps each element as the kernel
//! gets it. Reported: p50/p99/max from sending the event to the element
//! appearing, next to the baseline measured the same way in the same run:
//! `nft add element` run directly (the cost of the firewall call alone).
//!
//! Needs root (a network namespace of its own, nftables):
//! `cargo bench --bench respond`.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

mod common;
use common::{Node, ok};

const ATTACKS: usize = 300;
const NS: &str = "smbench";

fn sh(args: &[&str]) {
    let status = ok(Command::new(args[0]).args(&args[1..]).status());
    assert!(status.success(), "{args:?}");
}

/// Lines of `nft monitor` in the namespace, each with when it was read.
fn monitor() -> (mpsc::Receiver<(Instant, String)>, std::process::Child) {
    let mut child = ok(Command::new("ip")
        .args(["netns", "exec", NS, "nft", "monitor", "elements"])
        .stdout(Stdio::piped())
        .spawn());
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    (rx, child)
}

/// Waits for the monitor line naming `ip`; when it was read.
fn seen(rx: &mpsc::Receiver<(Instant, String)>, ip: &str) -> Instant {
    loop {
        let (at, line) = ok(rx.recv_timeout(Duration::from_secs(30)));
        if line.contains("add element") && line.contains(&format!("{ip} ")) {
            return at;
        }
    }
}

fn percentiles(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let p = |q: f64| d[((d.len() as f64 * q) as usize).min(d.len() - 1)];
    println!(
        "{name:>12}: p50 {:.2?}  p99 {:.2?}  max {:.2?}  ({} samples)",
        p(0.5),
        p(0.99),
        d[d.len() - 1],
        d.len()
    );
}

fn main() {
    let _ = Command::new("ip")
        .args(["netns", "del", NS])
        .stderr(Stdio::null())
        .status();
    sh(&["ip", "netns", "add", NS]);
    let rt = ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build());
    rt.block_on(run());
    sh(&["ip", "netns", "del", NS]);
}

async fn run() {
    let dir = ok(tempfile::tempdir());
    let node = Node::start(dir.path(), ("brute-marker", "critical"), |cfg| {
        cfg.response = ok(serde_saphyr::from_str(&format!(
            "enabled: true\nnft: [ip, netns, exec, {NS}, nft]\n\
             max_new_blocks_per_minute: {}\n\
             actions: [{{name: block, kind: block, min_severity: critical}}]\n",
            // Every attack is a new address: the whole run fits one bucket.
            ATTACKS * 2
        )));
    })
    .await;
    let (rx, mut child) = monitor();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Baseline: the firewall call alone.
    let mut baseline = Vec::new();
    for i in 0..ATTACKS {
        let ip = format!("10.201.{}.{}", i / 256, i % 256);
        let started = Instant::now();
        let add = format!("add element inet secmon blocklist {{ {ip} timeout 60s }}");
        sh(&["ip", "netns", "exec", NS, "nft", &add]);
        baseline.push(seen(&rx, &ip) - started);
    }

    let (mut blocked, mut acked) = (Vec::new(), Vec::new());
    for i in 0..ATTACKS {
        let ip = format!("10.200.{}.{}", i / 256, i % 256);
        let body = json!({"message": "brute-marker Failed password for root", "source.ip": ip});
        let started = Instant::now();
        node.ingest(format!("{body}\n")).await;
        acked.push(started.elapsed());
        blocked.push(seen(&rx, &ip) - started);
    }
    let _ = child.kill();
    node.app.stop().await;
    percentiles("nft alone", baseline.clone());
    percentiles("event acked", acked);
    percentiles("blocked", blocked.clone());
    let p99 = |mut d: Vec<Duration>| {
        d.sort();
        d[((d.len() as f64 * 0.99) as usize).min(d.len() - 1)]
    };
    println!(
        "p99 event-to-block / p99 nft alone: {:.1}x",
        p99(blocked).as_secs_f64() / p99(baseline).as_secs_f64()
    );
}
