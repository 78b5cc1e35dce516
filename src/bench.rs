//! `secmon bench`: a load generator against a running node.
//!
//! It posts NDJSON batches of synthetic sshd-like events to
//! `/api/v1/ingest` from several concurrent clients, and measures:
//! - acknowledged (committed) events/s: every ack means a redb commit;
//! - searchable events/s: time until `system { indexLag }` reaches zero
//!   for all of them, from the first request.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// HTTP ingest to committed and searchable, events/s.
    Ingest(BenchOptions),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Base URL of the node's API port.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Approximate message size per event, in bytes.
    #[arg(long, default_value_t = 200)]
    pub event_bytes: usize,
    /// Bearer token, when the node requires one (or set SECMON_TOKEN).
    #[arg(long, env = "SECMON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Runs one benchmark and returns its report as JSON.
pub async fn run(command: BenchCommand) -> Result<serde_json::Value, Error> {
    match command {
        BenchCommand::Ingest(opts) => {
            let report = ingest(opts).await?;
            Ok(serde_json::to_value(report).unwrap_or_default())
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub events: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub event_bytes: usize,
    pub committed_seconds: f64,
    pub committed_events_per_second: f64,
    pub searchable_seconds: f64,
    pub searchable_events_per_second: f64,
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
    pub throttled_requests: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("unexpected answer from {url}: {0}", url = .1)]
    Answer(String, String),
    #[error("the node did not index all events within {0:?}")]
    Timeout(Duration),
}

/// One synthetic event line of about `bytes` bytes (at least one sshd line).
pub fn synthetic_event(i: usize, bytes: usize) -> String {
    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let mut message = format!(
        "Failed password for invalid user user{} from {ip} port {} ssh2",
        i % 1000,
        1024 + i % 60000
    );
    let mut filler = 0usize;
    while message.len() < bytes {
        message.push_str(&format!(
            " k{filler}=v{}",
            i.wrapping_mul(31).wrapping_add(filler) % 10_000
        ));
        filler += 1;
    }
    json!({
        "message": message,
        "host.name": format!("host{}", i % 16),
        "source.ip": ip,
        "event.dataset": "sshd",
        "event.outcome": "failure",
    })
    .to_string()
}

pub async fn ingest(opts: BenchOptions) -> Result<BenchReport, Error> {
    crate::install_crypto_provider();
    let client = reqwest::Client::new();
    let base = opts.url.trim_end_matches('/').to_owned();
    let before = system(&client, &base, opts.token.as_deref()).await?;
    let batches: Vec<String> = (0..opts.events.div_ceil(opts.batch.max(1)))
        .map(|b| {
            let start = b * opts.batch;
            let end = (start + opts.batch).min(opts.events);
            (start..end)
                .map(|i| synthetic_event(i, opts.event_bytes) + "\n")
                .collect()
        })
        .collect();
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(batches));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (client, queue, url, token) = (
            client.clone(),
            queue.clone(),
            format!("{base}/api/v1/ingest"),
            opts.token.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut throttled = 0u64;
            loop {
                let Some(body) = queue.lock().await.pop() else {
                    break;
                };
                loop {
                    let t = Instant::now();
                    let mut req = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone());
                    if let Some(token) = &token {
                        req = req.bearer_auth(token);
                    }
                    let resp = req.send().await.map_err(|source| Error::Http {
                        url: url.clone(),
                        source,
                    })?;
                    let status = resp.status().as_u16();
                    if status == 429 || status == 503 {
                        throttled += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let text = resp.text().await.map_err(|source| Error::Http {
                        url: url.clone(),
                        source,
                    })?;
                    if status != 200 {
                        return Err(Error::Status {
                            url: url.clone(),
                            status,
                            body: text,
                        });
                    }
                    latencies.push(t.elapsed());
                    break;
                }
            }
            Ok::<_, Error>((latencies, throttled))
        }));
    }
    let mut latencies = Vec::new();
    let mut throttled = 0;
    for w in workers {
        let (l, t) = w
            .await
            .map_err(|e| Error::Answer(e.to_string(), base.clone()))??;
        latencies.extend(l);
        throttled += t;
    }
    let committed = started.elapsed();
    let target = before.last_seq + opts.events as u64;
    let deadline = Duration::from_secs(600);
    loop {
        let now = system(&client, &base, opts.token.as_deref()).await?;
        if now.last_seq >= target && now.index_lag == 0 {
            break;
        }
        if started.elapsed() > deadline {
            return Err(Error::Timeout(deadline));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let searchable = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(BenchReport {
        events: opts.events,
        batch: opts.batch,
        concurrency: opts.concurrency,
        event_bytes: opts.event_bytes,
        committed_seconds: committed.as_secs_f64(),
        committed_events_per_second: opts.events as f64 / committed.as_secs_f64(),
        searchable_seconds: searchable.as_secs_f64(),
        searchable_events_per_second: opts.events as f64 / searchable.as_secs_f64(),
        request_p50_ms: pct(0.50),
        request_p99_ms: pct(0.99),
        throttled_requests: throttled,
    })
}

struct SystemNow {
    last_seq: u64,
    index_lag: u64,
}

async fn system(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<SystemNow, Error> {
    let url = format!("{base}/graphql");
    let mut req = client
        .post(&url)
        .json(&json!({"query": "{ system { lastSeq indexLag } }"}));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.map_err(|source| Error::Http {
        url: url.clone(),
        source,
    })?;
    let body: Value = resp.json().await.map_err(|source| Error::Http {
        url: url.clone(),
        source,
    })?;
    let field = |name: &str| body["data"]["system"][name].as_u64();
    match (field("lastSeq"), field("indexLag")) {
        (Some(last_seq), Some(index_lag)) => Ok(SystemNow {
            last_seq,
            index_lag,
        }),
        _ => Err(Error::Answer(body.to_string(), url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_events_have_the_requested_size_and_are_valid_events() {
        for size in [200, 1024] {
            let line = synthetic_event(12345, size);
            let v: Value = serde_json::from_str(&line).unwrap();
            let msg = v["message"].as_str().unwrap();
            assert!(msg.len() >= size && msg.len() < size + 16, "{}", msg.len());
            assert!(crate::model::Event::from_json(v, chrono::Utc::now()).is_ok());
        }
    }
}
