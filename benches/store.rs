//! Store and index throughput, in events per second, for 200-byte and 1 KB
//! events, in batches of 8192 (the writer's `batch_max_events`):
//!
//! - `store_append`: `Store::append`, one redb transaction per batch
//!   (encode, zstd, commit with fsync), into a store that grows as it runs;
//! - `store_scan`: `Store::scan_from`, how the indexer reads them back;
//! - `index_add_commit`: `EventIndex::document` + `IndexWriter::add_document`
//!   for the batch, then one tantivy commit (the indexer's own loop);
//! - `store_commit_repeats`: `Store::commit_batch` of the same batch with
//!   1 000 firings of one rule for one address (a brute force), each a
//!   repeat of one alert, into a store with the outbox on as the daemon's
//!   is, against `store_append` of the batch alone;
//! - baselines measured in the same run, to report the above as ratios
//!   (these machines are noisy): `baseline_json` (`serde_json::to_vec` of
//!   the events) and `baseline_write_fsync` (`std::fs::write` of the raw
//!   NDJSON bytes plus `sync_all`).
//!
//! `cargo bench --bench store`; each group takes about a minute.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use secmon::bench::synthetic_event;
use secmon::model::{AlertUpdate, Event};
use secmon::store::Store;
use secmon::store::index::EventIndex;

const BATCH: usize = 8192;

fn events(size: usize, offset: usize) -> Vec<Event> {
    let now: DateTime<Utc> = DateTime::from_timestamp(1_770_000_000, 0).unwrap_or_default();
    (offset..offset + BATCH)
        .filter_map(|i| {
            let v: serde_json::Value = serde_json::from_str(&synthetic_event(i, size)).ok()?;
            let mut e = Event::from_json(v, now).ok()?;
            e.timestamp = now + chrono::Duration::milliseconds(i as i64);
            // A seq of its own, as the store would give it.
            e.seq = i as u64 + 1;
            Some(e)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for size in [200usize, 1024] {
        // Several distinct batches, so the compressor and the index do not
        // see the very same batch every time.
        let batches: Vec<Vec<Event>> = (0..4).map(|k| events(size, k * BATCH)).collect();
        let raw: Vec<Vec<u8>> = (0..4)
            .map(|k| {
                (k * BATCH..(k + 1) * BATCH)
                    .flat_map(|i| (synthetic_event(i, size) + "\n").into_bytes())
                    .collect()
            })
            .collect();
        let mut g = c.benchmark_group(format!("store_{size}b"));
        g.throughput(Throughput::Elements(BATCH as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(8));
        g.warm_up_time(Duration::from_secs(2));

        g.bench_function("baseline_json", |b| {
            let mut k = 0;
            b.iter(|| {
                k += 1;
                black_box(serde_json::to_vec(black_box(&batches[k % 4])).unwrap_or_default())
            })
        });

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        g.bench_function("baseline_write_fsync", |b| {
            let path = dir.path().join("raw.ndjson");
            let mut k = 0;
            b.iter(|| {
                k += 1;
                let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
                f.write_all(&raw[k % 4]).unwrap_or_else(|e| panic!("{e}"));
                f.sync_all().unwrap_or_else(|e| panic!("{e}"));
            })
        });

        let store_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = Store::open(store_dir.path()).unwrap_or_else(|e| panic!("{e}"));
        // As the daemon opens it (the notification dispatcher reads the
        // outbox): alert updates are written there too.
        store
            .enable_outbox(1_000_000, false)
            .unwrap_or_else(|e| panic!("{e}"));
        g.bench_function("store_append", |b| {
            let mut k = 0;
            b.iter_batched(
                || {
                    k += 1;
                    batches[k % 4].clone()
                },
                |mut batch| store.append(&mut batch).unwrap_or_else(|e| panic!("{e}")),
                BatchSize::LargeInput,
            )
        });
        let repeats: Vec<AlertUpdate> = (0..1000)
            .map(|i| AlertUpdate {
                event: i,
                rule_id: "ssh-brute-force".into(),
                rule_title: "SSH brute force".into(),
                severity: "high",
                tags: vec!["attack.credential_access".into()],
                group_key: vec![("source.ip".into(), "203.0.113.7".into())],
                correlation: false,
                trusted: true,
            })
            .collect();
        g.bench_function("store_commit_repeats", |b| {
            let mut k = 0;
            b.iter_batched(
                || {
                    k += 1;
                    batches[k % 4].clone()
                },
                |mut batch| {
                    store
                        .commit_batch(&mut batch, &[], &repeats, chrono::Duration::days(365))
                        .unwrap_or_else(|e| panic!("{e}"))
                },
                BatchSize::LargeInput,
            )
        });
        let last = store.stats().map(|s| s.last_seq).unwrap_or(0);
        g.bench_function("store_scan", |b| {
            let mut from = 1u64;
            b.iter(|| {
                let got = store
                    .scan_from(from, BATCH)
                    .unwrap_or_else(|e| panic!("{e}"));
                from = if from + 2 * BATCH as u64 > last {
                    1
                } else {
                    from + BATCH as u64
                };
                black_box(got)
            })
        });

        let index_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (index, _) = EventIndex::open(index_dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut writer = index.writer().unwrap_or_else(|e| panic!("{e}"));
        // The indexer owns its events: each batch is cloned outside the timing.
        let mut k = 0;
        let mut next_batch = || {
            k += 1;
            batches[k % 4].clone()
        };
        let add = |writer: &mut tantivy::IndexWriter, batch: Vec<Event>| {
            for e in batch {
                writer
                    .add_document(index.document(e))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        };
        g.bench_function("index_add_commit", |b| {
            b.iter_batched(
                &mut next_batch,
                |batch| {
                    add(&mut writer, batch);
                    writer.commit().unwrap_or_else(|e| panic!("{e}"))
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function("index_add_only", |b| {
            b.iter_batched(
                &mut next_batch,
                |batch| add(&mut writer, batch),
                BatchSize::LargeInput,
            )
        });
        g.bench_function("index_document_only", |b| {
            b.iter_batched(
                &mut next_batch,
                |batch| {
                    for e in batch {
                        black_box(index.document(e));
                    }
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
        let _ = writer.rollback();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
