//! Event export: how fast each sink drains a store of 200 000 realistic
//! events (Loghub's OpenSSH log, parsed as syslog ingest parses it), each
//! next to a baseline measured in the same run on the same machine:
//!
//! - `nats`: the JetStream sink through the export pump (store reads, the
//!   event as JSON, a publish with `Nats-Msg-Id` per event, every
//!   acknowledgement awaited, the cursor written per batch) into a stream
//!   of its own on `BENCH_NATS_URL` (default `nats://127.0.0.1:4222`).
//!   Baseline: the same number of messages of the same sizes, made before
//!   the clock starts, published and acknowledged by async-nats alone in
//!   the same batches: what the client and the server take.
//! - `archive`: the Parquet sink through the pump into a directory (files
//!   of 50 000 rows, zstd). Baseline: reading the same events out of the
//!   store in the same batches, which every sink pays first.
//!
//! `cargo bench --bench export`.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secmon::config::{Config, Export, S3};
use secmon::export::{Pump, Sink, Step, archive::Archive, nats::Nats};
use secmon::model::Event;
use secmon::parse::{ParseOptions, RawRecord, parse};
use secmon::replicate::Status;
use secmon::store::Store;
use secmon::store::indexer::Progress;

const EVENTS: usize = 200_000;

fn ok<T, E: Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    secmon::install_crypto_provider();
    let rt = ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build());
    rt.block_on(run());
}

async fn run() {
    let dir = ok(tempfile::tempdir());
    let store = ok(Store::open(&dir.path().join("data")));
    let raw = fill(&store);
    let progress = Arc::new(Progress::new(EVENTS as u64));
    progress.stored.store(EVENTS as u64, Ordering::Release);
    let status = Status::new(&Config::default());
    println!(
        "{EVENTS} events, {:.1} MB of raw lines, in the store",
        raw as f64 / 1e6
    );

    let url = std::env::var("BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let suffix = ulid::Ulid::generate().to_string();
    let cfg = Export {
        nats_stream: format!("BENCH_{suffix}"),
        nats_subject_prefix: format!("bench{suffix}"),
        nats_batch_size: std::env::var("BENCH_NATS_BATCH")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(Export::default().nats_batch_size),
        ..Export::default()
    };
    let js = async_nats::jetstream::new(ok(async_nats::connect(url.as_str()).await));
    let baseline = nats_baseline(&js, &cfg, &store).await;
    let nats = ok(Nats::connect(&url, &cfg, store.node_id()).await);
    let took = drain(Pump::new(&store, nats.events(), &progress, &status).await).await;
    report("nats", took, baseline);
    ok(js.delete_stream(&cfg.nats_stream).await);

    let cfg = Export {
        archive_url: Some(format!("file://{}", dir.path().join("archive").display())),
        ..Export::default()
    };
    let archive = ok(Archive::new(
        cfg.archive_url.as_deref().unwrap_or_default(),
        &cfg,
        &S3::default(),
        store.node_id(),
    ));
    let baseline = read_baseline(&store, cfg.archive_max_rows);
    let took = drain(Pump::new(&store, archive, &progress, &status).await).await;
    report("archive", took, baseline);
    let bytes: u64 = walk(&dir.path().join("archive"));
    println!(
        "archive: {:.1} MB of Parquet, {:.2} bytes per raw byte",
        bytes as f64 / 1e6,
        bytes as f64 / raw as f64
    );
}

/// The store holds [`EVENTS`] parsed OpenSSH lines; the raw bytes.
fn fill(store: &Store) -> usize {
    let path = "../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log";
    let text = std::fs::read_to_string(path)
        .or_else(|_| std::fs::read_to_string("../shared/data/loghub/OpenSSH/OpenSSH_2k.log"))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let now: DateTime<Utc> = ok(DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")).into();
    let opts = ParseOptions::default();
    let mut raw = 0;
    let mut batch = Vec::with_capacity(8192);
    for i in 0..EVENTS {
        let line = lines[i % lines.len()];
        raw += line.len();
        let record = RawRecord {
            bytes: line.as_bytes().to_vec(),
            source: "bench",
            peer: None,
            received_at: now + chrono::Duration::milliseconds(i as i64),
        };
        batch.push(parse(&record, &opts));
        if batch.len() == 8192 || i + 1 == EVENTS {
            ok(store.append(&mut batch));
            batch.clear();
        }
    }
    raw
}

/// Runs the pump until the store is drained; how long it took.
async fn drain<S: Sink>(pump: Result<Pump<S>, secmon::store::Error>) -> Duration {
    let mut pump = ok(pump);
    let started = Instant::now();
    while pump.cursor().taken < EVENTS as u64 {
        match ok(pump.step().await) {
            Step::Sent(_) => {}
            Step::Wait(wait) => tokio::time::sleep(wait.min(Duration::from_millis(10))).await,
        }
    }
    started.elapsed()
}

/// Events per second of async-nats alone: the same messages published and
/// acknowledged in the same batches, into a stream of their own.
async fn nats_baseline(js: &async_nats::jetstream::Context, cfg: &Export, store: &Store) -> f64 {
    let stream = format!("{}_BASE", cfg.nats_stream);
    let subject = format!("{}base.events", cfg.nats_subject_prefix);
    ok(js
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await);
    let messages: Vec<(String, Vec<u8>)> = ok(store.events_in(1, u64::MAX, EVENTS))
        .iter()
        .map(|e| {
            (
                e.seq.to_string(),
                ok(serde_json::to_vec(&e.to_export_json())),
            )
        })
        .collect();
    let started = Instant::now();
    for batch in messages.chunks(cfg.nats_batch_size) {
        let mut acks = Vec::with_capacity(batch.len());
        for (id, payload) in batch {
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .payload(payload.clone().into())
                .message_id(id);
            acks.push(ok(js.send_publish(subject.clone(), publish).await));
        }
        for ack in acks {
            ok(ack.await);
        }
    }
    let rate = EVENTS as f64 / started.elapsed().as_secs_f64();
    ok(js.delete_stream(&stream).await);
    rate
}

/// Events per second of reading them out of the store, in the sink's batches.
fn read_baseline(store: &Store, batch: usize) -> f64 {
    let started = Instant::now();
    let mut from = 1;
    while from <= EVENTS as u64 {
        let events: Vec<Event> = ok(store.events_in(from, u64::MAX, batch));
        from = events.last().map_or(u64::MAX, |e| e.seq + 1);
        std::hint::black_box(events);
    }
    EVENTS as f64 / started.elapsed().as_secs_f64()
}

fn report(name: &str, took: Duration, baseline: f64) {
    let rate = EVENTS as f64 / took.as_secs_f64();
    println!(
        "{name:>8}: {EVENTS} events in {took:.2?}: {rate:.0} events/s, {:.2}x the baseline ({baseline:.0}/s)",
        rate / baseline
    );
}

fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}
