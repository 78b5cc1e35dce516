//! Search across the fleet: a node with the fleet's Postgres asks every
//! node's API (the `api_url` each publishes in `secmon.nodes`) at once,
//! with the fleet credential (`FLEET_API_KEY`, a reader on every node),
//! each within `fleet.search_timeout_ms`, and merges the answers. As in
//! Elasticsearch's cross-cluster search, a node that is slow, failing or
//! offline leaves its part out and says so: the answer is partial, with a
//! status per node, never an error for all.
//!
//! A node's answer is untrusted input: read up to [`MAX_ANSWER_BYTES`],
//! parsed into typed events (anything else makes that node `error`), and
//! never more than asked for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Secret;
use crate::model::Event;
use crate::replicate::Fleet;
use crate::replicate::postgres::FleetNode;

/// Most bytes read of one node's answer.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Most nodes one search asks.
pub const MAX_NODES: usize = 256;

/// How one node took part in a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum NodeStatus {
    /// It answered: its part is in the result.
    Ok,
    /// No answer within `fleet.search_timeout_ms`.
    Timeout,
    /// It answered with an error, or something that is not an answer.
    Error,
    /// Not reachable: its heartbeats stopped, it refused the connection,
    /// or it publishes no API URL.
    Offline,
}

/// One node's part of a search.
#[derive(Debug, Clone)]
pub struct NodeAnswer<T> {
    pub node_id: String,
    pub hostname: String,
    pub status: NodeStatus,
    pub took: Duration,
    /// What went wrong, in a few words (no URL, no answer text).
    pub error: Option<String>,
    pub answer: Option<T>,
}

/// The search each node runs.
pub struct EventSearch {
    pub query: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub first: usize,
}

/// One node's page: its total and its newest events.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub total: u64,
    pub events: Vec<Event>,
}

pub struct FanOut {
    fleet: Fleet,
    http: reqwest::Client,
    key: Secret,
    timeout: Duration,
    /// Production: the fleet key goes to `https://` URLs only.
    https_only: bool,
}

impl FanOut {
    pub fn new(
        fleet: Fleet,
        key: Secret,
        cfg: &crate::config::FleetSearch,
        https_only: bool,
    ) -> Result<FanOut, String> {
        let tls = crate::tls::client_config(cfg.ca_path.as_deref()).map_err(|e| e.to_string())?;
        let timeout = Duration::from_millis(cfg.search_timeout_ms);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(FanOut {
            fleet,
            http,
            key,
            timeout,
            https_only,
        })
    }

    /// Every node's newest events matching `search`, merged newest first
    /// (at most `search.first`), with each node's part.
    pub async fn events(
        &self,
        search: &EventSearch,
    ) -> Result<(Vec<(String, Event)>, Vec<NodeAnswer<EventPage>>), String> {
        let variables = json!({
            "q": search.query, "from": search.from, "to": search.to, "first": search.first,
        });
        let first = search.first;
        let answers = self
            .ask(EVENTS_QUERY, variables, move |data| {
                parse_events(data, first)
            })
            .await?;
        let mut merged: Vec<(String, Event)> = answers
            .iter()
            .filter_map(|a| Some((a.node_id.clone(), a.answer.as_ref()?.events.clone())))
            .flat_map(|(node, events)| events.into_iter().map(move |e| (node.clone(), e)))
            .collect();
        merged.sort_by(|(na, a), (nb, b)| (b.timestamp, nb, b.seq).cmp(&(a.timestamp, na, a.seq)));
        merged.truncate(first);
        Ok((merged, answers))
    }

    /// Every node's counts of `group_by` values, summed, the `top` largest.
    /// Each node is asked for more than `top` (as Elasticsearch's
    /// `shard_size`), so a value just below one node's top still counts;
    /// the sums are exact only for values every node returned.
    pub async fn stats(
        &self,
        search: &EventSearch,
        group_by: &str,
        top: usize,
    ) -> Result<(Vec<(String, u64)>, Vec<NodeAnswer<Vec<(String, u64)>>>), String> {
        let node_top = (top * 3 / 2 + 10).clamp(top, crate::store::index::MAX_TOP);
        let variables = json!({
            "q": search.query, "from": search.from, "to": search.to, "groupBy": group_by, "top": node_top,
        });
        let answers = self
            .ask(STATS_QUERY, variables, move |data| {
                parse_buckets(data, node_top)
            })
            .await?;
        let mut sums: HashMap<String, u64> = HashMap::new();
        for buckets in answers.iter().filter_map(|a| a.answer.as_ref()) {
            for (key, count) in buckets {
                *sums.entry(key.clone()).or_default() += count;
            }
        }
        let mut buckets: Vec<(String, u64)> = sums.into_iter().collect();
        buckets.sort_by(|(ka, a), (kb, b)| b.cmp(a).then(ka.cmp(kb)));
        buckets.truncate(top);
        Ok((buckets, answers))
    }

    /// Runs `query` on every node at once; each answer's `data` through
    /// `parse`.
    async fn ask<T: Send>(
        &self,
        query: &'static str,
        variables: Value,
        parse: impl Fn(Value) -> Result<T, String> + Copy + Send,
    ) -> Result<Vec<NodeAnswer<T>>, String> {
        let nodes = self.fleet.nodes().await.map_err(|e| e.0)?;
        let body = json!({ "query": query, "variables": variables });
        let asks = plan(nodes, self.https_only)
            .into_iter()
            .map(|(node, url)| self.ask_node(node, url, &body, parse));
        Ok(futures_util::future::join_all(asks).await)
    }

    async fn ask_node<T>(
        &self,
        node: FleetNode,
        url: Destination,
        body: &Value,
        parse: impl Fn(Value) -> Result<T, String>,
    ) -> NodeAnswer<T> {
        let started = Instant::now();
        let outcome = match url {
            Err(left_out) => Err(left_out),
            Ok(url) => self.post(&url, body).await.and_then(|data| {
                parse(data).map_err(|e| {
                    // What it sent is its own text: logged, not passed on.
                    tracing::debug!(node = %node.id, error = %e, "fleet search: a node's answer does not parse");
                    (NodeStatus::Error, "answered something that is not a search answer".to_owned())
                })
            }),
        };
        let (status, error, answer) = match outcome {
            Ok(answer) => (NodeStatus::Ok, None, Some(answer)),
            Err((status, error)) => {
                tracing::debug!(node = %node.id, status = ?status, error = %error, "fleet search: a node left out");
                (status, Some(error), None)
            }
        };
        NodeAnswer {
            node_id: node.id,
            hostname: node.hostname,
            status,
            took: started.elapsed(),
            error,
            answer,
        }
    }

    /// POSTs a GraphQL request to a node; its `data`.
    async fn post(&self, api_url: &str, body: &Value) -> Result<Value, (NodeStatus, String)> {
        let url = format!("{}/graphql", api_url.trim_end_matches('/'));
        let sent = tokio::time::timeout(self.timeout, async {
            let mut resp = self
                .http
                .post(&url)
                .bearer_auth(self.key.expose())
                .json(body)
                .send()
                .await?;
            let status = resp.status();
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Ok((status, None));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, Some(bytes)))
        })
        .await;
        let (status, bytes) = match sent {
            Err(_) => return Err((NodeStatus::Timeout, "no answer in time".to_owned())),
            Ok(Err(e)) if e.is_timeout() => {
                return Err((NodeStatus::Timeout, "no answer in time".to_owned()));
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err((NodeStatus::Offline, "refused the connection".to_owned()));
            }
            Ok(Err(_)) => return Err((NodeStatus::Error, "the request failed".to_owned())),
            Ok(Ok(answer)) => answer,
        };
        let bytes = bytes.ok_or((
            NodeStatus::Error,
            format!("answered more than {MAX_ANSWER_BYTES} bytes"),
        ))?;
        if !status.is_success() {
            return Err((
                NodeStatus::Error,
                format!("answered HTTP {}", status.as_u16()),
            ));
        }
        let mut v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            (
                NodeStatus::Error,
                "answered something that is not JSON".to_owned(),
            )
        })?;
        if let Some(code) = v["errors"][0]["extensions"]["code"].as_str() {
            return Err((NodeStatus::Error, format!("answered {code}")));
        }
        if v.get("errors").is_some() {
            return Err((NodeStatus::Error, "answered an error".to_owned()));
        }
        Ok(v["data"].take())
    }
}

/// Where a node is asked, or why it is not (its status, a few words).
type Destination = Result<String, (NodeStatus, String)>;

/// Which nodes a search asks, at which URL, and why the others are left
/// out: offline, no URL, a URL the fleet key must not go to (not `https://`
/// in production, a link-local address such as a cloud's metadata
/// service), an older node at the same URL (a store restored under a new
/// id), or beyond [`MAX_NODES`].
fn plan(nodes: Vec<FleetNode>, https_only: bool) -> Vec<(FleetNode, Destination)> {
    let mut newest_at: HashMap<&str, (DateTime<Utc>, &str)> = HashMap::new();
    for node in &nodes {
        if let Some(url) = node.api_url.as_deref() {
            let entry = newest_at.entry(url).or_insert((node.last_seen, &node.id));
            if node.last_seen > entry.0 {
                *entry = (node.last_seen, &node.id);
            }
        }
    }
    let mut asked = 0;
    let decided: Vec<Destination> = nodes
        .iter()
        .map(|node| {
            let url = node.api_url.as_deref().ok_or((
                NodeStatus::Offline,
                "publishes no API URL (fleet.api_url)".to_owned(),
            ))?;
            if node.status == "offline" {
                return Err((NodeStatus::Offline, "its heartbeats stopped".to_owned()));
            }
            let newest = newest_at[url].1;
            if newest != node.id {
                return Err((
                    NodeStatus::Offline,
                    format!("node {newest} answers at its API URL now"),
                ));
            }
            check_api_url(url, https_only).map_err(|e| (NodeStatus::Error, e))?;
            asked += 1;
            if asked > MAX_NODES {
                return Err((
                    NodeStatus::Error,
                    format!("left out: a search asks at most {MAX_NODES} nodes"),
                ));
            }
            Ok(url.to_owned())
        })
        .collect();
    nodes.into_iter().zip(decided).collect()
}

/// Whether the fleet key may be sent to `url`.
fn check_api_url(url: &str, https_only: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "its API URL is not a URL".to_owned())?;
    match parsed.scheme() {
        "https" => {}
        "http" if !https_only => {}
        "http" => return Err("its API URL is not https:// (production needs TLS)".to_owned()),
        _ => return Err("its API URL is not http(s)://".to_owned()),
    }
    let host = parsed.host_str().unwrap_or_default();
    let link_local = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => ip.is_unicast_link_local(),
        Err(_) => false,
    };
    if link_local {
        return Err("its API URL is a link-local address".to_owned());
    }
    Ok(())
}

const EVENTS_QUERY: &str = "query($q: String, $from: DateTime, $to: DateTime, $first: Int) {
  events(query: $q, from: $from, to: $to, first: $first) {
    totalCount
    edges { node { id seq timestamp receivedAt message original hostName hostIp sourceIp
      sourcePort destinationIp destinationPort userName userTargetName processName processPid
      processCommandLine processExecutable dataset category action outcome severity trusted
      labels fields } }
  }
}";

const STATS_QUERY: &str =
    "query($q: String, $from: DateTime, $to: DateTime, $groupBy: String!, $top: Int) {
  eventStats(query: $q, from: $from, to: $to, groupBy: $groupBy, top: $top) { key count }
}";

/// An event as a node's `events` query answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RemoteEvent {
    id: ulid::Ulid,
    seq: u64,
    timestamp: DateTime<Utc>,
    received_at: DateTime<Utc>,
    message: String,
    original: Option<String>,
    host_name: Option<String>,
    host_ip: Option<IpAddr>,
    source_ip: Option<IpAddr>,
    source_port: Option<u16>,
    destination_ip: Option<IpAddr>,
    destination_port: Option<u16>,
    user_name: Option<String>,
    user_target_name: Option<String>,
    process_name: Option<String>,
    process_pid: Option<u32>,
    process_command_line: Option<String>,
    process_executable: Option<String>,
    dataset: Option<String>,
    category: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    severity: Option<u8>,
    trusted: bool,
    labels: crate::model::Labels,
    fields: serde_json::Map<String, Value>,
}

impl From<RemoteEvent> for Event {
    fn from(r: RemoteEvent) -> Event {
        Event {
            seq: r.seq,
            id: r.id,
            timestamp: r.timestamp,
            received_at: r.received_at,
            host_name: r.host_name,
            host_ip: r.host_ip,
            source_ip: r.source_ip,
            source_port: r.source_port,
            destination_ip: r.destination_ip,
            destination_port: r.destination_port,
            user_name: r.user_name,
            user_target_name: r.user_target_name,
            process_name: r.process_name,
            process_pid: r.process_pid,
            process_command_line: r.process_command_line,
            process_executable: r.process_executable,
            category: r.category.map(Into::into),
            action: r.action.map(Into::into),
            outcome: r.outcome.map(Into::into),
            severity: r.severity,
            dataset: r.dataset.map(Into::into),
            original: r.original,
            message: r.message,
            labels: r.labels,
            fields: r.fields,
            trusted: r.trusted,
        }
    }
}

fn parse_events(mut data: Value, first: usize) -> Result<EventPage, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Connection {
        total_count: u64,
        edges: Vec<EdgeOf>,
    }
    #[derive(Deserialize)]
    struct EdgeOf {
        node: RemoteEvent,
    }
    let page: Connection =
        serde_json::from_value(data["events"].take()).map_err(|e| e.to_string())?;
    if page.edges.len() > first {
        return Err(format!("{} events for a page of {first}", page.edges.len()));
    }
    Ok(EventPage {
        total: page.total_count,
        events: page.edges.into_iter().map(|e| e.node.into()).collect(),
    })
}

fn parse_buckets(mut data: Value, top: usize) -> Result<Vec<(String, u64)>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Bucket {
        key: String,
        count: u64,
    }
    let buckets: Vec<Bucket> =
        serde_json::from_value(data["eventStats"].take()).map_err(|e| e.to_string())?;
    if buckets.len() > top {
        return Err(format!("{} buckets for a top {top}", buckets.len()));
    }
    Ok(buckets.into_iter().map(|b| (b.key, b.count)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, url: Option<&str>, status: &str, seen: i64) -> FleetNode {
        FleetNode {
            id: id.into(),
            hostname: id.into(),
            version: String::new(),
            last_seen: DateTime::from_timestamp(seen, 0).unwrap(),
            started_at: DateTime::from_timestamp(0, 0).unwrap(),
            events_total: 0,
            events_per_second: 0.0,
            storage_bytes: 0,
            index_lag: 0,
            outbox_entries: 0,
            status: status.into(),
            api_url: url.map(str::to_owned),
        }
    }

    #[test]
    fn the_plan_asks_each_reachable_node_once() {
        let nodes = vec![
            node("a", Some("https://a:8000"), "online", 10),
            node("old-a", Some("https://a:8000"), "stale", 5),
            node("b", None, "online", 10),
            node("c", Some("https://c:8000"), "offline", 10),
            node("d", Some("http://d:8000"), "online", 10),
            node("e", Some("https://169.254.169.254"), "online", 10),
            node("f", Some("https://[fe80::1]:8000"), "online", 10),
            node("g", Some("file:///etc/passwd"), "online", 10),
        ];
        let plan: Vec<(String, Result<String, NodeStatus>)> = plan(nodes.clone(), true)
            .into_iter()
            .map(|(n, url)| (n.id, url.map_err(|(status, _)| status)))
            .collect();
        use NodeStatus::{Error, Offline};
        let expected = [
            ("a", Ok("https://a:8000".to_owned())),
            ("old-a", Err(Offline)),
            ("b", Err(Offline)),
            ("c", Err(Offline)),
            ("d", Err(Error)),
            ("e", Err(Error)),
            ("f", Err(Error)),
            ("g", Err(Error)),
        ];
        let expected: Vec<(String, Result<String, NodeStatus>)> = expected
            .into_iter()
            .map(|(id, url)| (id.to_owned(), url))
            .collect();
        assert_eq!(plan, expected);
        // Outside production a plain-HTTP node is asked.
        assert!(super::plan(nodes, false)[4].1.is_ok());

        let many: Vec<FleetNode> = (0..MAX_NODES + 2)
            .map(|i| {
                node(
                    &format!("n{i}"),
                    Some(&format!("https://n{i}:8000")),
                    "online",
                    1,
                )
            })
            .collect();
        let asked = super::plan(many, true)
            .iter()
            .filter(|(_, url)| url.is_ok())
            .count();
        assert_eq!(asked, MAX_NODES);
    }

    #[test]
    fn answers_are_typed_and_bounded() {
        let event = json!({"id": "01JF0000000000000000000000", "seq": 7, "timestamp": "2026-01-01T00:00:00Z",
            "receivedAt": "2026-01-01T00:00:01Z", "message": "m", "original": null, "hostName": "h",
            "hostIp": null, "sourceIp": "10.0.0.1", "sourcePort": 22, "destinationIp": null,
            "destinationPort": null, "userName": "root", "userTargetName": null, "processName": null,
            "processPid": null, "processCommandLine": null, "processExecutable": null, "dataset": "sshd",
            "category": null, "action": null, "outcome": null, "severity": null, "trusted": false,
            "labels": {}, "fields": {}});
        let data = json!({"events": {"totalCount": 3, "edges": [{"node": event}]}});
        let page = parse_events(data.clone(), 1).unwrap();
        assert_eq!((page.total, page.events[0].seq), (3, 7));
        assert_eq!(page.events[0].source_ip, Some("10.0.0.1".parse().unwrap()));
        assert!(parse_events(data, 0).is_err(), "more than asked for");
        let mut bad = event.clone();
        bad["sourceIp"] = json!("not an address");
        let data = json!({"events": {"totalCount": 1, "edges": [{"node": bad}]}});
        assert!(parse_events(data, 1).is_err());
        let buckets = json!({"eventStats": [{"key": "a", "count": 2}, {"key": "b", "count": 1}]});
        assert_eq!(parse_buckets(buckets.clone(), 2).unwrap().len(), 2);
        assert!(parse_buckets(buckets, 1).is_err());
    }
}
