//! Backpressure: senders that outrun the store. TCP syslog stops being read
//! (nothing lost), HTTP ingest answers 429, and the daemon's memory stays
//! bounded while the overload lasts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, http_client};
use tokio::io::AsyncWriteExt;

/// Resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

/// Overload for a few seconds, sampling RSS: the peak stays under a bound
/// that does not depend on how much was sent, every TCP message sent is
/// stored, and HTTP was told to back off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_or_slowed_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/config.yaml"),
        // Detection off: in a debug build it slows the writer so much that
        // draining the senders' socket buffers would dominate the test.
        "ingest:\n  queue_capacity: 4\n  batch_max_events: 2048\ndetection:\n  enabled: false\n",
    )
    .unwrap();
    let daemon = Daemon::start_with(dir.path(), &[("SYSLOG_TCP_PORT", "0")]).await;
    let tcp_port = daemon.ports["syslog_tcp"].as_u64().unwrap();
    let pid = daemon.pid();
    let idle = rss_mib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for c in 0..8 {
        let (stop, sent) = (stop.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            // A small send buffer: what is in flight stays small, so the
            // test does not wait long for the node to drain it at the end.
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_send_buffer_size(32 * 1024).unwrap();
            let mut s = socket
                .connect(([127, 0, 0, 1], tcp_port as u16).into())
                .await
                .unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut buf = String::with_capacity(64 * 1024);
                for _ in 0..256 {
                    buf.push_str(&format!(
                        "<38>Mar  1 10:00:00 host{c} sshd[1]: Failed password for root from 10.0.{c}.1 port {i} ssh2 overload\n"
                    ));
                    i += 1;
                }
                s.write_all(buf.as_bytes()).await.unwrap();
                sent.fetch_add(256, Ordering::Relaxed);
            }
            s.shutdown().await.unwrap();
        }));
    }
    let http = http_client(dir.path(), Duration::from_secs(30));
    let throttled = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut posters = Vec::new();
    for _ in 0..4 {
        let (stop, throttled, accepted, http, api) = (
            stop.clone(),
            throttled.clone(),
            accepted.clone(),
            http.clone(),
            daemon.api.clone(),
        );
        posters.push(tokio::spawn(async move {
            let body: String = (0..2000)
                .map(|i| format!("{{\"message\":\"http overload {i}\"}}\n"))
                .collect();
            while !stop.load(Ordering::Relaxed) {
                let resp = http
                    .post(format!("{api}/api/v1/ingest"))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                match resp.status().as_u16() {
                    200 => {
                        accepted.fetch_add(2000, Ordering::Relaxed);
                    }
                    429 => {
                        assert!(resp.headers().contains_key("retry-after"));
                        throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected HTTP {other}"),
                }
            }
        }));
    }

    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(4) {
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    for p in posters {
        p.await.unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);

    // Every TCP message the senders wrote is stored (slowed, not dropped),
    // with every HTTP event that was acknowledged, and nothing else.
    let expected = sent + accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = daemon.system(&http).await["eventsStored"].as_u64().unwrap();
        assert!(stored <= expected, "{stored} stored, {expected} sent");
        if stored == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{stored} of {expected} events stored:\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let throttled = throttled.load(Ordering::Relaxed);
    println!(
        "sent {sent} syslog messages over TCP in 4 s; HTTP throttled {throttled} times; \
         RSS idle {idle} MiB, peak {peak} MiB"
    );
    assert!(throttled > 0, "the HTTP sender was never told to back off");
    assert!(
        peak < idle + 400,
        "memory grew from {idle} MiB to {peak} MiB under overload"
    );
    // Not a graceful stop: that would index everything first, slowly in
    // a debug build, and is not what this test is about.
    daemon.kill9();
}
