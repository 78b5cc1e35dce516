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

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secmon::model::Event;
use secmon::parse::{ParseOptions, RawRecord, parse, sshd, syslog};

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
    let ssh = load("../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log");
    let ssh = if ssh.is_empty() {
        load("../shared/data/loghub/OpenSSH/OpenSSH_2k.log")
    } else {
        ssh
    };
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

criterion_group!(benches, bench, per_dataset);
criterion_main!(benches);
