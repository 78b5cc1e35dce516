//! Rule evaluation throughput: events/s through the detector (routing,
//! the literal prefilter, the rsigma engines, correlation windows), next to
//! a baseline measured in the same run (a memchr scan of the same events'
//! messages).
//!
//! - `sigmahq_linux_210`: the SigmaHQ `rules/linux` folder (210 rules) plus the
//!   built-in pack, through the shipped field mapping;
//! - `rules_1050`: the same SigmaHQ rules five times over with distinct ids
//!   (1050 rules) plus the pack;
//! - `sigmahq_linux_210_unique_sources`: the first set, every event from a
//!   new source address (correlation state grows to its cap and evicts).
//!
//! The events are real lines (Loghub OpenSSH and Linux, the Beats auditd
//! and nginx samples) parsed as ingest parses them.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use secmon::detect::Detector;
use secmon::detect::rules::{self, FieldMapping, Source};
use secmon::model::Event;
use secmon::parse::{ParseOptions, RawRecord, parse};

const DATA: &str = "../shared/data";

fn events() -> Vec<Event> {
    let now: DateTime<Utc> = DateTime::from_timestamp(1_770_000_000, 0).unwrap_or_default();
    let mut out = Vec::new();
    for f in [
        "loghub/OpenSSH/OpenSSH_2k.log",
        "loghub/Linux/Linux_2k.log",
        "elastic-beats/filebeat/module/auditd/log/test/test.log",
        "elastic-beats/filebeat/module/auditd/log/test/execve-hex-arg.log",
        "elastic-beats/filebeat/module/nginx/access/test/test.log",
    ] {
        let text = std::fs::read_to_string(format!("{DATA}/{f}")).unwrap_or_default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            out.push(parse(
                &RawRecord {
                    bytes: line.as_bytes().to_vec(),
                    source: "bench",
                    peer: None,
                    received_at: now,
                },
                &ParseOptions::default(),
            ));
        }
    }
    out
}

/// `events`, `days` later: stamped and received (the windows count an
/// event at the earlier of the two).
fn later(events: &[Event], days: i64) -> Vec<Event> {
    let shift = chrono::Duration::days(days);
    events
        .iter()
        .map(|e| Event {
            timestamp: e.timestamp + shift,
            received_at: e.received_at + shift,
            ..e.clone()
        })
        .collect()
}

fn detector(copies: usize) -> Detector {
    let (sigmahq, _) = rules::read_paths(&[format!("{DATA}/sigma/rules/linux").into()]);
    let mut sources = rules::builtin();
    for copy in 0..copies {
        for s in &sigmahq {
            // A distinct id per copy, so each copy is its own rule.
            let text = s
                .text
                .lines()
                .map(|l| match l.strip_prefix("id: ") {
                    Some(id) if copy > 0 => format!("id: {}{copy:04}", &id[..id.len().min(32)]),
                    _ => l.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            sources.push(Source {
                name: format!("{}#{copy}", s.name),
                text,
            });
        }
    }
    let mapping = FieldMapping::shipped(&Default::default()).unwrap_or_default();
    let pipeline = mapping
        .pipeline(&Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let set = rules::load(&sources, &mapping, &pipeline);
    assert!(set.rejected.is_empty(), "{:?}", set.rejected);
    Detector::new(&set).unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let events = events();
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("baseline_memchr_messages", |b| {
        b.iter(|| {
            events
                .iter()
                .map(|e| memchr::memchr_iter(b' ', black_box(e.message.as_bytes())).count())
                .sum::<usize>()
        })
    });
    for (name, copies) in [("sigmahq_linux_210", 1), ("rules_1050", 5)] {
        let mut d = detector(copies);
        println!("{name}: {} rules, {} correlations", d.rules, d.correlations);
        // Each round is 400 days later (beyond the span of the logs), so
        // the correlation windows of the last round have expired, as they
        // would in a steady stream.
        let mut round = 0;
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    round += 1;
                    later(&events, round * 400)
                },
                |batch| black_box(d.evaluate(black_box(batch))),
                BatchSize::LargeInput,
            )
        });
    }
    // Every event from a new source address (a scan or a spoofed flood):
    // each opens new correlation groups, up to the state cap and its
    // evictions.
    let mut d = detector(1);
    let mut round = 0;
    g.bench_function("sigmahq_linux_210_unique_sources", |b| {
        b.iter_batched_ref(
            || {
                round += 1;
                let mut batch = later(&events, round * 400);
                for (i, e) in batch.iter_mut().enumerate() {
                    if e.source_ip.is_some() {
                        let n = (round as u32).wrapping_mul(8192).wrapping_add(i as u32);
                        e.source_ip =
                            Some(std::net::Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)).into());
                    }
                }
                batch
            },
            |batch| black_box(d.evaluate(black_box(batch))),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
