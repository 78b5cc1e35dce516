//! Replication into Postgres: how fast an outbox of 100k entries drains into
//! the central tables, next to a baseline measured in the same run against
//! the same server: the same rows bulk-inserted with plain `INSERT .. SELECT
//! FROM unnest(..)` into a table without keys (what Postgres itself can take
//! on this machine, with no outbox, no upsert, no version check).
//!
//! `cargo bench --bench replication` (Postgres at `BENCH_DATABASE_URL`,
//! default `postgres://root@127.0.0.1:5432/test`; the bench works in a
//! database of its own, dropped at the end). Scenarios:
//!
//! - `insert`: 100k new alerts, the sink drains them (rows are inserted);
//! - `update`: each of those alerts acknowledged, 100k updates drained
//!   (every row is updated past its version check);
//! - `replay`: the `update` batches applied again, as after a crash before
//!   the cursor moved (every row is left alone by the version check);
//! - `writer`: what writing the outbox adds to a group commit (roll-ups of
//!   8192-event batches), against the same commits without it.
//!
//! `insert` and `update` run the replicator's own [`Pump`]: it reads the
//! next batch while one is applied in one transaction, and records the
//! cursor of one while the next is applied.

use std::fmt::Display;
use std::time::{Duration, Instant};

use secmon::auth::{CanTriage, Principal};
use secmon::model::{AlertAction, AlertChange, AlertUpdate, Event};
use secmon::replicate::postgres::Postgres;
use secmon::replicate::{Applied, Pump, Sink};
use secmon::store::Store;

const ENTRIES: usize = 100_000;
const BATCH: usize = 5_000;

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
    let admin_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned());
    let admin = connect(&admin_url).await;
    let db = format!(
        "secmon_bench_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    ok(admin.batch_execute(&format!("CREATE DATABASE {db}")).await);
    let url = format!("{}?sslmode=disable", swap_db(&admin_url, &db));

    let dir = ok(tempfile::tempdir());
    let store = ok(Store::open(dir.path()));
    ok(store.enable_outbox(u64::MAX, true));

    let mut sink = ok(Postgres::new(&url, 1, store.node_id()));
    // Connect and migrate outside the measurement; join before the alerts
    // exist (a sink joining later would have them all queued again).
    ok(sink.apply(0, &[]).await);
    let mut pump = ok(Pump::new(store.clone(), sink, vec![Postgres::NAME], BATCH).await);
    let filled = Instant::now();
    fill(&store);
    println!(
        "outbox: {ENTRIES} alerts (+ roll-ups) written in {:.2?}",
        filled.elapsed()
    );
    let baseline = baseline(&url, &store).await;

    let (inserted, rows) = drain(&mut pump, &store).await;
    report("insert", rows, inserted, baseline);

    acknowledge_all(&store);
    // Kept to apply again below (the drain deletes what it applied).
    let cursor = ok(store.outbox_cursor(Postgres::NAME));
    let pending = ok(store.outbox_after(cursor, usize::MAX));
    let (updated, rows) = drain(&mut pump, &store).await;
    report("update", rows, updated, baseline);

    // What `update` applied, again: as after a crash before the cursor moved.
    let mut sink = ok(Postgres::new(&url, 1, store.node_id()));
    let started = Instant::now();
    let mut rows = 0;
    for batch in pending.chunks(BATCH) {
        match ok(sink.apply(cursor, batch).await) {
            Applied::Rows(n) => rows += n,
            lost => panic!("the database holds what it confirmed: {lost:?}"),
        }
    }
    assert_eq!(rows, 0, "a replayed batch changes nothing");
    report("replay", pending.len() as u64, started.elapsed(), baseline);

    drop(sink);
    writer_cost();
    ok(admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await);
}

fn report(name: &str, rows: u64, took: Duration, baseline: f64) {
    let rate = rows as f64 / took.as_secs_f64();
    println!(
        "{name:>8}: {rows} rows in {took:.2?}: {rate:.0} rows/s, {:.2}x the baseline",
        rate / baseline
    );
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = ok(tokio_postgres::connect(url, tokio_postgres::NoTls).await);
    tokio::spawn(conn);
    client
}

/// `url` with its database replaced.
fn swap_db(url: &str, db: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    match base.rfind('/') {
        Some(i) if i > "postgres://".len() => format!("{}/{db}", &base[..i]),
        _ => format!("{base}/{db}"),
    }
}

/// What the outbox adds to the writer: the same batches committed by a
/// store without it (the baseline) and with it (roll-ups of every batch).
fn writer_cost() {
    let batches = 40;
    let commit = |outbox: bool| {
        let dir = ok(tempfile::tempdir());
        let store = ok(Store::open(dir.path()));
        if outbox {
            ok(store.enable_outbox(u64::MAX, true));
        }
        let now = chrono::Utc::now();
        let started = Instant::now();
        for b in 0..batches {
            let mut events: Vec<Event> = (0..8192)
                .map(|i| Event {
                    message: format!(
                        "Failed password for root from 10.0.{b}.{} port 22 ssh2",
                        i % 256
                    ),
                    host_name: Some(format!("web-{}", i % 16)),
                    dataset: Some("sshd".into()),
                    category: Some("authentication".into()),
                    outcome: Some(if i % 3 == 0 { "success" } else { "failure" }.into()),
                    severity: Some(6),
                    received_at: now,
                    timestamp: now,
                    ..Event::default()
                })
                .collect();
            ok(store.append(&mut events));
        }
        started.elapsed()
    };
    let without = commit(false);
    let with = commit(true);
    println!(
        "  writer: {batches} batches of 8192 events: {without:.2?} without the outbox, {with:.2?} with it ({:.2}x)",
        with.as_secs_f64() / without.as_secs_f64()
    );
}

/// 100k events, each raising an alert of its own.
fn fill(store: &Store) {
    let now = chrono::Utc::now();
    for chunk in 0..ENTRIES / BATCH {
        let mut events: Vec<Event> = (0..BATCH)
            .map(|i| Event {
                message: format!("failed login {chunk}/{i}"),
                host_name: Some(format!("web-{}", i % 16)),
                dataset: Some("sshd".into()),
                outcome: Some("failure".into()),
                received_at: now,
                timestamp: now,
                ..Event::default()
            })
            .collect();
        let updates: Vec<AlertUpdate> = (0..BATCH)
            .map(|i| AlertUpdate {
                event: i,
                rule_id: "bench-rule".into(),
                rule_title: "SSH brute force".into(),
                severity: "high",
                tags: vec!["attack.credential_access".into(), "attack.t1110".into()],
                group_key: vec![
                    (
                        "source.ip".into(),
                        format!("10.{}.{}.{}", chunk, i / 256, i % 256),
                    ),
                    ("host.name".into(), format!("web-{}", i % 16)),
                    ("user.name".into(), "root".into()),
                ],
                correlation: false,
                trusted: true,
            })
            .collect();
        ok(store.commit_batch(&mut events, &[], &updates, chrono::Duration::minutes(10)));
    }
}

fn acknowledge_all(store: &Store) {
    let cap: CanTriage = ok(Principal::local().grant(None));
    let ids: Vec<u64> = (1..=ENTRIES as u64).collect();
    for chunk in ids.chunks(BATCH) {
        let change = AlertChange::new("bench", AlertAction::Acknowledge);
        ok(store.change_alerts(&cap, chunk, &change));
    }
}

/// Drains the outbox into the sink as the replicator does.
async fn drain(pump: &mut Pump<Postgres>, store: &Store) -> (Duration, u64) {
    let head = ok(store.outbox_stats()).head;
    let started = Instant::now();
    let rows = ok(pump.catch_up(head).await);
    (started.elapsed(), rows)
}

/// Rows per second Postgres takes as a plain bulk insert of the same
/// alert rows, in batches of the same size.
async fn baseline(url: &str, store: &Store) -> f64 {
    let client = connect(url).await;
    ok(client
        .batch_execute(
            "CREATE TABLE baseline (node_id text, alert_id bigint, rule_id text, rule_title text,
                 severity text, status text, count bigint, first_seen timestamptz,
                 last_seen timestamptz, source_ip text, host_name text, user_name text,
                 version bigint)",
        )
        .await);
    let alerts = ok(store.alerts(&Default::default(), None, ENTRIES)).0;
    let started = Instant::now();
    for chunk in alerts.chunks(BATCH) {
        let ids: Vec<i64> = chunk.iter().map(|a| a.id as i64).collect();
        let text = |f: fn(&secmon::model::Alert) -> String| -> Vec<String> {
            chunk.iter().map(f).collect()
        };
        let times: Vec<chrono::DateTime<chrono::Utc>> = chunk.iter().map(|a| a.last_seen).collect();
        let counts: Vec<i64> = chunk.iter().map(|a| a.count as i64).collect();
        ok(client
            .execute(
                "INSERT INTO baseline SELECT 'node', * FROM unnest($1::int8[], $2::text[],
                     $3::text[], $4::text[], $5::text[], $6::int8[], $7::timestamptz[],
                     $7::timestamptz[], $8::text[], $9::text[], $10::text[], $1::int8[])",
                &[
                    &ids,
                    &text(|a| a.rule_id.clone()),
                    &text(|a| a.rule_title.clone()),
                    &text(|a| a.severity.clone()),
                    &text(|a| a.status.as_str().to_owned()),
                    &counts,
                    &times,
                    &text(|a| a.key_value("source.ip").unwrap_or_default().to_owned()),
                    &text(|a| a.key_value("host.name").unwrap_or_default().to_owned()),
                    &text(|a| a.key_value("user.name").unwrap_or_default().to_owned()),
                ],
            )
            .await);
    }
    let rate = alerts.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "baseline: {} rows in {:.2?}: {rate:.0} rows/s (plain bulk INSERT, no keys)",
        alerts.len(),
        started.elapsed()
    );
    rate
}
