//! The Elasticsearch ingest surface that shippers speak (Filebeat, Fluent
//! Bit, Vector, Logstash): `GET /` (the cluster info they probe) and
//! `POST|PUT /_bulk`, `/{index}/_bulk` with `index`/`create` actions, answered
//! per item in Elasticsearch's format, after the commit.
//!
//! Each document goes through the parsers like any JSON record (a known
//! `process.name` without a dataset still gets its program parser); the
//! target index is kept in `labels.index`. `delete` and `update` are refused
//! per item (400): the store is append-only.

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};
use ulid::Ulid;

use super::Batch;
use crate::parse::{self, ParseOptions, RawRecord};
use crate::store::writer::WriterHandle;
use crate::telemetry::metric;

const SOURCE: &str = "bulk";
/// The Elasticsearch version shippers are told they talk to.
const VERSION: &str = "8.11.0";

#[derive(Clone)]
struct Bulk {
    writer: WriterHandle,
    parse: ParseOptions,
    node_id: Ulid,
}

pub fn router(
    writer: WriterHandle,
    parse: ParseOptions,
    node_id: Ulid,
    max_body_bytes: usize,
) -> Router {
    super::count_from_zero(SOURCE, false);
    Router::new()
        .route("/", get(info))
        .route("/_bulk", post(bulk_default).put(bulk_default))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(Bulk {
            writer,
            parse,
            node_id,
        })
}

/// Elasticsearch clients refuse a server without this header.
fn product(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static("x-elastic-product"),
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

async fn info(State(bulk): State<Bulk>) -> Response {
    product(
        axum::Json(json!({
            "name": "secmon",
            "cluster_name": "secmon",
            "cluster_uuid": bulk.node_id.to_string(),
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "secmon",
                "lucene_version": "9.8.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        }))
        .into_response(),
    )
}

async fn bulk_default(State(bulk): State<Bulk>, body: Bytes) -> Response {
    run(bulk, None, body).await
}

async fn bulk_index(State(bulk): State<Bulk>, Path(index): Path<String>, body: Bytes) -> Response {
    run(bulk, Some(index), body).await
}

/// One item of the request, in order: an event to store, or a refusal.
enum Item {
    Store {
        action: String,
        index: String,
        id: Option<String>,
    },
    Refuse {
        action: String,
        index: String,
        id: Option<String>,
        status: u16,
        reason: String,
    },
}

async fn run(bulk: Bulk, default_index: Option<String>, body: Bytes) -> Response {
    let started = Instant::now();
    let (items, events) = parse_body(&body, default_index.as_deref(), &bulk.parse);
    let received = items.len() as u64;
    let refused = items
        .iter()
        .filter(|i| matches!(i, Item::Refuse { .. }))
        .count() as u64;
    let counters = super::SourceCounters::new(SOURCE);
    counters.received(received);
    metrics::counter!(metric::EVENTS_REJECTED, "source" => SOURCE).increment(refused);
    for event in events.events() {
        counters.count_parsed(event);
    }

    let mut seqs = std::ops::Range { start: 0, end: 0 };
    if !events.is_empty() {
        seqs = match super::commit(&bulk.writer, events, SOURCE).await {
            Ok(range) => range,
            Err(refused) => {
                let kind = match refused {
                    super::Refused::Busy => "es_rejected_execution_exception",
                    super::Refused::Closed => "node_closed_exception",
                    super::Refused::NotCommitted => "store_unavailable_exception",
                };
                return too_busy(refused.status(), kind);
            }
        };
    }
    let mut next = seqs.start;
    let rendered: Vec<Value> = items
        .into_iter()
        .map(|item| match item {
            Item::Store { action, index, id } => {
                let seq = next;
                next += 1;
                let id = id.unwrap_or_else(|| seq.to_string());
                json!({ action: {
                    "_index": index, "_id": id, "_version": 1, "result": "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": seq, "_primary_term": 1, "status": 201,
                }})
            }
            Item::Refuse {
                action,
                index,
                id,
                status,
                reason,
            } => json!({ action: {
                "_index": index, "_id": id, "status": status,
                "error": {"type": "illegal_argument_exception", "reason": reason},
            }}),
        })
        .collect();
    let body = json!({
        "took": started.elapsed().as_millis() as u64,
        "errors": refused > 0,
        "items": rendered,
    });
    product(axum::Json(body).into_response())
}

fn too_busy(status: StatusCode, kind: &str) -> Response {
    let body = json!({"error": {"type": kind, "reason": "secmon cannot take this batch now: retry later"}, "status": status.as_u16()});
    product((status, [(header::RETRY_AFTER, "1")], axum::Json(body)).into_response())
}

/// Pairs action and document lines. Returns every item in order and the
/// events of the stored ones (same order).
fn parse_body(body: &[u8], default_index: Option<&str>, opts: &ParseOptions) -> (Vec<Item>, Batch) {
    let mut items = Vec::new();
    let mut events = Batch::default();
    let received_at = Utc::now();
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(line) = lines.next() {
        let default = default_index.unwrap_or("secmon").to_owned();
        let action: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                items.push(Item::Refuse {
                    action: "index".into(),
                    index: default,
                    id: None,
                    status: 400,
                    reason: format!("invalid action line: {e}"),
                });
                continue;
            }
        };
        let Some((name, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            items.push(Item::Refuse {
                action: "index".into(),
                index: default,
                id: None,
                status: 400,
                reason: "an action line must be an object like {\"index\":{}}".into(),
            });
            continue;
        };
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .map_or(default, str::to_owned);
        let id = meta.get("_id").and_then(|v| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_u64().map(|n| n.to_string()))
        });
        let action = name.clone();
        match action.as_str() {
            "index" | "create" => {}
            "delete" => {
                items.push(Item::Refuse {
                    action,
                    index,
                    id,
                    status: 400,
                    reason: "secmon keeps events append-only: delete is not supported".into(),
                });
                continue;
            }
            _ => {
                // `update` (and anything unknown) carries a document line: skip it too.
                lines.next();
                items.push(Item::Refuse {
                    action,
                    index,
                    id,
                    status: 400,
                    reason: "only index and create are supported".into(),
                });
                continue;
            }
        }
        let Some(doc) = lines.next() else {
            items.push(Item::Refuse {
                action,
                index,
                id,
                status: 400,
                reason: "the action has no document line".into(),
            });
            break;
        };
        // Checked without building it: `parse` reads it into the event.
        let object = doc.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if !object || serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_err() {
            items.push(Item::Refuse {
                action,
                index,
                id,
                status: 400,
                reason: "the document is not a JSON object".into(),
            });
            continue;
        }
        let raw = RawRecord {
            bytes: doc.to_vec(),
            source: SOURCE,
            peer: None,
            received_at,
        };
        let mut event = parse::parse(&raw, opts);
        event.labels.insert("index".into(), index.clone().into());
        events.push(event);
        items.push(Item::Store { action, index, id });
    }
    (items, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_actions_and_documents_and_refuses_what_it_cannot_do() {
        let body = b"{\"index\":{\"_index\":\"logs\",\"_id\":\"a1\"}}\n{\"message\":\"one\",\"host\":{\"name\":\"h\"}}\n\
{\"create\":{}}\n{\"message\":\"two\"}\n\
{\"delete\":{\"_id\":\"x\"}}\n\
{\"update\":{\"_id\":\"y\"}}\n{\"doc\":{}}\n\
{\"index\":{}}\nnot json\n\
{\"index\":{}}\n[{\"message\":\"in an array\"}]\n\
{\"index\":{}}\n{\"message\":\"trailing\"} x\n\
{\"index\":{}}\n  {\"message\":\"three\"}\n";
        let (items, events) = parse_body(body, Some("default-idx"), &ParseOptions::default());
        let events = events.events();
        let messages: Vec<_> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["one", "two", "three"]);
        assert_eq!(events[0].labels["index"], "logs");
        assert_eq!(events[1].labels["index"], "default-idx");
        assert_eq!(events[0].host_name.as_deref(), Some("h"));
        let kinds: Vec<_> = items
            .iter()
            .map(|i| match i {
                Item::Store { action, .. } => format!("ok {action}"),
                Item::Refuse { action, status, .. } => format!("{status} {action}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ok index",
                "ok create",
                "400 delete",
                "400 update",
                "400 index",
                "400 index",
                "400 index",
                "ok index"
            ]
        );
    }
}
