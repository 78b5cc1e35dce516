//! journald through the real `journalctl`: a journal file written by
//! `systemd-journal-remote` (from export-format entries), followed as it
//! grows, parsed like syslog, and resumed from the committed cursor after a
//! restart without repeating or losing an entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Node, config};
use serde_json::json;

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// Appends entries to the journal file at `path` (export format in, journal
/// file out), each `(identifier, message)`.
fn journal_append(path: &Path, entries: &[(&str, String)]) {
    assert!(
        Path::new(JOURNAL_REMOTE).exists(),
        "{JOURNAL_REMOTE} is missing: install systemd-journal-remote (scripts/test.sh does)"
    );
    let mut export = String::new();
    let now = chrono::Utc::now().timestamp_micros();
    for (i, (ident, message)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n_HOSTNAME=jhost\nSYSLOG_IDENTIFIER={ident}\n_PID={}\nPRIORITY=5\nSYSLOG_FACILITY=10\n_SYSTEMD_UNIT=ssh.service\nMESSAGE={message}\n\n",
            now + i as i64,
            1000 + i
        ));
    }
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", path.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn failures(from: u32, to: u32) -> Vec<(&'static str, String)> {
    (from..to)
        .map(|i| {
            (
                "sshd",
                format!("Failed password for invalid user j{i} from 10.1.0.{i} port 22 ssh2"),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_journal_is_followed_parsed_and_resumed_at_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("test.journal");
    journal_append(&journal, &failures(0, 3));
    let mut cfg = config(&dir.path().join("data"));
    cfg.ingest.journald.enabled = true;
    cfg.ingest.journald.args = vec![format!("--file={}", journal.display())];

    let node = Node::start(cfg.clone()).await;
    node.wait_stored(3).await;
    // Entries appended while it follows.
    journal_append(&journal, &failures(3, 5));
    node.wait_stored(5).await;
    node.wait_indexed().await;
    let v = node
        .graphql(
            r#"{ events(query: "user.name:j4", first: 1) { edges { node {
                hostName processName processPid dataset outcome sourceIp userName fields labels } } } }"#,
            json!({}),
        )
        .await;
    let e = &v["data"]["events"]["edges"][0]["node"];
    assert_eq!(e["hostName"], "jhost", "{v}");
    assert_eq!(e["processName"], "sshd");
    assert_eq!(e["dataset"], "sshd");
    assert_eq!(e["outcome"], "failure");
    assert_eq!(e["sourceIp"], "10.1.0.4");
    assert_eq!(e["labels"]["input"], "journald");
    assert_eq!(e["fields"]["systemd"]["unit"], "ssh.service");
    node.app.stop().await;

    // Written while secmon is down: read after the restart, nothing twice.
    journal_append(&journal, &failures(5, 8));
    let node = Node::start(cfg).await;
    node.wait_stored(8).await;
    // A moment more: a repeat of earlier entries would show up now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.wait_stored(8).await;
    node.wait_indexed().await;
    for i in 0..8 {
        assert_eq!(
            node.search_total(&format!("user.name:j{i}")).await,
            1,
            "j{i}"
        );
    }
    node.app.stop().await;
}
