//! Durability, proven: the real `secmon serve` under continuous ingest from
//! several clients is killed with SIGKILL at random moments and restarted,
//! again and again. Afterwards every acknowledged event is stored exactly
//! once, the index has caught up, and search finds each of them once.
//!
//! `SECMON_KILL_ROUNDS=N` runs N kills (default 20); `SECMON_KILL_SEED=S`
//! replays a run (the seed is printed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, Rng, http_client, seed_from_env};
use serde_json::json;
use tokio::sync::watch;

const CLIENTS: u64 = 4;
const DEFAULT_ROUNDS: u64 = 20;

/// Where the clients should send their events.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// Being restarted: wait.
    Down,
    Up(String),
    Stop,
}

#[derive(Default)]
struct Tally {
    /// Messages of events whose request was answered 200.
    acked: Vec<String>,
    /// Messages of events whose request got no 200 (may or may not be stored).
    unacked: usize,
    /// Non-200 answers by status, and transport errors (status 0).
    refusals: HashMap<u16, usize>,
}

/// One client: batches of 1..=10 events, each message unique
/// (`dur-c<client>-e<n>`); never resends a message, so a stored duplicate
/// can only come from the server.
async fn client(
    http: reqwest::Client,
    id: u64,
    seed: u64,
    mut target: watch::Receiver<Target>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut rng = Rng::new(seed);
    let mut next = 0u64;
    loop {
        let current = target.borrow_and_update().clone();
        let url = match current {
            Target::Stop => return,
            Target::Down => {
                let _ = target.changed().await;
                continue;
            }
            Target::Up(url) => url,
        };
        let n = rng.between(1, 10);
        let messages: Vec<String> = (next..next + n)
            .map(|i| format!("dur-c{id}-e{i}"))
            .collect();
        next += n;
        let body: String = messages
            .iter()
            .map(|m| json!({ "message": m, "user.name": format!("client{id}") }).to_string() + "\n")
            .collect();
        let result = http
            .post(format!("{url}/api/v1/ingest"))
            .body(body)
            .send()
            .await;
        let status = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if status == 200 {
                    // A 200 whose body is cut off by the kill is not an ack.
                    match resp.json::<serde_json::Value>().await {
                        Ok(v) => {
                            assert_eq!(v["accepted"], n, "every line is valid: {v}");
                            tally.lock().unwrap().acked.extend(messages);
                            continue;
                        }
                        Err(_) => 0,
                    }
                } else {
                    assert!(
                        status == 429 || status == 503,
                        "ingest answered {status}: only 200, 429 and 503 are expected"
                    );
                    status
                }
            }
            Err(_) => 0,
        };
        {
            let mut t = tally.lock().unwrap();
            t.unacked += messages.len();
            *t.refusals.entry(status).or_default() += 1;
        }
        if status == 0 {
            // The node is gone (killed): wait for the next one.
            let _ = target.changed().await;
        }
    }
}

/// The payload (indexed seq) of the last tantivy commit, as on disk.
fn index_payload(meta: &std::path::Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
    v["payload"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    let started = Instant::now();
    let seed = seed_from_env("SECMON_KILL_SEED");
    let rounds: u64 = std::env::var("SECMON_KILL_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("SECMON_KILL_ROUNDS is a number"))
        .unwrap_or(DEFAULT_ROUNDS);
    println!("durability: SECMON_KILL_SEED={seed} SECMON_KILL_ROUNDS={rounds}");
    let mut rng = Rng::new(seed);

    let dir = tempfile::tempdir().unwrap();
    // Frequent index commits, so kills also land between a tantivy commit
    // and the checkpoint written to redb after it.
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/config.yaml"),
        "index:\n  commit_interval_ms: 1\n",
    )
    .unwrap();

    let (target_tx, target_rx) = watch::channel(Target::Down);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                http_client(dir.path(), Duration::from_secs(20)),
                id,
                rng.next_u64(),
                target_rx.clone(),
                tally.clone(),
            ))
        })
        .collect();

    let http = http_client(dir.path(), Duration::from_secs(30));
    let mut acked_before = 0;
    for round in 0..rounds {
        let daemon = Daemon::start(dir.path()).await;
        target_tx.send_replace(Target::Up(daemon.api.clone()));
        // A third of the kills come at a random moment after start-up
        // (recovery, index catch-up, ingest); a third at a random moment
        // once this process has checkpointed the index (its steady commit
        // cycle); a third right after tantivy has written a new commit,
        // before the indexer records the checkpoint in redb.
        let kind = rng.between(0, 2);
        let delay = match kind {
            0 => rng.between(50, 400),
            1 => {
                let indexed = |s: &serde_json::Value| {
                    s["lastSeq"].as_u64().unwrap() - s["indexLag"].as_u64().unwrap()
                };
                let first = indexed(&daemon.system(&http).await);
                let deadline = Instant::now() + Duration::from_secs(30);
                while indexed(&daemon.system(&http).await) == first {
                    assert!(
                        Instant::now() < deadline,
                        "the index did not commit within 30 s:\n{}",
                        daemon.log_tail()
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                rng.between(0, 300)
            }
            _ => {
                let meta = dir.path().join("data/index/meta.json");
                let first = index_payload(&meta);
                let deadline = Instant::now() + Duration::from_secs(30);
                while index_payload(&meta) == first {
                    assert!(
                        Instant::now() < deadline,
                        "the index did not commit within 30 s:\n{}",
                        daemon.log_tail()
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                0
            }
        };
        let delay = Duration::from_millis(delay);
        // The random moment of the crash: a choice, not a wait for something.
        tokio::time::sleep(delay).await;
        daemon.kill9();
        assert!(!clients.iter().any(|c| c.is_finished()), "a client failed");
        target_tx.send_replace(Target::Down);
        let acked = tally.lock().unwrap().acked.len();
        println!(
            "round {round}: killed {delay:?} after {}, {} events acknowledged",
            ["start-up", "an index checkpoint", "a tantivy commit"][kind as usize],
            acked - acked_before
        );
        acked_before = acked;
    }

    let daemon = Daemon::start(dir.path()).await;
    target_tx.send_replace(Target::Up(daemon.api.clone()));
    // Some ingest on the recovered node, then stop the clients and let
    // their last requests finish.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tally.lock().unwrap().acked.len() < acked_before + 200 {
        assert!(!clients.iter().any(|c| c.is_finished()), "a client failed");
        assert!(
            Instant::now() < deadline,
            "ingest did not resume after the last restart:\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    target_tx.send_replace(Target::Stop);
    for c in clients {
        c.await.unwrap();
    }
    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    println!(
        "clients: {} events acknowledged, {} not acknowledged; refusals by status (0 = transport error): {:?}",
        tally.acked.len(),
        tally.unacked,
        tally.refusals
    );
    assert!(
        tally.acked.len() as u64 >= rounds * 10,
        "too little ingest to prove anything: {} acknowledged",
        tally.acked.len()
    );

    let system = daemon.wait_indexed(&http, Duration::from_secs(60)).await;
    let stored_count = system["eventsStored"].as_u64().unwrap();

    // Everything the index holds, through search, newest first.
    let stored = daemon.all_messages(&http, "dur").await;
    let mut seen = HashSet::with_capacity(stored.len());
    let duplicates: Vec<&String> = stored.iter().filter(|m| !seen.insert(*m)).collect();
    assert!(
        duplicates.is_empty(),
        "{} messages found more than once, e.g. {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(10)]
    );
    let lost: Vec<&String> = tally.acked.iter().filter(|m| !seen.contains(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events are not found, e.g. {:?}\n{}",
        lost.len(),
        &lost[..lost.len().min(10)],
        daemon.log_tail()
    );
    let acked: HashSet<&String> = tally.acked.iter().collect();
    println!(
        "stored: {} events, of which {} were never acknowledged (allowed)",
        stored.len(),
        stored.iter().filter(|m| !acked.contains(m)).count()
    );
    // redb holds each event once, and the index holds each stored event once.
    assert_eq!(
        stored_count,
        seen.len() as u64,
        "eventsStored vs distinct messages found by search"
    );
    assert_eq!(daemon.search_total(&http, "").await, stored_count);
    assert_eq!(
        system["lastSeq"].as_u64().unwrap(),
        stored_count,
        "{system}"
    );

    // Per client, and a sample of single events by their exact message.
    for id in 0..CLIENTS {
        let want = stored
            .iter()
            .filter(|m| m.starts_with(&format!("dur-c{id}-")))
            .count() as u64;
        assert_eq!(
            daemon
                .search_total(&http, &format!("user.name:client{id}"))
                .await,
            want
        );
        assert_eq!(daemon.search_total(&http, &format!("c{id}")).await, want);
    }
    for _ in 0..50 {
        let m = &tally.acked[rng.between(0, tally.acked.len() as u64 - 1) as usize];
        assert_eq!(
            daemon.search_total(&http, &format!("\"{m}\"")).await,
            1,
            "{m}"
        );
    }

    let status = daemon.terminate();
    assert!(status.success(), "exit {status}");
    println!(
        "durability: {rounds} kills, {} acknowledged events verified in {:?}",
        tally.acked.len(),
        started.elapsed()
    );
}

/// A rebuild (or any backlog) is checkpointed on the commit timer as it
/// goes, not only at its end: a crash in the middle of a long catch-up
/// keeps what was done, and `indexLag` shrinks while it runs; the events it
/// read back from the store are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_checkpoints_as_it_goes() {
    const EVENTS: u64 = 16_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(dir.path());
    cfg.index.commit_interval_ms = 50;
    // A store with events and no index, as after losing the index.
    {
        let store = secmon::store::Store::open(dir.path()).unwrap();
        let now = chrono::Utc::now();
        let mut events: Vec<_> = (0..EVENTS)
            .map(|i| secmon::model::Event {
                message: format!("rebuild {i}"),
                timestamp: now,
                received_at: now,
                ..Default::default()
            })
            .collect();
        store.append(&mut events).unwrap();
    }

    let node = common::Node::start(cfg).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut partial = Vec::new();
    loop {
        let v = node
            .graphql("{ system { indexLag lastSeq } }", json!({}))
            .await;
        let lag = v["data"]["system"]["indexLag"].as_u64().unwrap();
        if lag == 0 {
            break;
        }
        if lag < EVENTS && partial.last() != Some(&lag) {
            partial.push(lag);
        }
        assert!(Instant::now() < deadline, "the rebuild did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !partial.is_empty(),
        "the rebuild of {EVENTS} events was checkpointed only at its end"
    );
    assert_eq!(node.search_total("rebuild").await, EVENTS);
    // None of them came from the writer in memory: each was read back
    // (at least: under `cargo test` other nodes share the process's counters).
    let metrics = node.metrics().await;
    let read_back: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("secmon_index_read_back_events_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(read_back >= EVENTS, "{read_back} read back: {metrics}");
    node.app.stop().await;
}
