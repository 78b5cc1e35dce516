//! HTTP ingest: `POST /api/v1/ingest` with NDJSON or a JSON array of events.
//!
//! The response is sent only after the accepted events are committed:
//! `200 {"accepted": N, "rejected": M, "errors": [{"line": L, "reason": ".."}]}`,
//! `413` for a body over the limit, `429` + `Retry-After` when the write
//! queue is full, `503` + `Retry-After` when the store cannot commit.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use super::Batch;
use crate::model::Event;
use crate::store::writer::WriterHandle;
use crate::telemetry::metric;

const SOURCE: &str = "http";
/// At most this many per-line errors are listed in a response.
const MAX_LISTED_ERRORS: usize = 100;

#[derive(Debug, Serialize, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// The events a body holds and the lines that could not become events.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Batch,
    pub errors: Vec<LineError>,
    pub rejected: usize,
}

impl Parsed {
    fn reject(&mut self, line: usize, reason: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(LineError { line, reason });
        }
    }
}

/// Splits a body into events: a JSON array (line numbers are 1-based array
/// positions) or NDJSON (1-based line numbers; blank lines are skipped).
pub fn parse_body(body: &[u8]) -> Parsed {
    let received_at = Utc::now();
    let mut parsed = Parsed::default();
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        match Event::from_json_array(body, received_at) {
            Ok(results) => {
                for (i, result) in results.into_iter().enumerate() {
                    match result {
                        Ok(e) => parsed.events.push(e),
                        Err(e) => parsed.reject(i + 1, e.to_string()),
                    }
                }
            }
            Err(e) => parsed.reject(e.line(), format!("invalid JSON array: {e}")),
        }
        return parsed;
    }
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match Event::from_json_slice(line, received_at) {
            Ok(e) => parsed.events.push(e),
            Err(e) => parsed.reject(i + 1, e.to_string()),
        }
    }
    parsed
}

pub fn router(writer: WriterHandle, max_body_bytes: usize) -> Router {
    super::count_from_zero(SOURCE, false);
    Router::new()
        .route("/api/v1/ingest", post(ingest))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(writer)
}

async fn ingest(State(writer): State<WriterHandle>, body: Bytes) -> Response {
    let parsed = parse_body(&body);
    let received = (parsed.events.len() + parsed.rejected) as u64;
    metrics::counter!(metric::EVENTS_RECEIVED, "source" => SOURCE).increment(received);
    metrics::counter!(metric::EVENTS_REJECTED, "source" => SOURCE)
        .increment(parsed.rejected as u64);
    let accepted = parsed.events.len();
    if accepted > 0
        && let Err(refused) = super::commit(&writer, parsed.events, SOURCE).await
    {
        let reason = match refused {
            super::Refused::Busy => "the write queue is full: retry later",
            super::Refused::Closed => "shutting down: retry later",
            super::Refused::NotCommitted => "the store cannot commit: retry later",
        };
        return unavailable(refused.status(), reason);
    }
    Json(json!({
        "accepted": accepted,
        "rejected": parsed.rejected,
        "errors": parsed.errors,
    }))
    .into_response()
}

fn unavailable(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::RETRY_AFTER, "1")],
        Json(json!({ "error": reason, "accepted": 0 })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_with_blank_crlf_and_bad_lines() {
        let body = b"{\"message\":\"a\"}\r\n\n{bad\n[1]\n{\"message\":\"b\",\"source.ip\":\"x\"}\n{\"message\":\"c\"}";
        let p = parse_body(body);
        let msgs: Vec<_> = p
            .events
            .events()
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(msgs, ["a", "c"]);
        assert_eq!(p.rejected, 3);
        let lines: Vec<_> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(
            p.errors[0].reason.starts_with("invalid JSON: "),
            "{:?}",
            p.errors[0]
        );
        assert_eq!(
            p.errors[1].reason,
            "an event must be a JSON object, got an array"
        );
        assert_eq!(
            p.errors[2].reason,
            "field `source.ip`: `x` is not an IPv4 or IPv6 address"
        );
    }

    #[test]
    fn json_array() {
        let p = parse_body(b" [{\"message\":\"a\"}, 5, {\"message\":\"b\"}]");
        assert_eq!(p.events.len(), 2);
        assert_eq!(
            p.errors,
            [LineError {
                line: 2,
                reason: "an event must be a JSON object, got a number".into()
            }]
        );
    }

    #[test]
    fn broken_array_is_one_rejection() {
        let p = parse_body(b"[{\"message\":\"a\"},");
        assert!(p.events.is_empty());
        assert_eq!(p.rejected, 1);
    }

    #[test]
    fn invalid_utf8_line_is_rejected_and_the_rest_goes_on() {
        let p = parse_body(b"{\"message\":\"\xff\"}\n{\"message\":\"ok\"}\n");
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.errors[0].line, 1);
    }

    #[test]
    fn listed_errors_are_capped_but_counted() {
        let body = "x\n".repeat(MAX_LISTED_ERRORS + 5);
        let p = parse_body(body.as_bytes());
        assert_eq!(p.rejected, MAX_LISTED_ERRORS + 5);
        assert_eq!(p.errors.len(), MAX_LISTED_ERRORS);
    }
}
