//! Notifications under an alert storm: a real node (`App`) raises 20 000
//! alerts from 20 000 events sent over its HTTP ingest API, and a webhook
//! channel (at most 60 messages a minute) announces them to a receiver in
//! the same process. Reported: alerts/s raised (events acknowledged, so
//! detected and committed), alerts/s announced (until the receiver has seen
//! every alert), and messages sent: a storm goes out as a few digests. The
//! baseline is the same storm on a node without channels, in the same run.
//!
//! `cargo bench --bench notify`

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secmon::App;
use secmon::config::{Config, Secret};
use serde_json::{Value, json};

const ALERTS: u32 = 20_000;
const BATCH: u32 = 2_000;
const PASSWORD: &str = "bench-admin-password";

fn ok<T, E: Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

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
    let rules = dir.path().join("rules");
    ok(std::fs::create_dir_all(&rules));
    ok(std::fs::write(
        rules.join("storm.yml"),
        "title: Storm\nid: 6a1e1c3e-6d1f-4b0e-9a53-3c1f7e9b2d10\nlogsource:\n    product: linux\n\
         detection:\n    keywords:\n        - storm-marker\n    condition: keywords\nlevel: high\n",
    ));
    let mut cfg = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    (
        cfg.ports.graphql,
        cfg.ports.websocket,
        cfg.ports.metrics,
        cfg.ports.health,
    ) = (0, 0, 0, 0);
    (
        cfg.ports.syslog_udp,
        cfg.ports.syslog_tcp,
        cfg.ports.syslog_tls,
    ) = (None, None, None);
    cfg.auth.admin_password = Some(Secret::new(PASSWORD));
    cfg.auth.rate_limit.burst = 100_000;
    cfg.detection.builtin = false;
    cfg.detection.rules = vec![rules];
    if let Some(r) = receiver {
        cfg.notifications.channels = ok(serde_saphyr::from_str(&format!(
            "- {{name: storm, kind: webhook, url: '{}', min_severity: low, max_messages_per_minute: 60}}\n",
            r.url
        )));
    }
    let app = ok(App::start(cfg).await);
    let api = app.addrs().graphql;
    let http = reqwest::Client::new();
    let v: Value = ok(ok(http
        .post(format!("http://{api}/graphql"))
        .json(&json!({"query": "mutation($p: String!) { login(username: \"admin\", password: $p) { accessToken } }", "variables": {"p": PASSWORD}}))
        .send()
        .await)
    .json()
    .await);
    let token = v["data"]["login"]["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

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
        let resp = ok(http
            .post(format!("http://{api}/api/v1/ingest"))
            .bearer_auth(&token)
            .body(body)
            .send()
            .await);
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    let raised = started.elapsed();
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
    app.stop().await;
    (raised, announced)
}
