//! Notifications under an alert storm: a real node (`App`) raises 20 000
//! alerts from 20 000 events sent over its HTTP ingest API, and a webhook
//! channel (at most 60 messages a minute) announces them to a receiver in
//! the same process. Reported: alerts/s raised (events acknowledged, so
//! detected and committed), alerts/s announced (until the receiver has seen
//! every alert), and messages sent: a storm goes out as a few digests. The
//! baseline is the same storm on a node without channels, in the same run.
//!
//! `cargo bench --bench notify`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{Node, ok};

const ALERTS: u32 = 20_000;
const BATCH: u32 = 2_000;

fn main() {
    let rt = ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build());
    rt.block_on(async {
        let (baseline, _) = storm(None).await;
        println!(
            "baseline (no channel): {ALERTS} alerts raised in {baseline:.2?}: {:.0} alerts/s",
            rate(baseline)
        );
        let receiver = Receiver::start().await;
        let (raised, announced) = storm(Some(&receiver)).await;
        let announced = announced.unwrap_or_default();
        println!(
            "with a webhook channel: raised in {raised:.2?} ({:.0} alerts/s, {:.2}x the baseline), \
             all announced after {announced:.2?} ({:.0} alerts/s) in {} messages",
            rate(raised),
            baseline.as_secs_f64() / raised.as_secs_f64(),
            rate(announced),
            receiver.messages.load(Ordering::SeqCst)
        );
    });
}

fn rate(d: Duration) -> f64 {
    f64::from(ALERTS) / d.as_secs_f64()
}

struct Receiver {
    url: String,
    messages: Arc<AtomicU64>,
    alerts: Arc<AtomicU64>,
}

impl Receiver {
    async fn start() -> Receiver {
        let messages = Arc::new(AtomicU64::new(0));
        let alerts = Arc::new(AtomicU64::new(0));
        let app = {
            let (messages, alerts) = (messages.clone(), alerts.clone());
            axum::Router::new().fallback(move |body: axum::body::Bytes| {
                let (messages, alerts) = (messages.clone(), alerts.clone());
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let n = v["alerts"].as_array().map_or(0, Vec::len) as u64;
                    messages.fetch_add(1, Ordering::SeqCst);
                    alerts.fetch_add(n, Ordering::SeqCst);
                    "ok"
                }
            })
        };
        let listener = ok(tokio::net::TcpListener::bind("127.0.0.1:0").await);
        let url = format!("http://{}/hook", ok(listener.local_addr()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url,
            messages,
            alerts,
        }
    }
}

/// Raises the storm; time until every event was acknowledged, and (with a
/// receiver) until it had seen every alert.
async fn storm(receiver: Option<&Receiver>) -> (Duration, Option<Duration>) {
    let dir = ok(tempfile::tempdir());
    let node = Node::start(dir.path(), ("storm-marker", "high"), |cfg| {
        if let Some(r) = receiver {
            cfg.notifications.channels = ok(serde_saphyr::from_str(&format!(
                "- {{name: storm, kind: webhook, url: '{}', min_severity: low, max_messages_per_minute: 60}}\n",
                r.url
            )));
        }
    })
    .await;

    let started = Instant::now();
    for b in 0..ALERTS / BATCH {
        let body: String = (b * BATCH..(b + 1) * BATCH)
            .map(|i| {
                let ip = format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256);
                format!(
                    "{}\n",
                    json!({"message": format!("storm-marker {i}"), "source.ip": ip})
                )
            })
            .collect();
        node.ingest(body).await;
    }
    let raised = started.elapsed();
    assert_eq!(
        node.newest_alert().await,
        u64::from(ALERTS),
        "one alert per event"
    );
    let announced = match receiver {
        Some(r) => {
            let deadline = Instant::now() + Duration::from_secs(300);
            while r.alerts.load(Ordering::SeqCst) < u64::from(ALERTS) {
                assert!(Instant::now() < deadline, "not every alert was announced");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Some(started.elapsed())
        }
        None => None,
    };
    node.app.stop().await;
    (raised, announced)
}
