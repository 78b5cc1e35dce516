//! Parse throughput on real lines, reported by criterion as elements (lines)
//! per second, next to a baseline measured in the same run: splitting the
//! same bytes into lines with memchr.
//!
//! - `sshd`: Loghub OpenSSH_2k, the sshd parser alone, the syslog header
//!   alone, and the whole `parse`.
//! - `per_dataset`: the whole `parse` on the real lines of the shared data
//!   (Loghub Linux and Apache, the Beats samples, the CrowdSec hub tests,
//!   fail2ban's test logs),
//!   grouped by the dataset they parse into: lines/s per program parser.
//! - `http_body`: HTTP ingest bodies of the OpenSSH lines as events.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secmon::ingest::http::parse_body;
use secmon::model::Event;
use secmon::parse::{ParseOptions, RawRecord, parse, sshd, syslog};
use serde::de::IgnoredAny;

/// Loghub's OpenSSH sample: 2 000 lines of a real sshd under attack.
const OPENSSH_2K: &str = "../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log";

fn load(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn bench(c: &mut Criterion) {
    let now: DateTime<Utc> = DateTime::from_timestamp(1_770_000_000, 0).unwrap_or_default();
    let ssh = load(OPENSSH_2K);
    let blob = ssh.join("\n").into_bytes();
    let msgs: Vec<String> = ssh
        .iter()
        .filter_map(|l| syslog::parse_header(l, now, None).map(|h| h.msg.to_owned()))
        .collect();
    let raws: Vec<RawRecord> = ssh
        .iter()
        .map(|l| RawRecord {
            bytes: l.clone().into_bytes(),
            source: "bench",
            peer: None,
            received_at: now,
        })
        .collect();
    let opts = ParseOptions::default();

    let mut g = c.benchmark_group("sshd");
    g.throughput(Throughput::Elements(ssh.len() as u64));
    g.bench_function("baseline_memchr_split", |b| {
        b.iter(|| memchr::memchr_iter(b'\n', black_box(&blob)).count())
    });
    g.bench_function("sshd_parser_only", |b| {
        b.iter(|| {
            for m in &msgs {
                let mut e = Event::default();
                black_box(sshd::parse(black_box(m), &mut e));
            }
        })
    });
    g.bench_function("syslog_header_only", |b| {
        b.iter(|| {
            for l in &ssh {
                black_box(syslog::parse_header(black_box(l), now, None));
            }
        })
    });
    g.bench_function("full_parse", |b| {
        b.iter(|| {
            for r in &raws {
                black_box(parse(black_box(r), &opts));
            }
        })
    });
    g.finish();
}

/// HTTP ingest bodies: the OpenSSH lines parsed, each sent as the ingest
/// JSON `secmon bench ingest --line-format syslog` sends (`@timestamp`, the
/// dotted known fields, the rest at the top level), one document a line.
/// The baseline reads the same documents without building anything (serde's
/// `IgnoredAny`); `value_then_event` is the way before: a `serde_json::Value`
/// of each document, then the event from it.
fn http_body(c: &mut Criterion) {
    let now: DateTime<Utc> = DateTime::from_timestamp(1_770_000_000, 0).unwrap_or_default();
    let opts = ParseOptions::default();
    let lines: Vec<String> = load(OPENSSH_2K)
        .into_iter()
        .map(|l| {
            let raw = RawRecord {
                bytes: l.into_bytes(),
                source: "bench",
                peer: None,
                received_at: now,
            };
            secmon::bench::ingest_json(&parse(&raw, &opts)).to_string()
        })
        .collect();
    let body = lines.join("\n").into_bytes();
    let mut g = c.benchmark_group("http_body");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("baseline_json_ignored", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(serde_json::from_slice::<IgnoredAny>(black_box(l.as_bytes())).ok());
            }
        })
    });
    // Both keep the body's events, as ingest does until they are committed.
    g.bench_function("value_then_event", |b| {
        b.iter(|| {
            let events: Vec<Event> = lines
                .iter()
                .filter_map(|l| serde_json::from_slice(black_box(l.as_bytes())).ok())
                .filter_map(|v| Event::from_json(v, now).ok())
                .collect();
            black_box(events)
        })
    });
    g.bench_function("parse_body", |b| {
        b.iter(|| black_box(parse_body(black_box(&body))))
    });
    g.finish();
}

/// The real log files of the shared data that hold lines of our datasets.
fn corpus() -> Vec<String> {
    let data = "../shared/data";
    let mut files: Vec<String> = [
        "loghub/Linux/Linux_2k.log",
        "loghub/Apache/Apache_2k.log",
        "elastic-beats/filebeat/module/system/auth/test/test.log",
        "elastic-beats/filebeat/module/auditd/log/test/test.log",
        "elastic-beats/filebeat/module/auditd/log/test/useradd.log",
        "elastic-beats/filebeat/module/auditd/log/test/execve-hex-arg.log",
        "elastic-beats/filebeat/module/nginx/access/test/test.log",
        "elastic-beats/filebeat/module/apache/access/test/test.log",
    ]
    .iter()
    .map(|f| format!("{data}/{f}"))
    .collect();
    // fail2ban's annotated test logs: mail, DNS, VPN, proxy, web error logs.
    if let Ok(logs) = std::fs::read_dir(format!("{data}/fail2ban-logs")) {
        for f in logs.flatten().filter(|f| f.path().is_file()) {
            files.push(f.path().display().to_string());
        }
    }
    if let Ok(tests) = std::fs::read_dir(format!("{data}/crowdsec-hub/.tests")) {
        for dir in tests.flatten() {
            for f in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if f.file_name().to_string_lossy().ends_with(".log") {
                    files.push(f.path().display().to_string());
                }
            }
        }
    }
    files.sort();
    files.iter().flat_map(|f| load(f)).collect()
}

fn per_dataset(c: &mut Criterion) {
    let now: DateTime<Utc> = DateTime::from_timestamp(1_770_000_000, 0).unwrap_or_default();
    let opts = ParseOptions::default();
    let raw = |l: &String| RawRecord {
        bytes: l.clone().into_bytes(),
        source: "bench",
        peer: None,
        received_at: now,
    };
    let mut by_dataset: std::collections::BTreeMap<String, Vec<RawRecord>> = Default::default();
    for line in corpus() {
        let r = raw(&line);
        if let Some(d) = parse(&r, &opts).dataset {
            by_dataset.entry(d.into_owned()).or_default().push(r);
        }
    }
    let mut g = c.benchmark_group("per_dataset");
    for (dataset, raws) in &by_dataset {
        g.throughput(Throughput::Elements(raws.len() as u64));
        g.bench_function(dataset.as_str(), |b| {
            b.iter(|| {
                for r in raws {
                    black_box(parse(black_box(r), &opts));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, http_body, per_dataset);
criterion_main!(benches);
