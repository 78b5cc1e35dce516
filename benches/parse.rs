//! Parse throughput on real lines (Loghub OpenSSH_2k for sshd), reported by
//! criterion as elements (lines) per second, next to a baseline measured in
//! the same run: splitting the same bytes into lines with memchr.

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

criterion_group!(benches, bench);
criterion_main!(benches);
