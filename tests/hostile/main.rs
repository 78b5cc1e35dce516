//! The hostile-client suite: each attack class of docs/SECURITY.md run
//! against the real `secmon serve` binary. After each attack the node must
//! still answer `/health`, stay under a stated memory bound, have answered
//! the attack with the right code, and still serve a legitimate client.
//!
//! One test binary, one module per attack surface.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod api;
mod auth;
mod ingest;
mod response;
mod secrets;

use std::time::Duration;

use common::daemon::Daemon;

/// Resident memory of a process, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The node survived: `/health` answers 200, RSS is under `max_rss_mib`,
/// and a legitimate admin query on another connection succeeds.
pub async fn assert_serving(daemon: &Daemon, max_rss_mib: u64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health = http
        .get(format!("{}/health", daemon.health))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/health does not answer: {e}\n{}", daemon.log_tail()));
    assert_eq!(health.status(), 200, "/health\n{}", daemon.log_tail());
    let rss = rss_kib(daemon.pid()) / 1024;
    assert!(
        rss <= max_rss_mib,
        "secmon uses {rss} MiB, over the bound of {max_rss_mib} MiB"
    );
    let key = common::daemon::admin_key(daemon.dir());
    let admin = common::bearer_client(&key);
    daemon.system(&admin).await;
}
