//! Fleet and system: this node's status (every component `/ready`
//! reports, the ingest rate, index lag, storage, replication, export and
//! notification lag), and, when Postgres is configured, the fleet's nodes
//! and their open alerts. The page refreshes itself every 10 seconds
//! until paused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::session::Analyst;
use super::{Console, Frame, api_time, problem, render, text};
use crate::auth::CanRead;

const NODE: &str =
    "query { system { version nodeId environment uptimeSeconds eventsStored lastSeq indexLag } }";
const FLEET: &str = "query { fleet {
  nodes { id hostname status lastSeen eventsPerSecond eventsTotal storageBytes indexLag outboxEntries }
  alerts(status: OPEN, limit: 50) { nodeId alertId ruleTitle severity count lastSeen sourceIp hostName }
} }";

/// The span the ingest rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Most page views kept for it (views come as fast as the rate limits let).
const MAX_SAMPLES: usize = 1000;

struct Component {
    name: String,
    /// Flattened `path: value` facts.
    facts: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/system.html")]
struct SystemPage {
    frame: Frame,
    status: String,
    ready: bool,
    node: Vec<(&'static str, String)>,
    components: Vec<Component>,
    /// None: no fleet (no Postgres configured).
    nodes: Option<Vec<[String; 9]>>,
    alerts: Vec<[String; 8]>,
}

/// `a.b: value` for every leaf of `v`.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        leaf => out.push((prefix.to_owned(), text(leaf))),
    }
}

impl Console {
    /// Events per second over about the last minute of page views; none
    /// on the first.
    fn ingest_rate(&self, last_seq: u64) -> Option<f64> {
        let now = Instant::now();
        let mut samples = self.ingest_samples.lock().ok()?;
        samples.retain(|(at, _)| now.duration_since(*at) <= RATE_WINDOW);
        if samples.len() >= MAX_SAMPLES {
            samples.pop_front();
        }
        samples.push_back((now, last_seq));
        let (at, seq) = *samples.front()?;
        let secs = now.duration_since(at).as_secs_f64();
        (secs >= 1.0).then(|| last_seq.saturating_sub(seq) as f64 / secs)
    }
}

/// `GET /ui/system`.
pub async fn page(State(console): State<Arc<Console>>, analyst: Analyst) -> Response {
    if let Err(denied) = analyst.grant::<CanRead>() {
        return problem(StatusCode::FORBIDDEN, &denied.to_string());
    }
    let system = match console.graphql(&analyst, NODE, json!({})).await {
        Ok(data) => data["system"].clone(),
        Err(failed) => return failed.page(),
    };
    let (ready, readiness) = crate::api::health::readiness(
        Some(&console.api.progress),
        &console.replication,
        console.api.notifier.as_deref(),
    );
    let store_bytes = console.api.store.file_size().ok();
    let rate = console.ingest_rate(system["lastSeq"].as_u64().unwrap_or(0));
    let node = vec![
        ("node", text(&system["nodeId"])),
        ("version", text(&system["version"])),
        ("environment", text(&system["environment"])),
        ("up", format!("{} s", text(&system["uptimeSeconds"]))),
        ("events stored", text(&system["eventsStored"])),
        (
            "ingest rate",
            rate.map_or("measuring (at the next refresh)".to_owned(), |r| {
                format!("{r:.1} events/s")
            }),
        ),
        ("index lag", format!("{} events", text(&system["indexLag"]))),
        (
            "store on disk",
            store_bytes.map_or("unknown".to_owned(), |b| {
                format!("{:.1} MiB", b as f64 / 1_048_576.0)
            }),
        ),
    ];
    let components = readiness["components"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(name, v)| {
                    let mut facts = Vec::new();
                    flatten("", v, &mut facts);
                    Component {
                        name: name.clone(),
                        facts,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let (nodes, alerts) = if console.api.fleet.is_some() {
        match console.graphql(&analyst, FLEET, json!({})).await {
            Ok(data) => {
                let rows = |list: &Value, fields: &[&str]| -> Vec<Vec<String>> {
                    list.as_array()
                        .map(|items| {
                            items
                                .iter()
                                .map(|item| {
                                    fields
                                        .iter()
                                        .map(|f| {
                                            let v = text(&item[*f]);
                                            if f.starts_with("last") {
                                                api_time(&v)
                                            } else {
                                                v
                                            }
                                        })
                                        .collect()
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let nodes = rows(
                    &data["fleet"]["nodes"],
                    &[
                        "hostname",
                        "id",
                        "status",
                        "lastSeen",
                        "eventsPerSecond",
                        "eventsTotal",
                        "storageBytes",
                        "indexLag",
                        "outboxEntries",
                    ],
                );
                let alerts = rows(
                    &data["fleet"]["alerts"],
                    &[
                        "nodeId",
                        "alertId",
                        "ruleTitle",
                        "severity",
                        "count",
                        "lastSeen",
                        "sourceIp",
                        "hostName",
                    ],
                );
                (
                    Some(
                        nodes
                            .into_iter()
                            .filter_map(|r| r.try_into().ok())
                            .collect(),
                    ),
                    alerts
                        .into_iter()
                        .filter_map(|r| r.try_into().ok())
                        .collect(),
                )
            }
            Err(failed) => return failed.page(),
        }
    } else {
        (None, Vec::new())
    };
    let page = SystemPage {
        frame: Frame::new(&analyst, "system"),
        status: text(&readiness["status"]),
        ready,
        node,
        components,
        nodes,
        alerts,
    };
    render(StatusCode::OK, &page)
}
