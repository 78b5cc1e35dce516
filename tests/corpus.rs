//! Corpus test (runs in CI): every shared data line plus hostile inputs go
//! through `parse` and through each program parser directly. Asserts no
//! panic, the line is kept, truncation is flagged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use secmon::model::Event;
use secmon::parse::{self, ParseOptions, RawRecord};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_770_000_000, 0).unwrap()
}

fn data_lines() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("../shared/data")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| {
                ["log", "jsonl", "parse1", "txt", "testdata"].contains(&e.to_str().unwrap_or(""))
            }) {
                let bytes = std::fs::read(&path).unwrap();
                out.extend(bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec));
            }
        }
    }
    out
}

fn hostile() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "",
        " ",
        "<",
        "<>",
        "<999999999999>1 -",
        "<1>1",
        "<13>",
        "type=",
        "type=X msg=audit(",
        "type=X msg=audit(1:x):",
        "type=EXECVE msg=audit(1.1:1): a0=ZZ a1=\"",
        "msg='",
        "[",
        "] \"",
        "1.2.3.4 - - [",
        "\" 200",
        "IN= SRC=",
        "Accepted",
        "Failed ",
        "Invalid user",
        "Connection from",
        "PAM",
        "pam_unix(",
        "(root) CMD (",
        " : ",
        "x : USER=",
        "message repeated 99999999999999999999 times: [",
        "Failed password for  from  port  ssh2",
        "{",
        "{\"message\": 1}",
        "{\"source.ip\": \"nope\"}",
        "\u{feff}",
        "é",
        "\0\0\0",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(vec![0xff, 0xfe, b'<', b'1', b'>']);
    v.push(
        b"<13>Oct 11 22:14:15 h sshd[1]: Failed password for root from 1.2.3.4 port 22 ssh2"
            .repeat(2000),
    );
    v.push(vec![b'a'; 200_000]);
    v.push("é".repeat(40_000).into_bytes());
    v
}

#[test]
fn nothing_panics_and_nothing_is_lost() {
    let opts = ParseOptions::default();
    let mut lines = data_lines();
    lines.extend(hostile());
    assert!(lines.len() > 5000, "{}", lines.len());
    for bytes in &lines {
        let raw = RawRecord {
            bytes: bytes.clone(),
            source: "test",
            peer: None,
            received_at: now(),
        };
        let e = parse::parse(&raw, &opts);
        assert!(e.original.is_some(), "{:?}", String::from_utf8_lossy(bytes));
        if bytes.len() > opts.max_message_bytes {
            assert_eq!(e.labels["truncated"], "true");
            assert_eq!(e.labels["original_length"], bytes.len().to_string());
            assert!(e.original.as_ref().unwrap().len() <= opts.max_message_bytes);
        }
        if std::str::from_utf8(bytes).is_err() && bytes.len() <= opts.max_message_bytes {
            assert_eq!(e.labels["invalid_utf8"], "true");
        }
        // Every parser on the raw text, whatever it is.
        let text = String::from_utf8_lossy(bytes);
        for f in [
            parse::sshd::parse,
            parse::pam::parse,
            parse::sudo::parse,
            parse::su::parse,
            parse::auditd::parse,
            parse::firewall::parse,
            parse::web::parse,
            parse::cron::parse,
            parse::systemd::parse,
        ] {
            let _ = f(&text, &mut Event::default());
        }
        let _ = parse::accounts::parse("usermod", &text, &mut Event::default());
    }
}
