//! Faults: disk full. The real `secmon serve` with its data dir on a small
//! filesystem of its own (a 16 MiB tmpfs, else a loop-mounted ext4 image):
//! a filler file takes the free space, ingest answers 503 and says why,
//! nothing acknowledged is lost, and once the filler is deleted ingest
//! resumes and every acknowledged event is stored and searchable.
//!
//! Needs root (mount). Without it the test fails and says so: it is not
//! skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, http_client};
use serde_json::{Value, json};

const FS_BYTES: u64 = 16 * 1024 * 1024;

/// A filesystem mounted for the test; unmounted (and its loop device
/// detached) on drop.
struct Mount {
    dir: PathBuf,
    how: &'static str,
}

impl Mount {
    /// A small filesystem at `dir`: tmpfs if this machine lets us mount,
    /// else an ext4 image on a loop device.
    fn small(dir: &Path, image: &Path) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let size = format!("size={FS_BYTES}");
        let tmpfs = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir)
            .output();
        let mut why = match tmpfs {
            Ok(out) if out.status.success() => {
                return Mount {
                    dir: dir.to_owned(),
                    how: "tmpfs",
                };
            }
            Ok(out) => format!("mount -t tmpfs: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => format!("mount -t tmpfs: {e}"),
        };
        let f = std::fs::File::create(image).unwrap();
        f.set_len(FS_BYTES).unwrap();
        drop(f);
        let steps: [&[&str]; 2] = [&["mkfs.ext4", "-q", "-F"], &["mount", "-o", "loop"]];
        for (i, step) in steps.iter().enumerate() {
            let mut cmd = Command::new(step[0]);
            cmd.args(&step[1..]).arg(image);
            if i == 1 {
                cmd.arg(dir);
            }
            match cmd.output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    why += &format!("; {}: {}", step[0], String::from_utf8_lossy(&out.stderr));
                    panic!(
                        "cannot mount a small filesystem for the disk-full test (needs root): {why}"
                    );
                }
                Err(e) => {
                    why += &format!("; {}: {e}", step[0]);
                    panic!(
                        "cannot mount a small filesystem for the disk-full test (needs root): {why}"
                    );
                }
            }
        }
        Mount {
            dir: dir.to_owned(),
            how: "ext4 on a loop device",
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // The daemon is gone by now (dropped first); lazy in case a file is
        // still open. For a loop mount, umount also detaches the device.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the filesystem holding `path` with a file of zeros until it is
/// full; returns how many bytes it took.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Smaller writes take the last partial chunk.
    while f.write(&[0u8; 512]).is_ok_and(|n| n > 0) {
        written += 512;
    }
    let _ = f.sync_all();
    written
}

struct Ingest {
    http: reqwest::Client,
    next: u64,
    acked: Vec<String>,
}

impl Ingest {
    /// Sends one batch of `n` events with ~512-byte messages; returns the
    /// status and body. Acknowledged messages are recorded.
    async fn batch(&mut self, api: &str, n: u64) -> (u16, Value) {
        let messages: Vec<String> = (self.next..self.next + n)
            .map(|i| format!("full-e{i} {}", "x".repeat(500)))
            .collect();
        self.next += n;
        let body: String = messages
            .iter()
            .map(|m| json!({ "message": m }).to_string() + "\n")
            .collect();
        let resp = self
            .http
            .post(format!("{api}/api/v1/ingest"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").cloned();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        match status {
            200 => {
                assert_eq!(v["accepted"], n, "{v}");
                self.acked.extend(messages);
            }
            503 => assert!(retry_after.is_some(), "503 without Retry-After"),
            other => panic!("ingest answered {other}: {v}"),
        }
        (status, v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_with_503_keeps_what_was_acknowledged_and_recovers() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mount = Mount::small(&dir.path().join("data"), &dir.path().join("fs.img"));
    println!("disk_full: data dir on {} ({FS_BYTES} bytes)", mount.how);
    // Index commits every 2 s, so the test knows when the next one comes.
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/config.yaml"),
        "index:\n  commit_interval_ms: 2000\n",
    )
    .unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let http = http_client(dir.path(), Duration::from_secs(30));
    let mut ingest = Ingest {
        http: http.clone(),
        next: 0,
        acked: Vec::new(),
    };

    // Some events while there is room, all of them indexed.
    for _ in 0..5 {
        let (status, v) = ingest.batch(&daemon.api, 100).await;
        assert_eq!(status, 200, "{v}");
    }
    // Right after an index commit, one more batch and the disk fills up:
    // the next timed index commit (2 s later) then has work and no room.
    let filler = mount.dir.join("filler");
    for attempt in 1.. {
        daemon.wait_indexed(&http, Duration::from_secs(30)).await;
        let (status, v) = ingest.batch(&daemon.api, 100).await;
        assert_eq!(status, 200, "{v}");
        let filled = fill(&filler);
        let lag = daemon.system(&http).await["indexLag"].as_u64().unwrap();
        println!("disk_full: filler took {filled} bytes; index lag {lag}");
        if lag > 0 {
            break;
        }
        // The index committed in between (a very slow machine): again.
        assert!(
            attempt < 5,
            "the index always committed before the disk filled up"
        );
        std::fs::remove_file(&filler).unwrap();
    }

    // Ingest until the store cannot commit.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut oks_while_full = 0;
    loop {
        let (status, v) = ingest.batch(&daemon.api, 100).await;
        if status == 503 {
            println!("disk_full: 503 after {oks_while_full} more acknowledged batches: {v}");
            break;
        }
        oks_while_full += 1;
        assert!(
            Instant::now() < deadline,
            "ingest never answered 503 on a full disk:\n{}",
            daemon.log_tail()
        );
    }
    // It keeps refusing while the disk is full. What the failed commits
    // freed (an index writer dropping its unfinished segment files) is
    // taken again first; a small batch may still fit in pages free inside
    // the store file (redb reuses them without growing it): then it is
    // acknowledged because it is stored, which the end of this test checks
    // like every other acknowledged batch. The refusals come back at once.
    let topped_up = filler.with_extension("more");
    fill(&topped_up);
    let mut refused = 0;
    for _ in 0..20 {
        let (status, _) = ingest.batch(&daemon.api, 10).await;
        refused += u32::from(status == 503);
        if refused == 3 {
            break;
        }
    }
    assert_eq!(refused, 3, "ingest did not go on refusing on a full disk");
    let log = daemon.log();
    assert!(
        log.contains("No space left on device"),
        "the log does not say why:\n{}",
        daemon.log_tail()
    );
    // The indexer, too, fails to commit for lack of room: tantivy says so,
    // or (when the full disk hit one of its worker threads first) says the
    // writer was killed by an I/O error.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon.log().lines().any(|l| {
        l.contains("indexing failed")
            && l.contains("index error")
            && (l.contains("No space left") || l.contains("index writer was killed"))
    }) {
        assert!(
            Instant::now() < deadline,
            "the index commit did not fail on the full disk:\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready: Value = http
        .get(format!("{}/ready", daemon.health))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!("disk_full: /ready while full: {ready}");

    // Space returns: ingest resumes without a restart.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&topped_up).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = ingest.batch(&daemon.api, 10).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingest did not resume after space returned:\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let (status, v) = ingest.batch(&daemon.api, 100).await;
        assert_eq!(status, 200, "{v}");
    }

    // Everything acknowledged is stored once and searchable.
    let system = daemon.wait_indexed(&http, Duration::from_secs(60)).await;
    let stored = daemon.all_messages(&http, "full").await;
    let stored_set: HashSet<&String> = stored.iter().collect();
    assert_eq!(
        stored_set.len(),
        stored.len(),
        "duplicates in search results"
    );
    let lost = ingest
        .acked
        .iter()
        .filter(|m| !stored_set.contains(m))
        .count();
    assert_eq!(
        lost, 0,
        "{lost} acknowledged events not found by search ({system})"
    );
    assert_eq!(
        system["eventsStored"].as_u64().unwrap(),
        stored.len() as u64
    );
    assert_eq!(
        daemon.search_total(&http, "").await,
        stored.len() as u64,
        "index vs store"
    );
    println!(
        "disk_full: {} acknowledged events verified; {} stored",
        ingest.acked.len(),
        stored.len()
    );

    // What the daemon said about it, once per distinct message.
    let mut said: Vec<String> = Vec::new();
    for line in daemon.log().lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["level"] == "INFO" {
            continue;
        }
        let msg = format!("{} {}: {}", v["level"], v["message"], v["error"]);
        if !said.contains(&msg) {
            said.push(msg);
        }
    }
    println!("disk_full: the daemon logged:\n  {}", said.join("\n  "));

    // And after a clean restart too.
    let status = daemon.terminate();
    assert!(status.success(), "exit {status}");
    let daemon = Daemon::start(dir.path()).await;
    let system = daemon.wait_indexed(&http, Duration::from_secs(60)).await;
    assert_eq!(
        system["eventsStored"].as_u64().unwrap(),
        stored.len() as u64
    );
    assert_eq!(
        daemon.search_total(&http, "full").await,
        stored.len() as u64
    );
    let status = daemon.terminate();
    assert!(status.success(), "exit {status}");
    println!("disk_full: done in {:?}", started.elapsed());
    drop(mount);
}
