//! Search latency on a realistic index: the rows of the search table in
//! docs/PERFORMANCE.md, and the parts of the console's search page.
//!
//! The index holds `SECMON_BENCH_EVENTS` (default 1 000 000) lines of
//! `secmon bench generate` (real Loghub OpenSSH lines, varied), parsed by
//! the node's own `parse` and indexed as the indexer does, spread over one
//! day. It is built once into `target/bench-search-<N>` and reused while
//! its commit says it holds N events (building 10M takes a few minutes).
//!
//! Each query is uncached: the index keeps no result cache. The baseline,
//! measured in the same run, is one pass over the `@timestamp` column of
//! every document (the floor of anything that looks at every hit).
//!
//! `cargo bench --bench search`; `SECMON_BENCH_EVENTS=10000000 cargo bench --bench search`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use secmon::bench::{GenerateOptions, generate};
use secmon::parse::{ParseOptions, RawRecord, parse};
use secmon::store::index::{EventIndex, Interval, SearchQuery};

const SIDEBAR: [&str; 5] = [
    "source.ip",
    "user.name",
    "host.name",
    "process.name",
    "event.dataset",
];

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The index of `n` generated events, and the time span they cover.
fn index(n: usize) -> (EventIndex, DateTime<Utc>, DateTime<Utc>) {
    let start: DateTime<Utc> = ok("2026-11-01T00:00:00Z".parse());
    let end = start + chrono::Duration::days(1);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-search-{n}"));
    let (index, _) = ok(EventIndex::open(&dir));
    if ok(index.committed_seq()) == n as u64 {
        return (index, start, end);
    }
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
    build(&dir, n, start);
    let (index, _) = ok(EventIndex::open(&dir));
    (index, start, end)
}

fn build(dir: &Path, n: usize, start: DateTime<Utc>) {
    let lines = dir.with_extension("log");
    eprintln!("generating {n} lines into {}", lines.display());
    ok(generate(&GenerateOptions {
        source: "../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log".into(),
        events: n,
        out: lines.clone(),
        start,
        days: 1,
        hosts: 16,
        ips: 50_000,
    }));
    let (index, _) = ok(EventIndex::open(dir));
    let mut writer = ok(index.writer());
    let opts = ParseOptions::default();
    let text = ok(std::fs::read_to_string(&lines));
    let received_at = start + chrono::Duration::days(1);
    for (i, line) in text.lines().enumerate() {
        let raw = RawRecord {
            bytes: line.as_bytes().to_vec(),
            source: "bench",
            peer: None,
            received_at,
        };
        let mut e = parse(&raw, &opts);
        e.seq = i as u64 + 1;
        ok(writer.add_document(index.document(e)));
        if (i + 1) % 1_000_000 == 0 {
            eprintln!("indexed {} of {n}", i + 1);
        }
    }
    let mut prepared = ok(writer.prepare_commit());
    prepared.set_payload(&n.to_string());
    ok(prepared.commit());
    ok(writer.wait_merging_threads());
    let _ = std::fs::remove_file(&lines);
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("SECMON_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (index, from, to) = index(n);
    ok(index.reload());
    let q = |text: Option<&str>| SearchQuery {
        text: text.map(str::to_owned),
        from: Some(from),
        to: Some(to),
        after: None,
        limit: 50,
    };
    let all = q(None);
    eprintln!(
        "{n} events; user.name:root {} hits, \"failed password\" {} hits",
        ok(index.count(&q(Some("user.name:root")))),
        ok(index.count(&q(Some("\"failed password\""))))
    );

    let hour: Interval = ok("1h".parse());
    let half_hour: Interval = ok("30m".parse());
    let mut g = c.benchmark_group(format!("search_{n}"));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.warm_up_time(Duration::from_secs(2));
    g.bench_function("baseline_timestamp_column_pass", |b| {
        b.iter(|| black_box(ok(index.timestamp_column_pass())))
    });
    for (name, text) in [
        ("term", "user.name:root"),
        ("phrase", "\"failed password\""),
        ("word", "invalid"),
    ] {
        let query = q(Some(text));
        g.bench_function(format!("{name}_newest_50"), |b| {
            b.iter(|| black_box(ok(index.search(&query))))
        });
        g.bench_function(format!("{name}_count"), |b| {
            b.iter(|| black_box(ok(index.count(&query))))
        });
    }
    g.bench_function("all_newest_50_page_only", |b| {
        b.iter(|| black_box(ok(index.page(&all))))
    });
    g.bench_function("stats_source_ip_top10", |b| {
        b.iter(|| black_box(ok(index.stats(&all, "source.ip", 10))))
    });
    g.bench_function("histogram_1h", |b| {
        b.iter(|| black_box(ok(index.histogram(&all, hour))))
    });
    // The console's search page: histogram, total, page, five top-value
    // lists (exact up to `sample` hits, else of the newest `sample` or so).
    for (name, text) in [
        ("all", None),
        ("term", Some("user.name:root")),
        ("phrase", Some("\"failed password\"")),
    ] {
        let query = q(text);
        for sample in [100_000, 50_000] {
            g.bench_function(format!("console_view_{name}_top_of_{sample}"), |b| {
                b.iter(|| black_box(ok(index.view(&query, half_hour, &SIDEBAR, 5, sample))))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
