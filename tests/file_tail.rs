//! File tail: globs, rotation by rename+create and by copytruncate, bad
//! lines kept, and the per-file checkpoint: a daemon killed with SIGKILL
//! while a file grows neither loses nor repeats a line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{Node, config};
use serde_json::json;

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        f.write_all(line.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.sync_all().unwrap();
}

fn sshd_lines(tag: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range
        .map(|i| {
            format!(
                "Mar  1 10:00:00 web1 sshd[{i}]: Failed password for invalid user {tag} from 10.0.0.9 port 4000 ssh2"
            )
        })
        .collect()
}

#[tokio::test]
async fn globs_rotation_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let auth = logs.join("auth.log");
    append(&auth, sshd_lines("before", 0..30));
    let mut cfg = config(&dir.path().join("data"));
    cfg.ingest.files.paths = vec![format!("{}/*.log", logs.display())];
    cfg.ingest.files.poll_interval_ms = 20;
    cfg.ingest.max_message_bytes = 200;
    let node = Node::start(cfg).await;
    node.wait_stored(30).await;

    // Lines appended in several writes, one of them without its newline yet.
    append(&auth, sshd_lines("more", 0..10));
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&auth)
            .unwrap();
        f.write_all(
            b"Mar  1 10:00:01 web1 sshd[7]: Accepted password for alice from 10.0.0.8 port 1 ssh2",
        )
        .unwrap();
        f.sync_all().unwrap();
    }
    node.wait_stored(40).await;
    append(&auth, [String::new()]); // completes the line
    node.wait_stored(41).await;

    // A new file matching the glob; an overlong line, invalid UTF-8.
    let nginx = logs.join("access.log");
    let mut bad =
        b"10.0.0.1 - - [01/Mar/2026:10:00:00 +0000] \"GET /\xff HTTP/1.1\" 200 5 \"-\" \"x\"\n"
            .to_vec();
    bad.extend(vec![b'x'; 500]);
    bad.extend(b"\nafter the long line\n");
    std::fs::write(&nginx, &bad).unwrap();
    node.wait_stored(44).await;

    // Rename + create: the old file's last lines, then the new file.
    let rotated = logs.join("auth.log.1");
    std::fs::rename(&auth, &rotated).unwrap();
    append(&rotated, sshd_lines("late", 0..5));
    append(&auth, sshd_lines("after", 0..20));
    node.wait_stored(69).await;

    // copytruncate: the copy is not tailed; the truncated file starts over.
    std::fs::copy(&auth, logs.join("auth.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&auth)
        .unwrap()
        .set_len(0)
        .unwrap();
    // Give the tail a poll to see the truncation before the file grows
    // past its old size again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&auth, sshd_lines("truncated", 0..25));
    node.wait_stored(94).await;

    node.wait_indexed().await;
    for (query, n) in [
        ("user.name:before", 30),
        ("user.name:more", 10),
        ("user.name:alice", 1),
        ("user.name:late", 5),
        ("user.name:after", 20),
        ("user.name:truncated", 25),
        ("event.dataset:sshd", 91),
        ("labels.invalid_utf8:true", 1),
        ("labels.truncated:true", 1),
    ] {
        assert_eq!(node.search_total(query).await, n, "{query}");
    }
    let v = node
        .graphql(
            r#"{ events(query: "labels.truncated:true", first: 1) { edges { node { message labels fields } } } }"#,
            json!({}),
        )
        .await;
    let e = &v["data"]["events"]["edges"][0]["node"];
    assert_eq!(e["labels"]["original_length"], "500", "{e}");
    assert_eq!(
        e["fields"]["log"]["file"]["path"],
        nginx.display().to_string()
    );
    assert_eq!(node.search_total("\"after the long line\"").await, 1);
    node.app.stop().await;
}

/// Lines keep coming while the daemon is killed at random moments; at the
/// end every line is stored exactly once.
#[tokio::test]
async fn sigkill_neither_loses_nor_repeats_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/config.yaml"),
        format!(
            "ingest:\n  files:\n    paths: [{}]\n    poll_interval_ms: 10\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::write(&log, "").unwrap();

    // The writer: 40 lines every few milliseconds until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                append(&log, (n..n + 40).map(|i| format!("line {i}")));
                n += 40;
                std::thread::sleep(Duration::from_millis(3));
            }
            n
        })
    };
    for delay in [150, 40, 300, 90] {
        let daemon = Daemon::start(dir.path()).await;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        daemon.kill9();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();

    let daemon = Daemon::start(dir.path()).await;
    let http = common::daemon::http_client(dir.path(), Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = daemon.system(&http).await["eventsStored"].as_u64().unwrap();
        if stored >= u64::from(written) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{stored} of {written} lines stored:\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.wait_indexed(&http, Duration::from_secs(30)).await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for m in daemon.all_messages(&http, "line").await {
        *seen.entry(m).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "lines stored twice: {repeated:?}");
    let missing: Vec<_> = (0..written)
        .map(|i| format!("line {i}"))
        .filter(|l| !seen.contains_key(l))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "lines lost: {missing:?}");
    assert_eq!(seen.len(), written as usize);
    println!("{written} lines, written through 4 SIGKILLs, stored exactly once");
    daemon.terminate();
}
