//! Disk per raw byte of the event store, without a node or an index:
//! `SECMON_BENCH_EVENTS` (default 1 000 000) lines of `secmon bench
//! generate` (Loghub OpenSSH, varied, 30 days), parsed by the node's own
//! `parse`, appended to a `Store` in batches of 5 000 as the writer commits
//! them; then the size of `secmon.redb` and what redb says it holds.
//!
//! `cargo bench --bench disk` (about half a minute for the default); the
//! baseline printed alongside is the raw lines zstd-compressed in 64 KiB
//! chunks at the store's level, which no store of every line can beat by
//! much. The sizes are deterministic: the same data gives the same bytes.

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use secmon::bench::{GenerateOptions, generate};
use secmon::model::Event;
use secmon::parse::{ParseOptions, RawRecord, parse};
use secmon::store::{DB_FILE, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::var("SECMON_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-disk-{n}"));
    std::fs::create_dir_all(&work)?;
    let lines = work.join("raw.log");
    if !lines.exists() {
        generate(&GenerateOptions {
            source: "../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log".into(),
            events: n,
            out: lines.clone(),
            start: "2025-11-01T00:00:00Z".parse()?,
            days: 30,
            hosts: 16,
            ips: 50_000,
        })?;
    }
    let text = std::fs::read_to_string(&lines)?;
    let received: DateTime<Utc> = "2026-12-05T00:00:00Z".parse()?;
    let opts = ParseOptions::default();
    let store_dir = work.join("store");
    let _ = std::fs::remove_dir_all(&store_dir);
    {
        let store = Store::open(&store_dir)?;
        let mut lines = text.lines().enumerate().peekable();
        while lines.peek().is_some() {
            let mut batch: Vec<Event> = lines
                .by_ref()
                .take(5_000)
                .map(|(i, line)| {
                    let raw = RawRecord {
                        bytes: line.as_bytes().to_vec(),
                        source: "file",
                        peer: None,
                        // A few events a millisecond, as under load.
                        received_at: received + Duration::microseconds(i as i64 * 13),
                    };
                    parse(&raw, &opts)
                })
                .collect();
            store.append(&mut batch)?;
        }
    }
    let path = store_dir.join(DB_FILE);
    let file = std::fs::metadata(&path)?.len() as f64;
    let db = redb::Database::open(&path)?;
    let stats = db.begin_write()?.stats()?;
    let allocated = (stats.allocated_pages() * stats.page_size() as u64) as f64;
    let stored = stats.stored_bytes() as f64;

    let raw = text.len() as f64;
    let mut baseline = 0;
    for chunk in text.as_bytes().chunks(64 * 1024) {
        baseline += zstd::bulk::compress(chunk, 3)?.len();
    }
    println!("{n} events, {raw} raw bytes");
    println!(
        "secmon.redb: {file} bytes, {:.3} per raw byte; pages in use {:.3}, values {:.3} ({:.1} B an event)",
        file / raw,
        allocated / raw,
        stored / raw,
        stored / n as f64
    );
    println!(
        "baseline, the raw lines alone in zstd level 3: {:.3} per raw byte",
        baseline as f64 / raw
    );
    Ok(())
}
