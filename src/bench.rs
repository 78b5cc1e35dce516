//! `secmon bench`: load generators against a running node, and the test
//! data they use.
//!
//! - `bench ingest` posts NDJSON batches to `/api/v1/ingest` from several
//!   concurrent clients (synthetic sshd-like events, or the lines of a file)
//!   and measures acknowledged (committed) events/s, every ack meaning a redb
//!   commit, and searchable events/s: the time until `system { indexLag }`
//!   reaches zero for all of them, from the first request.
//! - `bench syslog` sends syslog over TCP (octet counting) from several
//!   connections, as fast as the node reads (it reads only what it has
//!   committed), and measures committed and searchable events/s: the time
//!   until `system { lastSeq }` and then `indexLag` show all of them.
//! - `bench alert` keeps a steady syslog load on the node (lines that raise
//!   nothing) and sends marker lines (a root login from a new address each,
//!   which the built-in "SSH Login As Root" rule turns into a new alert);
//!   it reports the latency from sending a marker to its alert's creation
//!   (stamped inside the commit) and to the alert being visible over GraphQL.
//! - `bench search` runs each kind of query (term, bare word, phrase, time
//!   range, `eventStats`, `eventHistogram`) N times from C concurrent clients
//!   over GraphQL and reports latency percentiles and requests/s per kind.
//! - `bench generate` writes a realistic syslog stream of N lines from real
//!   log lines (Loghub OpenSSH), varying times, hosts, pids, IPs, users and
//!   ports, so a big store is not the same few lines over and over.
//!
//! `scripts/bench-storage.sh` puts them together into the end-to-end storage
//! measurement.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::model::Event;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// HTTP ingest to committed and searchable, events/s.
    Ingest(Box<BenchOptions>),
    /// Syslog over TCP to committed and searchable, events/s.
    Syslog(Box<SyslogOptions>),
    /// Event-to-alert latency under a steady syslog load.
    Alert(Box<AlertOptions>),
    /// GraphQL search latency (p50/p99/max) and requests/s per query kind.
    Search(Box<SearchOptions>),
    /// Write a realistic syslog stream of N lines made from real log lines.
    Generate(Box<GenerateOptions>),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Base URL of the node's API port.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Events to send [default: 200000 synthetic ones, or every line of --from-file].
    #[arg(long)]
    pub events: Option<usize>,
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Approximate message size per synthetic event, in bytes.
    #[arg(long, default_value_t = 200)]
    pub event_bytes: usize,
    /// Send the lines of this file instead of synthetic events, one event per line.
    #[arg(long)]
    pub from_file: Option<PathBuf>,
    /// How --from-file lines become events: `message` sends `{"message": line}`;
    /// `syslog` parses each line as the syslog source does (`secmon::parse`)
    /// and sends the normalised event; `ndjson` sends the lines as they are.
    #[arg(long, value_enum, default_value_t = LineFormat::Message)]
    pub line_format: LineFormat,
    /// Year of RFC 3164 timestamps (which have none) with `--line-format syslog`.
    #[arg(long)]
    pub year: Option<i32>,
    /// Give up waiting for the index to catch up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub index_timeout_secs: u64,
    /// API key or access token for the API (or set SECMON_TOKEN).
    #[arg(long, env = "SECMON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    Message,
    Syslog,
    Ndjson,
}

/// Runs one benchmark and returns its report as JSON.
pub async fn run(command: BenchCommand) -> Result<serde_json::Value, Error> {
    let value = match command {
        BenchCommand::Ingest(opts) => serde_json::to_value(ingest(*opts).await?),
        BenchCommand::Syslog(opts) => serde_json::to_value(syslog(*opts).await?),
        BenchCommand::Alert(opts) => serde_json::to_value(alert(*opts).await?),
        BenchCommand::Search(opts) => serde_json::to_value(search(*opts).await?),
        BenchCommand::Generate(opts) => {
            let report = tokio::task::spawn_blocking(move || generate(&opts))
                .await
                .map_err(|e| Error::Io(e.to_string()))??;
            serde_json::to_value(report)
        }
    };
    Ok(value.unwrap_or_default())
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub events: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// Synthetic events: their message size; from a file: its mean line size.
    pub event_bytes: usize,
    pub source: String,
    pub line_format: Option<LineFormat>,
    /// Bytes of the lines read from --from-file (newlines included).
    pub raw_bytes: u64,
    /// Bytes of NDJSON posted.
    pub posted_bytes: u64,
    pub committed_seconds: f64,
    pub committed_events_per_second: f64,
    pub searchable_seconds: f64,
    pub searchable_events_per_second: f64,
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
    pub throttled_requests: u64,
    /// CPU time this client used (user + system), to judge how much of the
    /// machine it took from the node.
    pub client_cpu_seconds: Option<f64>,
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
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    BadOption(String),
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

/// The ingest JSON for a normalised event: dotted known keys, the rest of
/// `fields` at the top level, so `Event::from_json` gives the event back.
pub fn ingest_json(e: &Event) -> Value {
    let mut o = Map::new();
    o.insert(
        "@timestamp".into(),
        Value::String(
            e.timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
    );
    o.insert("message".into(), Value::String(e.message.clone()));
    let mut text = |key: &str, v: Option<String>| {
        if let Some(v) = v {
            o.insert(key.into(), Value::String(v));
        }
    };
    let ip = |v: Option<std::net::IpAddr>| v.map(|ip| ip.to_string());
    text("host.name", e.host_name.clone());
    text("host.ip", ip(e.host_ip));
    text("source.ip", ip(e.source_ip));
    text("destination.ip", ip(e.destination_ip));
    text("user.name", e.user_name.clone());
    text("user.target.name", e.user_target_name.clone());
    text("process.name", e.process_name.clone());
    text("process.command_line", e.process_command_line.clone());
    text("process.executable", e.process_executable.clone());
    text("event.category", e.category.as_deref().map(str::to_owned));
    text("event.action", e.action.as_deref().map(str::to_owned));
    text("event.outcome", e.outcome.as_deref().map(str::to_owned));
    text("event.dataset", e.dataset.as_deref().map(str::to_owned));
    text("log.original", e.original.clone());
    let numbers = [
        ("source.port", e.source_port.map(u64::from)),
        ("destination.port", e.destination_port.map(u64::from)),
        ("process.pid", e.process_pid.map(u64::from)),
        ("event.severity", e.severity.map(u64::from)),
    ];
    for (key, v) in numbers {
        if let Some(v) = v {
            o.insert(key.into(), Value::from(v));
        }
    }
    if !e.labels.is_empty() {
        o.insert("labels".into(), json!(e.labels));
    }
    for (k, v) in &e.fields {
        o.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(o)
}

/// Where `bench ingest` gets its NDJSON batches.
enum Batches {
    Synthetic(std::vec::IntoIter<String>),
    File {
        lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
        format: LineFormat,
        year: Option<i32>,
        left: usize,
        batch: usize,
        raw_bytes: Arc<std::sync::atomic::AtomicU64>,
    },
}

impl Iterator for Batches {
    type Item = Result<(String, usize), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Batches::Synthetic(batches) => batches.next().map(|b| {
                let n = b.lines().count();
                Ok((b, n))
            }),
            Batches::File {
                lines,
                format,
                year,
                left,
                batch,
                raw_bytes,
            } => {
                let mut body = String::new();
                let mut n = 0;
                let opts = crate::parse::ParseOptions {
                    year_hint: *year,
                    ..crate::parse::ParseOptions::default()
                };
                let now = Utc::now();
                while n < *batch && *left > 0 {
                    let line = match lines.next()? {
                        Ok(line) => line,
                        Err(e) => return Some(Err(Error::Io(format!("reading --from-file: {e}")))),
                    };
                    raw_bytes
                        .fetch_add(line.len() as u64 + 1, std::sync::atomic::Ordering::Relaxed);
                    if line.trim().is_empty() {
                        continue;
                    }
                    match format {
                        LineFormat::Ndjson => body.push_str(&line),
                        LineFormat::Message => {
                            body.push_str(&json!({ "message": line }).to_string())
                        }
                        LineFormat::Syslog => {
                            let raw = crate::parse::RawRecord {
                                bytes: line.into_bytes(),
                                source: "file",
                                peer: None,
                                received_at: now,
                            };
                            let event = crate::parse::parse(&raw, &opts);
                            body.push_str(&ingest_json(&event).to_string());
                        }
                    }
                    body.push('\n');
                    n += 1;
                    *left -= 1;
                }
                (n > 0).then_some(Ok((body, n)))
            }
        }
    }
}

pub async fn ingest(opts: BenchOptions) -> Result<BenchReport, Error> {
    crate::install_crypto_provider();
    let client = reqwest::Client::new();
    let base = opts.url.trim_end_matches('/').to_owned();
    let before = system(&client, &base, opts.token.as_deref()).await?;
    let raw_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let batch = opts.batch.max(1);
    let (batches, source) = match &opts.from_file {
        None => {
            let events = opts.events.unwrap_or(200_000);
            let bodies: Vec<String> = (0..events.div_ceil(batch))
                .map(|b| {
                    let start = b * batch;
                    let end = (start + batch).min(events);
                    (start..end)
                        .map(|i| synthetic_event(i, opts.event_bytes) + "\n")
                        .collect()
                })
                .collect();
            (
                Batches::Synthetic(bodies.into_iter()),
                "synthetic".to_owned(),
            )
        }
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
            let batches = Batches::File {
                lines: std::io::BufReader::with_capacity(1 << 20, file).lines(),
                format: opts.line_format,
                year: opts.year,
                left: opts.events.unwrap_or(usize::MAX),
                batch,
                raw_bytes: raw_bytes.clone(),
            };
            (batches, path.display().to_string())
        }
    };
    // One producer thread makes the bodies (reading, parsing) while the
    // clients send; the queue keeps it a few batches ahead.
    let concurrency = opts.concurrency.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<(String, usize)>(concurrency * 2);
    let producer = std::thread::Builder::new()
        .name("bench-producer".into())
        .spawn(move || {
            for item in batches {
                let item = item?;
                if tx.blocking_send(item).is_err() {
                    break;
                }
            }
            Ok::<(), Error>(())
        })
        .map_err(|e| Error::Io(e.to_string()))?;
    let queue = Arc::new(tokio::sync::Mutex::new(rx));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, queue, url, token) = (
            client.clone(),
            queue.clone(),
            format!("{base}/api/v1/ingest"),
            opts.token.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut throttled, mut sent, mut bytes) = (0u64, 0usize, 0u64);
            loop {
                let Some((body, n)) = queue.lock().await.recv().await else {
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
                sent += n;
                bytes += body.len() as u64;
            }
            Ok::<_, Error>((latencies, throttled, sent, bytes))
        }));
    }
    let mut latencies = Vec::new();
    let (mut throttled, mut events, mut posted_bytes) = (0, 0, 0);
    for w in workers {
        let (l, t, n, b) = w
            .await
            .map_err(|e| Error::Answer(e.to_string(), base.clone()))??;
        latencies.extend(l);
        throttled += t;
        events += n;
        posted_bytes += b;
    }
    producer
        .join()
        .map_err(|_| Error::Io("the producer thread panicked".into()))??;
    let committed = started.elapsed();
    let target = before.last_seq + events as u64;
    let deadline = Duration::from_secs(opts.index_timeout_secs);
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
    let raw_bytes = raw_bytes.load(std::sync::atomic::Ordering::Relaxed);
    Ok(BenchReport {
        events,
        batch,
        concurrency,
        event_bytes: match opts.from_file {
            None => opts.event_bytes,
            Some(_) => (raw_bytes as usize).checked_div(events).unwrap_or(0),
        },
        source,
        line_format: opts.from_file.as_ref().map(|_| opts.line_format),
        raw_bytes,
        posted_bytes,
        committed_seconds: committed.as_secs_f64(),
        committed_events_per_second: events as f64 / committed.as_secs_f64(),
        searchable_seconds: searchable.as_secs_f64(),
        searchable_events_per_second: events as f64 / searchable.as_secs_f64(),
        request_p50_ms: percentile_ms(&latencies, 0.50),
        request_p99_ms: percentile_ms(&latencies, 0.99),
        throttled_requests: throttled,
        client_cpu_seconds: own_cpu_seconds(),
    })
}

/// The `p` quantile of sorted latencies, in ms (nearest rank).
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// User + system CPU seconds of this process (Linux; `None` elsewhere).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`, which may hold spaces: state is field 3,
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // Clock ticks are 100 per second on every Linux this runs on.
    Some((ticks(11)? + ticks(12)?) / 100.0)
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
    let body = graphql(client, base, token, "{ system { lastSeq indexLag } }").await?;
    let field = |name: &str| body["data"]["system"][name].as_u64();
    match (field("lastSeq"), field("indexLag")) {
        (Some(last_seq), Some(index_lag)) => Ok(SystemNow {
            last_seq,
            index_lag,
        }),
        _ => Err(Error::Answer(body.to_string(), format!("{base}/graphql"))),
    }
}

/// Posts one GraphQL query; an answer with `errors` is an error.
async fn graphql(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
) -> Result<Value, Error> {
    let url = format!("{base}/graphql");
    let mut req = client.post(&url).json(&json!({ "query": query }));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.map_err(|source| Error::Http {
        url: url.clone(),
        source,
    })?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(|source| Error::Http {
        url: url.clone(),
        source,
    })?;
    if status != 200 || body.get("errors").is_some() {
        return Err(Error::Answer(body.to_string(), url));
    }
    Ok(body)
}

// ---------------------------------------------------------------- search

#[derive(Debug, Clone, clap::Args)]
pub struct SearchOptions {
    /// Base URL of the node's API port.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Query kinds to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "term,word,phrase,range,stats,histogram"
    )]
    pub kinds: Vec<SearchKind>,
    /// Timed requests per kind.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Untimed requests per kind first (warms caches and connections).
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Page size of the `events` queries.
    #[arg(long, default_value_t = 20)]
    pub first: usize,
    /// The `term` kind's query.
    #[arg(long, default_value = "user.name:root")]
    pub term: String,
    /// The `word` kind's query (a bare word searches the message).
    #[arg(long, default_value = "invalid")]
    pub word: String,
    /// The `phrase` kind's query.
    #[arg(long, default_value = "\"failed password\"")]
    pub phrase: String,
    /// Start of the `range` kind (inclusive) [default: a day before the newest event].
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// End of the `range` kind (exclusive) [default: just after the newest event].
    #[arg(long)]
    pub to: Option<DateTime<Utc>>,
    /// `eventStats` groups by this field.
    #[arg(long, default_value = "source.ip")]
    pub group_by: String,
    /// `eventHistogram` interval.
    #[arg(long, default_value = "1h")]
    pub interval: String,
    /// Query of `eventStats` and `eventHistogram` [default: none, every event].
    #[arg(long)]
    pub agg_query: Option<String>,
    /// Give every `events` request (term, word, phrase) its own `to`, a
    /// microsecond apart past the newest event and now, so that none is
    /// answered from the node's search cache: the timings are of the
    /// search itself.
    #[arg(long)]
    pub uncached: bool,
    /// Ask the fleet (`fleet { events }`, `fleet { eventStats }`: every
    /// node, from this one) instead of this node alone; `histogram` has no
    /// fleet form.
    #[arg(long)]
    pub fleet: bool,
    /// API key or access token for the API (or set SECMON_TOKEN).
    #[arg(long, env = "SECMON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    /// `events(query: <term>)`, a keyword field term.
    Term,
    /// `events(query: <word>)`, a bare word.
    Word,
    /// `events(query: <phrase>)`.
    Phrase,
    /// `events(from:, to:)`.
    Range,
    /// `eventStats(groupBy:)`.
    Stats,
    /// `eventHistogram(interval:)`.
    Histogram,
}

#[derive(Debug, Serialize)]
pub struct SearchReport {
    pub requests: usize,
    pub concurrency: usize,
    pub events_stored: u64,
    pub kinds: Vec<KindReport>,
    pub client_cpu_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct KindReport {
    pub kind: SearchKind,
    pub query: String,
    /// `totalCount` of the `events` kinds, the number of buckets of the others.
    pub matched: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub requests_per_second: f64,
}

/// A GraphQL string literal.
fn gql_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

pub async fn search(opts: SearchOptions) -> Result<SearchReport, Error> {
    crate::install_crypto_provider();
    let client = reqwest::Client::new();
    let base = opts.url.trim_end_matches('/').to_owned();
    let token = opts.token.as_deref();
    let stored = graphql(&client, &base, token, "{ system { eventsStored } }").await?["data"]
        ["system"]["eventsStored"]
        .as_u64()
        .unwrap_or(0);
    let (from, to) = match (opts.from, opts.to) {
        (Some(from), Some(to)) => (from, to),
        (from, to) => {
            let newest = graphql(
                &client,
                &base,
                token,
                "{ events(first: 1) { edges { node { timestamp } } } }",
            )
            .await?;
            let newest = newest["data"]["events"]["edges"][0]["node"]["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| Error::BadOption("no events to search: ingest some first".into()))?;
            (
                from.unwrap_or(newest - chrono::Duration::days(1)),
                to.unwrap_or(newest + chrono::Duration::seconds(1)),
            )
        }
    };
    let rfc =
        |t: DateTime<Utc>| gql_string(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    let page = if opts.fleet {
        format!(
            "first: {}) {{ totalCount partial events {{ event {{ id timestamp message }} }} }}",
            opts.first
        )
    } else {
        format!(
            "first: {}) {{ totalCount edges {{ node {{ id timestamp message }} }} }}",
            opts.first
        )
    };
    let buckets = if opts.fleet {
        "{ buckets { key count } partial }"
    } else {
        "{ key count }"
    };
    let agg_query = opts
        .agg_query
        .as_deref()
        .map(|q| format!("query: {}, ", gql_string(q)))
        .unwrap_or_default();
    // Past the newest event, so the hits are the same whatever the request.
    let uncached = if opts.uncached {
        format!("to: {UNCACHED_TO}, ")
    } else {
        String::new()
    };
    let mut kinds = Vec::new();
    for &kind in &opts.kinds {
        let text = |q: &str| format!("events(query: {}, {uncached}{page}", gql_string(q));
        let field = match kind {
            SearchKind::Term => text(&opts.term),
            SearchKind::Word => text(&opts.word),
            SearchKind::Phrase => text(&opts.phrase),
            SearchKind::Range => format!("events(from: {}, to: {}, {page}", rfc(from), rfc(to)),
            SearchKind::Stats => format!(
                "eventStats({agg_query}groupBy: {}, top: 10) {buckets}",
                gql_string(&opts.group_by)
            ),
            SearchKind::Histogram if opts.fleet => {
                return Err(Error::BadOption(
                    "the fleet has no eventHistogram: leave histogram out of --kinds".into(),
                ));
            }
            SearchKind::Histogram => format!(
                "eventHistogram({agg_query}interval: {}) {{ start count }}",
                gql_string(&opts.interval)
            ),
        };
        let query = if opts.fleet {
            format!("{{ fleet {{ {field} }} }}")
        } else {
            format!("{{ {field} }}")
        };
        kinds.push(run_kind(&client, &base, token, kind, query, to, &opts).await?);
    }
    Ok(SearchReport {
        requests: opts.requests,
        concurrency: opts.concurrency,
        events_stored: stored,
        kinds,
        client_cpu_seconds: own_cpu_seconds(),
    })
}

/// Stands for a `to` of its own in each request of `bench search --uncached`.
const UNCACHED_TO: &str = "\"@uncached-to@\"";

async fn run_kind(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    kind: SearchKind,
    query: String,
    to: DateTime<Utc>,
    opts: &SearchOptions,
) -> Result<KindReport, Error> {
    // The request's text: its own `to` when uncached, counted from now so
    // that no earlier run's pages are still cached for it.
    let to = to.max(Utc::now());
    let sent = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let request = move |query: &str| {
        let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let to = to + chrono::Duration::microseconds(n);
        query.replace(
            UNCACHED_TO,
            &gql_string(&to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        )
    };
    let matched = |body: &Value| -> u64 {
        let data = if opts.fleet {
            &body["data"]["fleet"]
        } else {
            &body["data"]
        };
        match kind {
            SearchKind::Stats if opts.fleet => data["eventStats"]["buckets"]
                .as_array()
                .map_or(0, |a| a.len() as u64),
            SearchKind::Stats => data["eventStats"].as_array().map_or(0, |a| a.len() as u64),
            SearchKind::Histogram => data["eventHistogram"]
                .as_array()
                .map_or(0, |a| a.len() as u64),
            _ => data["events"]["totalCount"].as_u64().unwrap_or(0),
        }
    };
    let mut answer = Value::Null;
    for _ in 0..opts.warmup.max(1) {
        answer = graphql(client, base, token, &request(&query)).await?;
    }
    let fleet = &answer["data"]["fleet"];
    if fleet["events"]["partial"] == true || fleet["eventStats"]["partial"] == true {
        return Err(Error::BadOption(format!(
            "a node left its part out, so the fleet timings would not compare: {answer}"
        )));
    }
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(opts.requests));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        let (client, base, token, query, left, request) = (
            client.clone(),
            base.to_owned(),
            token.map(str::to_owned),
            query.clone(),
            left.clone(),
            request.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Acquire,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                let text = request(&query);
                let t = Instant::now();
                graphql(&client, &base, token.as_deref(), &text).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(
            w.await
                .map_err(|e| Error::Answer(e.to_string(), base.to_owned()))??,
        );
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    Ok(KindReport {
        kind,
        matched: matched(&answer),
        query,
        p50_ms: percentile_ms(&latencies, 0.50),
        p90_ms: percentile_ms(&latencies, 0.90),
        p99_ms: percentile_ms(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        mean_ms: (total.as_secs_f64() * 1000.0) / latencies.len().max(1) as f64,
        requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
    })
}

// ---------------------------------------------------------------- syslog

#[derive(Debug, Clone, clap::Args)]
pub struct SyslogOptions {
    /// Base URL of the node's API port (progress is read there).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// The node's syslog TCP listener.
    #[arg(long, default_value = "127.0.0.1:5601")]
    pub target: String,
    /// Lines to send [default: 1000000, or every line of --from-file].
    #[arg(long)]
    pub events: Option<usize>,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Send the lines of this file (e.g. from `bench generate`) instead of
    /// synthetic sshd lines.
    #[arg(long)]
    pub from_file: Option<PathBuf>,
    /// Give up waiting for the node after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// API key or access token for the API (or set SECMON_TOKEN).
    #[arg(long, env = "SECMON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SyslogReport {
    pub events: usize,
    pub connections: usize,
    pub source: String,
    /// Bytes sent, framing included.
    pub bytes: u64,
    pub sent_seconds: f64,
    pub committed_seconds: f64,
    pub committed_events_per_second: f64,
    pub searchable_seconds: f64,
    pub searchable_events_per_second: f64,
    pub client_cpu_seconds: Option<f64>,
}

/// A synthetic RFC 3164 sshd line.
fn synthetic_syslog(i: usize) -> String {
    format!(
        "<38>Mar  1 10:{:02}:{:02} host{} sshd[{}]: Failed password for invalid user user{} from 10.{}.{}.{} port {} ssh2",
        (i / 60) % 60,
        i % 60,
        i % 16,
        1000 + i % 30_000,
        i % 1000,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255,
        1024 + i % 60_000
    )
}

pub async fn syslog(opts: SyslogOptions) -> Result<SyslogReport, Error> {
    use tokio::io::AsyncWriteExt;

    crate::install_crypto_provider();
    let client = reqwest::Client::new();
    let base = opts.url.trim_end_matches('/').to_owned();
    let connections = opts.connections.max(1);
    // Every frame is made before the clock starts; connection c sends lines
    // c, c + connections, ...
    let lines: Vec<String> = match &opts.from_file {
        None => (0..opts.events.unwrap_or(1_000_000))
            .map(synthetic_syslog)
            .collect(),
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
            std::io::BufReader::with_capacity(1 << 20, file)
                .lines()
                .take(opts.events.unwrap_or(usize::MAX))
                .collect::<Result<_, _>>()
                .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?
        }
    };
    let events = lines.len();
    let mut streams: Vec<Vec<u8>> = vec![Vec::new(); connections];
    for (i, line) in lines.iter().enumerate() {
        let out = &mut streams[i % connections];
        out.extend_from_slice(format!("{} ", line.len()).as_bytes());
        out.extend_from_slice(line.as_bytes());
    }
    drop(lines);
    let bytes = streams.iter().map(|s| s.len() as u64).sum();
    let before = system(&client, &base, opts.token.as_deref()).await?;

    let started = Instant::now();
    let mut senders = Vec::new();
    for stream in streams {
        let target = opts.target.clone();
        senders.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&target)
                .await
                .map_err(|e| Error::Io(format!("cannot connect to {target}: {e}")))?;
            s.write_all(&stream)
                .await
                .and(s.shutdown().await)
                .map_err(|e| Error::Io(format!("sending to {target}: {e}")))
        }));
    }
    for s in senders {
        s.await.map_err(|e| Error::Io(e.to_string()))??;
    }
    let sent = started.elapsed();
    let target = before.last_seq + events as u64;
    let deadline = Duration::from_secs(opts.timeout_secs);
    let mut committed = None;
    loop {
        let now = system(&client, &base, opts.token.as_deref()).await?;
        if now.last_seq >= target {
            committed.get_or_insert(started.elapsed());
            if now.index_lag == 0 {
                break;
            }
        }
        if started.elapsed() > deadline {
            return Err(Error::Timeout(deadline));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let searchable = started.elapsed();
    let committed = committed.unwrap_or(searchable);
    Ok(SyslogReport {
        events,
        connections,
        source: opts
            .from_file
            .as_ref()
            .map_or("synthetic sshd".to_owned(), |p| p.display().to_string()),
        bytes,
        sent_seconds: sent.as_secs_f64(),
        committed_seconds: committed.as_secs_f64(),
        committed_events_per_second: events as f64 / committed.as_secs_f64(),
        searchable_seconds: searchable.as_secs_f64(),
        searchable_events_per_second: events as f64 / searchable.as_secs_f64(),
        client_cpu_seconds: own_cpu_seconds(),
    })
}

// ---------------------------------------------------------------- alert

/// The built-in rule the markers raise.
const ROOT_LOGIN_RULE: &str = "045518a7-693f-4f27-82e8-c64d66a9b2fb";

#[derive(Debug, Clone, clap::Args)]
pub struct AlertOptions {
    /// Base URL of the node's API port.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// The node's syslog TCP listener.
    #[arg(long, default_value = "127.0.0.1:5601")]
    pub target: String,
    /// Background lines per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Markers per second.
    #[arg(long, default_value_t = 20)]
    pub markers_per_second: u64,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// API key or access token for the API (or set SECMON_TOKEN).
    #[arg(long, env = "SECMON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AlertReport {
    pub background_events: u64,
    pub background_events_per_second: f64,
    pub markers: usize,
    pub alerts_seen: usize,
    /// Marker sent -> alert created (inside the commit transaction).
    pub created_p50_ms: f64,
    pub created_p99_ms: f64,
    pub created_max_ms: f64,
    /// Marker sent -> alert visible to a GraphQL poll (every 5 ms).
    pub visible_p50_ms: f64,
    pub visible_p99_ms: f64,
    pub visible_max_ms: f64,
}

pub async fn alert(opts: AlertOptions) -> Result<AlertReport, Error> {
    use std::collections::HashMap;
    use tokio::io::AsyncWriteExt;

    crate::install_crypto_provider();
    let client = reqwest::Client::new();
    let base = opts.url.trim_end_matches('/').to_owned();
    let connect = |target: String| async move {
        tokio::net::TcpStream::connect(&target)
            .await
            .map_err(|e| Error::Io(format!("cannot connect to {target}: {e}")))
    };
    let frame = |line: String| format!("{} {line}", line.len());
    let duration = Duration::from_secs(opts.seconds.max(1));

    // Background: lines no rule alerts on, paced every 10 ms.
    let mut bg = connect(opts.target.clone()).await?;
    let per_tick = (opts.rate / 100).max(1);
    let background = tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut sent = 0u64;
        while started.elapsed() < duration {
            tick.tick().await;
            let mut buf = String::new();
            for _ in 0..per_tick {
                buf.push_str(&frame(format!(
                    "<30>Mar  1 10:00:00 bench{} systemd[1]: Started Session {sent} of user bench.",
                    sent % 8
                )));
                sent += 1;
            }
            if bg.write_all(buf.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = bg.shutdown().await;
        (sent, started.elapsed())
    });

    // Markers: each a root login from its own address, timed at send.
    let mut marker = connect(opts.target.clone()).await?;
    let markers = (opts.seconds * opts.markers_per_second).max(1) as usize;
    let gap = Duration::from_secs_f64(1.0 / opts.markers_per_second.max(1) as f64);
    let sent_at: Arc<std::sync::Mutex<HashMap<String, DateTime<Utc>>>> = Default::default();
    let (sent_at2, markers_done) = (
        sent_at.clone(),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let done = markers_done.clone();
    let sender = tokio::spawn(async move {
        for i in 0..markers {
            let ip = format!("10.250.{}.{}", (i >> 8) & 255, i & 255);
            let line = frame(format!(
                "<38>Mar  1 10:00:00 benchhost sshd[{}]: Accepted password for root from {ip} port 22 ssh2",
                1000 + i
            ));
            sent_at2
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ip, Utc::now());
            if marker.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(gap).await;
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });

    // Poll the alerts; note when each marker's alert is first visible.
    let mut created = Vec::new();
    let mut visible = Vec::new();
    let mut seen: std::collections::HashSet<String> = Default::default();
    let query = format!(
        "{{ alerts(ruleId: \"{ROOT_LOGIN_RULE}\", first: 100) {{ edges {{ node {{ sourceIp createdAt }} }} }} }}"
    );
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    while seen.len() < markers && Instant::now() < deadline {
        let body = graphql(&client, &base, opts.token.as_deref(), &query).await?;
        let now = Utc::now();
        for edge in body["data"]["alerts"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let node = &edge["node"];
            let Some(ip) = node["sourceIp"].as_str() else {
                continue;
            };
            if seen.contains(ip) {
                continue;
            }
            let sent = sent_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(ip)
                .copied();
            let (Some(sent), Some(at)) = (
                sent,
                node["createdAt"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
            ) else {
                continue;
            };
            seen.insert(ip.to_owned());
            created.push((at.with_timezone(&Utc) - sent).to_std().unwrap_or_default());
            visible.push((now - sent).to_std().unwrap_or_default());
        }
        if markers_done.load(std::sync::atomic::Ordering::Acquire) && seen.len() >= markers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sender.await.map_err(|e| Error::Io(e.to_string()))?;
    let (background_events, elapsed) = background.await.map_err(|e| Error::Io(e.to_string()))?;
    created.sort();
    visible.sort();
    let max = |v: &[Duration]| v.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Ok(AlertReport {
        background_events,
        background_events_per_second: background_events as f64 / elapsed.as_secs_f64(),
        markers,
        alerts_seen: seen.len(),
        created_p50_ms: percentile_ms(&created, 0.50),
        created_p99_ms: percentile_ms(&created, 0.99),
        created_max_ms: max(&created),
        visible_p50_ms: percentile_ms(&visible, 0.50),
        visible_p99_ms: percentile_ms(&visible, 0.99),
        visible_max_ms: max(&visible),
    })
}

// ---------------------------------------------------------------- generate

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateOptions {
    /// Real syslog lines to vary (RFC 3164 `Mon dd hh:mm:ss host prog[pid]: msg`).
    #[arg(
        long,
        default_value = "../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log"
    )]
    pub source: PathBuf,
    /// Lines to write.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: usize,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Time of the first line; the lines are spread evenly over --days.
    #[arg(long, default_value = "2025-11-01T00:00:00Z")]
    pub start: DateTime<Utc>,
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Distinct hosts.
    #[arg(long, default_value_t = 16)]
    pub hosts: u32,
    /// Distinct remote IPs (at most).
    #[arg(long, default_value_t = 50_000)]
    pub ips: u32,
}

#[derive(Debug, Serialize)]
pub struct GenerateReport {
    pub out: String,
    pub lines: usize,
    pub bytes: u64,
    pub source_lines: usize,
    pub first: String,
    pub last: String,
}

/// A source line cut into the parts that get varied.
struct Template {
    host: String,
    program: String,
    pid: Option<u32>,
    msg: String,
}

fn template(line: &str) -> Option<Template> {
    // `Dec 10 06:55:46 LabSZ sshd[24200]: msg`: the time is 15 characters.
    let rest = line.get(16..)?;
    let (host, rest) = rest.split_once(' ')?;
    let (tag, msg) = rest.split_once(": ")?;
    let (program, pid) = match tag.split_once('[') {
        Some((p, pid)) => (p, pid.trim_end_matches(']').parse().ok()),
        None => (tag, None),
    };
    Some(Template {
        host: host.to_owned(),
        program: program.to_owned(),
        pid,
        msg: msg.to_owned(),
    })
}

/// A cheap, stable 64-bit mix (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hash_str(s: &str, salt: u64) -> u64 {
    s.bytes().fold(mix(salt), |h, b| mix(h ^ u64::from(b)))
}

/// Writes `msg` varied for `round` (each pass over the source is a round):
/// IPv4 addresses, user names (root stays root) and ports change, the
/// wording does not.
fn vary(msg: &str, round: u64, i: u64, opts: &GenerateOptions, out: &mut String) {
    let mut prev = "";
    for (n, token) in msg.split(' ').enumerate() {
        if n > 0 {
            out.push(' ');
        }
        let core =
            token.trim_matches(|c: char| matches!(c, '[' | ']' | ',' | ';' | ':' | '(' | ')'));
        let lead = token.find(core).unwrap_or(0);
        let (before, after) = (&token[..lead], &token[lead + core.len()..]);
        if !core.is_empty() && core.parse::<std::net::Ipv4Addr>().is_ok() {
            out.push_str(before);
            out.push_str(&vary_ip(core, round, opts.ips));
            out.push_str(after);
        } else if let Some(ip) = core
            .strip_prefix("rhost=")
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        {
            // pam_unix names the address sshd logs for the same connection:
            // it varies the same way.
            out.push_str(before);
            out.push_str("rhost=");
            out.push_str(&vary_ip(ip, round, opts.ips));
            out.push_str(after);
        } else if prev == "port" && !core.is_empty() && core.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(before);
            out.push_str(&(1024 + mix(i) % 64_000).to_string());
            out.push_str(after);
        } else if let Some(user) = core.strip_prefix("user=").filter(|u| !u.is_empty()) {
            out.push_str(before);
            out.push_str("user=");
            out.push_str(&vary_user(user, round));
            out.push_str(after);
        } else if prev == "user" && !matches!(core, "" | "from" | "unknown") {
            out.push_str(before);
            out.push_str(&vary_user(core, round));
            out.push_str(after);
        } else {
            out.push_str(token);
        }
        prev = token;
    }
}

/// One of `ips` addresses, the same for the same `ip` within a round.
fn vary_ip(ip: &str, round: u64, ips: u32) -> String {
    let h = mix(hash_str(ip, round) % u64::from(ips.max(1)));
    format!(
        "{}.{}.{}.{}",
        1 + (h % 223),
        (h >> 8) & 255,
        (h >> 16) & 255,
        1 + ((h >> 24) % 254)
    )
}

fn vary_user(user: &str, round: u64) -> String {
    if user == "root" {
        return user.to_owned();
    }
    format!("{user}{}", hash_str(user, round) % 100)
}

pub fn generate(opts: &GenerateOptions) -> Result<GenerateReport, Error> {
    let source = std::fs::read_to_string(&opts.source)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", opts.source.display())))?;
    let templates: Vec<Template> = source.lines().filter_map(template).collect();
    if templates.is_empty() {
        return Err(Error::BadOption(format!(
            "{} has no `Mon dd hh:mm:ss host prog[pid]: msg` lines",
            opts.source.display()
        )));
    }
    let file = std::fs::File::create(&opts.out)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", opts.out.display())))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let span_micros = i64::from(opts.days.max(1)) * 86_400_000_000;
    let start = opts.start.timestamp_micros();
    let step = span_micros / opts.events.max(1) as i64;
    let (mut line, mut bytes) = (String::new(), 0u64);
    let (mut first, mut last) = (String::new(), String::new());
    for i in 0..opts.events {
        let t = &templates[i % templates.len()];
        let round = (i / templates.len()) as u64;
        let at = Utc
            .timestamp_micros(start + step * i as i64)
            .single()
            .unwrap_or(opts.start);
        line.clear();
        line.push_str(&at.format("%b %e %H:%M:%S").to_string());
        line.push(' ');
        let host = mix(hash_str(&t.host, 0) ^ (i as u64 / 10_000)) % u64::from(opts.hosts.max(1));
        line.push_str(&format!("{}{host}", t.host));
        line.push(' ');
        line.push_str(&t.program);
        if let Some(pid) = t.pid {
            let pid = 1000 + (u64::from(pid) + round * 7919) % 60_000;
            line.push_str(&format!("[{pid}]"));
        }
        line.push_str(": ");
        vary(&t.msg, round, i as u64, opts, &mut line);
        line.push('\n');
        bytes += line.len() as u64;
        w.write_all(line.as_bytes())
            .map_err(|e| Error::Io(format!("writing {}: {e}", opts.out.display())))?;
        if i == 0 {
            first = line.trim_end().to_owned();
        }
        if i + 1 == opts.events {
            last = line.trim_end().to_owned();
        }
    }
    w.flush()
        .map_err(|e| Error::Io(format!("writing {}: {e}", opts.out.display())))?;
    Ok(GenerateReport {
        out: opts.out.display().to_string(),
        lines: opts.events,
        bytes,
        source_lines: templates.len(),
        first,
        last,
    })
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

    #[test]
    fn a_parsed_line_survives_the_trip_through_ingest_json() {
        let raw = crate::parse::RawRecord {
            bytes: b"Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for root from 173.234.31.186 port 38926 ssh2".to_vec(),
            source: "file",
            peer: None,
            received_at: Utc::now(),
        };
        let event = crate::parse::parse(&raw, &crate::parse::ParseOptions::default());
        assert_eq!(event.user_name.as_deref(), Some("root"));
        let back = Event::from_json(ingest_json(&event), event.received_at).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn generated_lines_vary_but_keep_their_shape() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src.log");
        std::fs::write(
            &source,
            "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186\n\
             Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for root from 173.234.31.186 port 38926 ssh2\n\
             Dec 10 06:55:48 LabSZ sshd[24201]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=admin\n",
        )
        .unwrap();
        let out = dir.path().join("out.log");
        let opts = GenerateOptions {
            source,
            events: 3000,
            out: out.clone(),
            start: "2025-11-01T00:00:00Z".parse().unwrap(),
            days: 30,
            hosts: 16,
            ips: 50_000,
        };
        let report = generate(&opts).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3000);
        assert_eq!(report.bytes, text.len() as u64);
        assert!(
            lines[0].starts_with("Nov  1 00:00:00 LabSZ"),
            "{}",
            lines[0]
        );
        let distinct: std::collections::HashSet<&str> = lines.iter().map(|l| &l[16..]).collect();
        assert!(distinct.len() > 2500, "{}", distinct.len());
        // Every line still parses as the sshd event it was made from.
        let opts = crate::parse::ParseOptions::default();
        let mut pam_sources = std::collections::HashSet::new();
        for (i, line) in lines.iter().enumerate() {
            let e = crate::parse::parse(
                &crate::parse::RawRecord {
                    bytes: line.as_bytes().to_vec(),
                    source: "file",
                    peer: None,
                    received_at: Utc::now(),
                },
                &opts,
            );
            assert_eq!(e.process_name.as_deref(), Some("sshd"), "{line}");
            match i % 3 {
                0 => assert!(
                    e.user_name.as_deref().unwrap().starts_with("webmaster"),
                    "{line}"
                ),
                1 => assert_eq!(e.user_name.as_deref(), Some("root"), "{line}"),
                _ => assert!(
                    e.user_name.as_deref().unwrap().starts_with("admin"),
                    "{line}"
                ),
            }
            if i % 3 != 2 {
                assert!(e.source_ip.is_some(), "{line}");
            } else {
                pam_sources.insert(e.source_ip);
            }
        }
        // pam_unix's `rhost=` varies like sshd's addresses: each pass its own.
        assert!(pam_sources.len() > 900, "{}", pam_sources.len());
    }
}
